"""Fit, RAFO and the pipeline on synthetic people made from the embedded body with known parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from resihmr_blender.core.body_model import JOINT_INDEX, load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.fit import FitConfig, FitError, fit_people
from resihmr_blender.core.keypoints import Person
from resihmr_blender.core.layouts import BODY25_INDEX
from resihmr_blender.core.pipeline import PersonFailure, PersonResult, reconstruct
from resihmr_blender.core.rafo import (
    LimbProblem,
    RafoConfig,
    endpoint,
    pose_following_anchors,
    rafo_loss,
    solve,
)
from resihmr_blender.core.residuals import RESIDUAL_KINDS, residual_by_name
from resihmr_blender.core.rotations import matrix_to_axis_angle


@pytest.fixture(scope="module")
def model():
    return load_body_model()


def natural_pose(rng) -> np.ndarray:
    pose = np.zeros((22, 3))
    pose[JOINT_INDEX["left_shoulder"], 2] = rng.uniform(-1.3, -0.6)
    pose[JOINT_INDEX["right_shoulder"], 2] = rng.uniform(0.6, 1.3)
    pose[JOINT_INDEX["left_elbow"], 1] = rng.uniform(-1.0, -0.1)
    pose[JOINT_INDEX["right_elbow"], 1] = rng.uniform(0.1, 1.0)
    for side in ("left", "right"):
        pose[JOINT_INDEX[f"{side}_hip"], 0] = rng.uniform(-0.5, 0.1)
        pose[JOINT_INDEX[f"{side}_knee"], 0] = rng.uniform(0.0, 0.6)
    pose[JOINT_INDEX["spine2"]] = rng.normal(0, 0.05, 3)
    return pose[1:].reshape(-1)


def synthetic(model, n: int, seed: int, noise: float = 2.0, residuals: dict | None = None):
    """People facing the camera with natural poses; returns (people, cameras, truth dicts)."""
    rng = np.random.default_rng(seed)
    camera = Camera(width=1080, height=1920, focal_length=1600.0)
    params = {"betas": rng.normal(0, 0.8, (n, 10)), "body_pose": np.stack([natural_pose(rng) for _ in range(n)]),
              "global_orient": np.stack([[math.pi + rng.normal(0, 0.05), rng.normal(0, 0.3), 0.0]
                                         for _ in range(n)]),
              "transl": np.stack([[rng.normal(0, 0.1), rng.normal(0, 0.1), rng.uniform(2.6, 3.4)]
                                  for _ in range(n)])}
    with torch.no_grad():
        out = model.joints_only(**{k: torch.tensor(v, dtype=torch.float32) for k, v in params.items()})
    people, truths = [], []
    for b in range(n):
        kp = camera.project_np(out.body25[b].numpy())
        body25 = np.c_[kp + rng.normal(0, noise, kp.shape), np.full(25, 0.9)]
        residual = np.zeros((8, 3))
        truth = {"body25_2d": kp, "joints": out.joints[b].numpy(), "params": {k: v[b] for k, v in params.items()}}
        for kind_name, lam in (residuals or {}).items():
            kind = residual_by_name(kind_name)
            ja = out.joints[b, JOINT_INDEX[kind.anchor_joint]].numpy()
            jt = out.joints[b, JOINT_INDEX[kind.upstream_joint]].numpy()
            end = camera.project_np(ja + lam * (jt - ja))
            residual[RESIDUAL_KINDS.index(kind_name)] = [*end, 0.9]
            truth[kind_name] = {"lambda": lam, "endpoint_2d": end}
        people.append(Person(body25=body25, residual=residual))
        truths.append(truth)
    return people, [camera] * n, truths


def test_fit_recovers_keypoints_batched(model):
    people, cameras, truths = synthetic(model, 4, seed=1)
    fits = fit_people(model, people, cameras)
    for fit, truth in zip(fits, truths):
        err = np.linalg.norm(fit.body25_2d - truth["body25_2d"], axis=1).mean()
        assert err < 4.0, f"mean error {err:.1f} px against the noise-free truth"
        assert np.all(np.isfinite(fit.body_pose)) and fit.used.sum() == 25


def test_single_and_batched_fits_agree(model):
    people, cameras, _ = synthetic(model, 2, seed=2)
    batched = fit_people(model, people, cameras)
    single = fit_people(model, people[1:], cameras[1:])
    assert np.linalg.norm(batched[1].body25_2d - single[0].body25_2d, axis=1).mean() < 2.0


def test_distal_keypoints_are_ignored_even_when_confident(model):
    people, cameras, truths = synthetic(model, 1, seed=3, residuals={"left_transtibial": 0.4})
    person = people[0]
    # a detector's hallucinated foot: the shank continued as if bent 70° sideways at the stump, confidently
    end = person.residual[RESIDUAL_KINDS.index("left_transtibial"), :2]
    turn = np.array([[math.cos(1.2), -math.sin(1.2)], [math.sin(1.2), math.cos(1.2)]])
    for name in ("LAnkle", "LBigToe", "LSmallToe", "LHeel"):
        i = BODY25_INDEX[name]
        person.body25[i, :2] = end + turn @ (truths[0]["body25_2d"][i] - end)
        person.body25[i, 2] = 0.95
    ours = fit_people(model, [person], cameras)[0]
    trusting = fit_people(model, [person], cameras, FitConfig(ignore_distal=False, residual_segments=False))[0]
    ignored = [BODY25_INDEX[n] for n in ("LAnkle", "LBigToe", "LSmallToe", "LHeel")]
    assert not ours.used[ignored].any() and trusting.used[ignored].all()
    intact = [i for i in range(25) if i not in ignored]
    err_ours = np.linalg.norm(ours.body25_2d[intact] - truths[0]["body25_2d"][intact], axis=1).mean()
    err_trusting = np.linalg.norm(trusting.body25_2d[intact] - truths[0]["body25_2d"][intact], axis=1).mean()
    assert err_ours < 4.0 and err_ours <= err_trusting + 0.5
    # the trusting fit bends its (missing) foot towards the hallucination; ours keeps the limb where it was
    ankle = BODY25_INDEX["LAnkle"]
    fooled = np.linalg.norm(trusting.body25_2d[ankle] - person.body25[ankle, :2])
    assert fooled < np.linalg.norm(ours.body25_2d[ankle] - person.body25[ankle, :2]) - 20.0



@pytest.mark.parametrize("mutate,reason", [
    (lambda p: p.body25.__setitem__((slice(None), 2), 0.0), "all keypoint confidences are zero"),
    # no shoulder, no neck and one hip; no hip, no neck and one shoulder (both shoulders or both hips would do)
    (lambda p: p.body25.__setitem__(([2, 5, 1, 9], 2), 0.0), "the torso cannot be placed"),
    (lambda p: p.body25.__setitem__(([8, 9, 12, 1, 5], 2), 0.0), "the torso cannot be placed"),
])
def test_unplaceable_people_get_a_reason(model, mutate, reason):
    people, cameras, _ = synthetic(model, 2, seed=4)
    mutate(people[0])
    results = reconstruct(model, people, cameras)
    assert isinstance(results[0], PersonFailure) and reason in results[0].reason
    assert isinstance(results[1], PersonResult)  # the other person still runs


def test_contradicting_residual_endpoint_is_refused(model):
    people, cameras, _ = synthetic(model, 1, seed=5, residuals={"left_transtibial": 0.5})
    k = RESIDUAL_KINDS.index("left_transtibial")
    people[0].residual[k, :2] = people[0].body25[BODY25_INDEX["Nose"], :2]  # the "stump" is on the face
    result = reconstruct(model, people, cameras)[0]
    assert isinstance(result, PersonFailure)
    assert "left_transtibial" in result.reason and "contradicts its limb" in result.reason


def test_fit_error_type_is_value_error():
    assert issubclass(FitError, ValueError)


# ---- RAFO ------------------------------------------------------------------------------------------------------


def limb(camera, lam_true, kind="left_transtibial", anchor=(0.1, 0.45, 3.0), upstream=(0.1, 0.05, 3.0),
         offset=(0.0, 0.0), fit_error=2.0):
    ja, jt = np.array(anchor), np.array(upstream)
    target = camera.project_np(ja + lam_true * (jt - ja)) + np.array(offset)
    return LimbProblem(residual_by_name(kind), ja, jt, target, camera, fit_error)


def test_rafo_loss_is_eq_4_and_5():
    ja, jt = torch.tensor([[0.0, 0.5, 2.0]]), torch.tensor([[0.0, 0.0, 2.0]])
    ja_init = torch.tensor([[0.1, 0.5, 2.0]])
    lam = torch.tensor([0.25])
    target = torch.tensor([[510.0, 690.0]])
    focal, centre = torch.tensor([1000.0]), torch.tensor([[500.0, 500.0]])
    loss = rafo_loss(ja, lam, ja_init, jt, target, focal, centre, torch.tensor([2.0]), torch.tensor([3.0]))
    r = ja + 0.25 * (jt - ja)  # eq. 3
    r2d = 1000.0 * r[:, :2] / r[:, 2:] + 500.0
    expected = ((r2d - target) ** 2).sum() + 2.0 * 0.1**2 + 3.0 * (0.5 - math.hypot(0.1, 0.5)) ** 2
    assert torch.allclose(loss, expected.reshape(1))
    assert torch.allclose(endpoint(ja, jt, lam), torch.tensor([[0.0, 0.375, 2.0]]))


@pytest.mark.parametrize("lam_true", [0.1, 0.35, 0.6, 0.9])
def test_rafo_recovers_lambda_when_the_anchor_is_right(lam_true):
    """Eq. 4 as written (the tilt prior off: it would turn this right anchor to a typical tilt)."""
    cam = Camera(1080, 1920, 1600.0)
    res = solve([limb(cam, lam_true)], RafoConfig(tilt_prior_sd=0.0))[0]
    assert abs(res.lam - lam_true) < 0.01 and res.accepted and res.reproj_error_px < 1.0
    assert np.linalg.norm(res.anchor_3d - res.anchor_init_3d) < 0.01


def test_rafo_moves_the_anchor_to_reach_an_off_line_endpoint():
    cam = Camera(1080, 1920, 1600.0)
    res = solve([limb(cam, 0.5, offset=(25.0, 0.0))])[0]
    assert res.reproj_error_px < 2.0 and res.accepted
    assert np.linalg.norm(res.anchor_3d - res.anchor_init_3d) > 0.01  # Ja really moved
    seg_init = np.linalg.norm(res.upstream_3d - res.anchor_init_3d)
    assert abs(np.linalg.norm(res.upstream_3d - res.anchor_3d) - seg_init) < 0.01  # eq. 5 kept the length


def test_rafo_keeps_lambda_in_range_and_reports_rejections():
    cam = Camera(1080, 1920, 1600.0)
    beyond = limb(cam, 1.4)  # the endpoint lies above the upstream joint
    res = solve([beyond], RafoConfig(lambda_min=0.05, lambda_max=0.95, alpha0=100.0, mu0=100.0))[0]
    assert 0.05 <= res.lam <= 0.95
    assert not res.accepted and res.reproj_error_px >= 15.0  # reported, not dropped


def test_rafo_limbs_are_independent():
    cam = Camera(1080, 1920, 1600.0)
    a, b = limb(cam, 0.3), limb(cam, 0.7, anchor=(-0.2, 0.5, 3.2), upstream=(-0.2, 0.1, 3.2))
    together = solve([a, b])
    alone = solve([b])
    assert together[1].lam == alone[0].lam and together[0].lam == solve([a])[0].lam  # more in test_rafo.py


def test_pose_follows_the_optimised_anchor(model):
    from resihmr_blender.core.rafo import ResidualResult

    people, cameras, _ = synthetic(model, 1, seed=6)
    fit = fit_people(model, people, cameras)[0]
    knee, ankle = fit.joints_3d[JOINT_INDEX["right_knee"]], fit.joints_3d[JOINT_INDEX["right_ankle"]]
    # RAFO moved the anchor: the shank turned 25° about the knee, sideways
    c, s_ = math.cos(math.radians(25)), math.sin(math.radians(25))
    turned = knee + np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]]) @ (ankle - knee)
    moved = ResidualResult("right_transtibial", 0.5, turned, ankle, knee, 0.5 * (turned + knee), np.zeros(2),
                           np.zeros(2), 1.0, True, 1.0, 1.0)
    body_pose = pose_following_anchors(model, fit.params(), [moved])
    with torch.no_grad():
        out = model.joints_only(**{k: torch.tensor(np.asarray(v), dtype=model.dtype)[None]
                                   for k, v in dict(fit.params(), body_pose=body_pose).items()})
    joints = out.joints[0].numpy()
    got = joints[JOINT_INDEX["right_ankle"]] - joints[JOINT_INDEX["right_knee"]]
    want = turned - knee
    assert np.dot(want, got) / np.linalg.norm(want) / np.linalg.norm(got) > math.cos(math.radians(0.5))
    # nothing else moved: the other leg's ankle is where the fit put it
    assert np.allclose(joints[JOINT_INDEX["left_ankle"]], fit.joints_3d[JOINT_INDEX["left_ankle"]], atol=1e-4)


def test_matrix_to_axis_angle_round_trip():
    from resihmr_blender.core.rotations import axis_angle_to_matrix
    rng = np.random.default_rng(0)
    for rotvec in list(rng.normal(0, 1.0, (20, 3))) + [np.array([math.pi - 1e-4, 0, 0]), np.zeros(3)]:
        rot = axis_angle_to_matrix(torch.tensor(rotvec)[None])[0].numpy()
        back = axis_angle_to_matrix(torch.tensor(matrix_to_axis_angle(rot))[None])[0].numpy()
        assert np.allclose(rot, back, atol=1e-6)


def test_pose_following_skips_rejected_limbs(model):
    people, cameras, _ = synthetic(model, 1, seed=7)
    fit = fit_people(model, people, cameras)[0]
    from resihmr_blender.core.rafo import ResidualResult
    rejected = ResidualResult("left_transtibial", 0.5, np.ones(3), np.zeros(3), np.zeros(3) + 0.1, np.ones(3),
                              np.zeros(2), np.zeros(2), 99.0, False, 1.0, 1.0)
    assert np.array_equal(pose_following_anchors(model, fit.params(), [rejected]), fit.body_pose)


def test_several_starts_keep_the_best_basin_per_person(model):
    """Each person keeps the start with the lowest final objective; people do not influence each other's pick."""
    people, cameras, _ = synthetic(model, 3, seed=11)
    plain = {"retry_starts": (), "retries": ()}  # the starts alone, no retries
    one = {s: fit_people(model, people, cameras, FitConfig(starts=(s,), **plain)) for s in ("facing", "turned")}
    both = fit_people(model, people, cameras, FitConfig(starts=("facing", "turned"), **plain))
    for i, fit in enumerate(both):
        errors = {s: one[s][i].fit_error_px for s in one}
        assert fit.fit_error_px <= min(errors.values()) + 0.05, (i, errors, fit.fit_error_px)
    # the check means something: on some person the two starts end in different basins
    assert max(abs(a.fit_error_px - b.fit_error_px) for a, b in zip(one["facing"], one["turned"])) > 0.2


REAL = __import__("pathlib").Path(__file__).resolve().parent / "data" / "real_openpose"
DISTAL = {"left_transtibial": ("LKnee", "LAnkle", ("LAnkle", "LBigToe", "LSmallToe", "LHeel")),
          "right_transradial": ("RElbow", "RWrist", ("RWrist",)),
          "left_transfemoral": ("LHip", "LKnee", ("LKnee", "LAnkle", "LBigToe", "LSmallToe", "LHeel"))}


@pytest.mark.parametrize("name,size", [("openpose-editor_pose.json", (512, 512)),
                                       ("derived_prohmr_normalised_keypoints.json", (1000, 1000))])
def test_a_residual_limb_never_moves_the_intact_body(model, name, size):
    """Real OpenPose files (where a declared limb once flipped the torso and moved intact joints by up to 1.8 m):
    the fit with a residual limb declared (its distal keypoints left in, as detectors hallucinate them) equals the
    intact fit of the same keypoints with those keypoints removed, on every intact joint, and only the segment
    turns towards the endpoint."""
    import copy

    from resihmr_blender.core.keypoints_io import read_keypoints
    from resihmr_blender.core.pipeline import camera_for
    from resihmr_blender.core.settings import Settings

    kfile = read_keypoints(REAL / name, image_size=size)
    person, camera = kfile.people[0], camera_for(kfile, Settings())
    for kind, (upper, lower, distal) in DISTAL.items():
        ia, ib = BODY25_INDEX[upper], BODY25_INDEX[lower]
        if min(person.body25[ia, 2], person.body25[ib, 2]) < 0.3:
            continue
        ignored = [BODY25_INDEX[n] for n in distal]
        removed = copy.deepcopy(person)
        removed.body25[ignored] = 0.0
        declared = copy.deepcopy(person)  # hallucinated distal keypoints left in
        # the endpoint a third of the way down, pulled 15 px off the keypoints' line: the segment must turn
        end = person.body25[ia, :2] + (person.body25[ib, :2] - person.body25[ia, :2]) / 3 + [15.0, 0.0]
        declared.residual[RESIDUAL_KINDS.index(kind)] = [*end, 0.9]
        a, b = fit_people(model, [removed, declared], [camera, camera])
        intact = [i for i in range(25) if i not in ignored]
        assert np.abs(a.body25_3d[intact] - b.body25_3d[intact]).max() < 1e-6, kind
        assert np.allclose(a.transl, b.transl, atol=1e-9) and np.allclose(a.global_orient, b.global_orient, atol=1e-9)
        upstream = residual_by_name(kind).upstream_joint
        turned = np.abs(a.joints_3d[JOINT_INDEX[residual_by_name(kind).anchor_joint]]
                        - b.joints_3d[JOINT_INDEX[residual_by_name(kind).anchor_joint]]).max()
        assert turned > 1e-3, (kind, upstream)  # the segment did turn towards the endpoint


def test_wrong_minima_are_left_by_other_hypotheses(model):
    """Two foreign benchmark people (Anny bodies, benchmarks/data/foreign_cases.npz) that the two plain starts left
    in a wrong minimum (crouching: a knee 121 px off a confident keypoint; crouching: knees 42 and 30 px off): the
    torso leaning forward, and the crouched-leg retry of the far legs, find the right basin, and the fit records
    which hypothesis won."""
    from benchmarks.foreign import load_cases

    cases = [load_cases()[i] for i in (31, 45)]
    people, cameras = [c.keypoints for c in cases], [c.fit_camera for c in cases]

    def worst(fits):
        return [float((np.linalg.norm(f.body25_2d - c.keypoints.body25[:, :2], axis=-1)
                       * (c.gt_body25_exists & (c.keypoints.body25[:, 2] >= 0.5))).max()) for f, c in zip(fits, cases)]

    plain = fit_people(model, people, cameras, FitConfig(starts=("facing", "turned"), retry_starts=(), retries=()))
    ours = fit_people(model, people, cameras)
    assert min(worst(plain)) > 40.0 and all(f.hypothesis in ("facing", "turned") for f in plain)
    assert max(worst(ours)) < 25.0, worst(ours)
    assert ours[0].hypothesis.startswith("lean_fwd") and ours[1].hypothesis.endswith("+crouched"), [
        f.hypothesis for f in ours]
    for f, p, c in zip(ours, plain, cases):  # closer to the truth too, not only to the keypoints
        truth = lambda fit: np.linalg.norm(fit.body25_2d - c.gt_body25_2d, axis=-1)[c.gt_body25_exists].mean()  # noqa: E731
        assert truth(f) < truth(p) - 3.0


def test_feet_without_keypoints_are_laid_flat(model):
    """LDPose COCO inputs carry no toes or heels: the flat-foot prior lays those feet flat on the level camera's
    ground, which on the foreign benchmark's COCO people (Anny's own feet) brings the toes and heels closer to the
    truth than the ankle's rest pose under the fitted shank; feet with keypoints get no such term."""
    from benchmarks.foreign import load_cases
    from resihmr_blender.core.fit import FitObjective, keypoint_weights

    cases = [c for c in load_cases() if c.keypoints.source_format != "openpose"][:10]
    people, cameras = [c.keypoints for c in cases], [c.fit_camera for c in cases]
    foot = [BODY25_INDEX[s + n] for s in "LR" for n in ("BigToe", "SmallToe", "Heel")]

    def foot_error(fits):
        return np.mean([np.linalg.norm(f.body25_2d[j] - c.gt_body25_2d[j]) for f, c in zip(fits, cases)
                        for j in foot if c.gt_body25_exists[j]])

    def pitch(fits):  # toes below (+) or above their heel, degrees
        return np.array([math.degrees(math.asin((f.body25_3d[j, 1] - f.body25_3d[j + 2 - k, 1])
                                                / np.linalg.norm(f.body25_3d[j] - f.body25_3d[j + 2 - k])))
                         for f, c in zip(fits, cases) for j0 in (19, 22) for k, j in enumerate((j0, j0 + 1))
                         if c.gt_body25_exists[j]])

    flat, tilted = fit_people(model, people, cameras), fit_people(model, people, cameras, FitConfig(foot_flat_weight=0))
    assert foot_error(flat) < foot_error(tilted) - 4.0, (foot_error(flat), foot_error(tilted))
    assert np.median(np.abs(pitch(flat))) < 5.0 < np.median(np.abs(pitch(tilted)))
    # an OpenPose person's feet are seen: the prior is zero there
    seen, cam, _ = synthetic(model, 1, seed=8)
    w = torch.tensor(np.r_[keypoint_weights(seen[0], FitConfig()), np.zeros(8)])[None]
    fit = fit_people(model, seen, cam)[0]
    objective = FitObjective(model, None, None, None, None, FitConfig())
    assert torch.all(objective.foot_residuals(torch.tensor(fit.body25_3d)[None], w) == 0)


def test_retried_people_fit_the_same_alone_and_in_a_batch(model):
    """Which people retry (and with which starts and limb poses) depends on each person alone: a person's fit,
    and the hypothesis that won, are the same alone as in a batch where others retry differently."""
    from benchmarks.foreign import load_cases

    cases = [load_cases()[i] for i in (19, 45, 0)]  # two limb retries after a turned start, one plain
    batch = fit_people(model, [c.keypoints for c in cases], [c.fit_camera for c in cases])
    assert len({f.hypothesis for f in batch}) == 3 and sum("+" in f.hypothesis for f in batch) == 2
    for c, together in zip(cases, batch):
        alone = fit_people(model, [c.keypoints], [c.fit_camera])[0]
        assert alone.hypothesis == together.hypothesis
        assert np.abs(alone.body25_3d - together.body25_3d).max() < 1e-9


def test_the_analytic_point_jacobian_is_autograds(model):
    """BodyModel.points_and_jacobian (what LM differentiates the fit with) against autograd of joints_only's
    BODY_25 points, at a random pose and shape; camera_only keeps the first six columns."""
    gen = torch.Generator().manual_seed(3)
    dt = model.dtype
    nb = model.num_betas
    x = torch.cat([torch.randn(3, generator=gen, dtype=dt) * 0.5, torch.tensor([0.1, -0.2, 3.0], dtype=dt),
                   torch.randn(nb, generator=gen, dtype=dt), torch.randn(63, generator=gen, dtype=dt) * 0.3])

    def points(row):
        return model.joints_only(betas=row[None, 6:6 + nb], global_orient=row[None, :3],
                                 body_pose=row[None, 6 + nb:], transl=row[None, 3:6], body_only=True).body25[0]

    auto = torch.autograd.functional.jacobian(points, x)  # (25, 3, D)
    pts, jac = model.points_and_jacobian(x[None, 6:6 + nb], x[None, :3], x[None, 6 + nb:], x[None, 3:6])
    assert torch.allclose(pts[0], points(x), atol=1e-12)
    assert torch.allclose(jac[0], auto, atol=1e-10), (jac[0] - auto).abs().max()
    _, cam = model.points_and_jacobian(x[None, 6:6 + nb], x[None, :3], x[None, 6 + nb:], x[None, 3:6],
                                       camera_only=True)
    assert torch.allclose(cam[0], auto[..., :6], atol=1e-10)
