"""Synthetic ground truth for the benchmark: pose conventions measured on the body, poses, people, files."""
from __future__ import annotations

import collections
import math

import numpy as np
import pytest
import torch

from benchmarks import poses, synth
from resihmr_blender.core import rotations
from resihmr_blender.core.body_model import JOINT_INDEX, PARENTS, load_body_model
from resihmr_blender.core.keypoints_io import read_keypoints
from resihmr_blender.core.layouts import BODY25_INDEX, COCO17_TO_BODY25
from resihmr_blender.core.residuals import RESIDUAL_KINDS, distal_mask, residual_by_name

J = JOINT_INDEX


@pytest.fixture(scope="module")
def model():
    return load_body_model()


@pytest.fixture(scope="module")
def dataset(model):
    return synth.make_dataset(200, seed=7, model=model, coco_share=0.3)


def joints_of(model, body_pose, global_orient=None, betas=None, transl=None):
    """(B, 55, 3) joints and (B, 25, 3) BODY_25 as float64 numpy."""
    body_pose = np.atleast_2d(body_pose)
    kw = {"body_pose": torch.tensor(body_pose, dtype=model.dtype)}
    for name, value in (("global_orient", global_orient), ("betas", betas), ("transl", transl)):
        if value is not None:
            kw[name] = torch.tensor(np.atleast_2d(value), dtype=model.dtype)
    with torch.no_grad():
        out = model.joints_only(**kw)
    return out.joints.double().numpy(), out.body25.double().numpy()


def global_rotations(body_pose: np.ndarray) -> np.ndarray:
    """(22, 3, 3) world rotation of each body joint's frame (root unrotated), chained along the tree."""
    local = np.concatenate([np.eye(3)[None], rotations.aa_to_matrix(body_pose.reshape(-1, 3))])
    out = np.zeros_like(local)
    for j in range(len(local)):
        out[j] = local[j] if PARENTS[j] < 0 else out[PARENTS[j]] @ local[j]
    return out


def hinge_angles(body_pose: np.ndarray, joints: np.ndarray) -> dict[str, float]:
    """Signed flexion (degrees) of knees and elbows: positive = the way the joint bends, negative = hyperextension.

    The angle between the proximal and distal segment vectors, signed about the hinge axis of the proximal
    segment's frame (x for the knee, ∓y for the left/right elbow — the axes of the T-pose rest frames).
    """
    rots = global_rotations(body_pose)
    out = {}
    for side in ("left", "right"):
        for hinge, top, bottom, axis in (("knee", "hip", "ankle", np.array([1.0, 0, 0])),
                                         ("elbow", "shoulder", "wrist",
                                          np.array([0, -1.0 if side == "left" else 1.0, 0]))):
            p, h, d = joints[J[f"{side}_{top}"]], joints[J[f"{side}_{hinge}"]], joints[J[f"{side}_{bottom}"]]
            a, b = h - p, d - h
            world_axis = rots[J[f"{side}_{top}"]] @ axis
            out[f"{side}_{hinge}"] = math.degrees(math.atan2(np.cross(a, b) @ world_axis, a @ b))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Sign conventions, measured on the embedded body (frame: y up, subject's left +x, facing +z)


def test_rest_frame_is_as_documented(model):
    joints, _ = joints_of(model, np.zeros(63))
    j = joints[0]
    assert j[J["left_shoulder"], 0] > 0.1 > -0.1 > j[J["right_shoulder"], 0]
    assert j[J["head"], 1] > j[J["pelvis"], 1] > j[J["left_knee"], 1]
    _, b25 = joints_of(model, np.zeros(63))
    assert b25[0, BODY25_INDEX["Nose"], 2] > j[J["head"], 2]  # the face looks towards +z


def test_arms_down_lower_the_wrists(model):
    pose = poses.keyframe(**poses._arms(left_down=1.3, right_down=1.3, left_elbow=0.0, right_elbow=0.0))
    j = joints_of(model, pose)[0][0]
    for side in ("left", "right"):
        shoulder, wrist = j[J[f"{side}_shoulder"]], j[J[f"{side}_wrist"]]
        assert wrist[1] < shoulder[1] - 0.4  # well below the shoulder
        assert abs(wrist[0]) > abs(shoulder[0])  # still beside the body, not across it


def test_elbow_flexion_brings_the_wrist_forwards(model):
    for down in (0.0, 1.3):  # from the T-pose and from arms hanging down
        straight = joints_of(model, poses.keyframe(**poses._arms(left_down=down, right_down=down,
                                                                 left_elbow=0.0, right_elbow=0.0)))[0][0]
        bent = joints_of(model, poses.keyframe(**poses._arms(left_down=down, right_down=down,
                                                             left_elbow=1.2, right_elbow=1.2)))[0][0]
        for side in ("left", "right"):
            w = J[f"{side}_wrist"]
            assert bent[w, 2] > straight[w, 2] + 0.15, (down, side)
            if down:
                assert bent[w, 1] > straight[w, 1] + 0.05, (down, side)  # and up


def test_knee_flexion_moves_the_ankle_backwards_and_hip_flexion_the_knee_forwards(model):
    j = joints_of(model, poses.keyframe(left_knee=[("x", 1.0)], right_hip=[("x", -0.8)]))[0][0]
    rest = joints_of(model, np.zeros(63))[0][0]
    assert j[J["left_ankle"], 2] < rest[J["left_ankle"], 2] - 0.2
    assert j[J["right_knee"], 2] > rest[J["right_knee"], 2] + 0.2


def test_spine_neck_and_hip_abduction_signs(model):
    rest = joints_of(model, np.zeros(63))[0][0]
    fwd = joints_of(model, poses.keyframe(spine1=[("x", 0.4)]))[0][0]
    assert fwd[J["head"], 2] > rest[J["head"], 2] + 0.1
    lean = joints_of(model, poses.keyframe(spine1=[("z", 0.3)]))[0][0]
    assert lean[J["head"], 0] < rest[J["head"], 0] - 0.1  # z+ leans to the subject's right (-x)
    abd = joints_of(model, poses.keyframe(left_hip=[("z", 0.4)], right_hip=[("z", -0.4)]))[0][0]
    assert abd[J["left_ankle"], 0] > rest[J["left_ankle"], 0] + 0.2
    assert abd[J["right_ankle"], 0] < rest[J["right_ankle"], 0] - 0.2
    _, b25 = joints_of(model, poses.keyframe(neck=[("y", 0.6)]))
    assert b25[0, BODY25_INDEX["Nose"], 0] > 0.05  # y+ turns the face to the subject's left


def test_keyframes_look_like_their_names(model):
    names = list(poses.KEYFRAMES)
    joints, _ = joints_of(model, np.stack([poses.KEYFRAMES[n] for n in names]))
    k = {n: joints[i] for i, n in enumerate(names)}
    for name in ("standing", "walk_left_step", "side_step", "look_sideways"):
        for side in ("left", "right"):  # arms down by the sides
            assert k[name][J[f"{side}_wrist"], 1] < k[name][J[f"{side}_shoulder"], 1] - 0.3, name
    w = k["wave_left"]
    assert w[J["left_wrist"], 1] > w[J["left_elbow"], 1] > w[J["left_shoulder"], 1]
    r = k["reach_forward"]
    assert r[J["right_wrist"], 2] > r[J["right_shoulder"], 2] + 0.4
    assert abs(r[J["right_wrist"], 1] - r[J["right_shoulder"], 1]) < 0.2
    s = k["sitting"]
    for side in ("left", "right"):  # thighs horizontal, shanks vertical
        assert abs(s[J[f"{side}_knee"], 1] - s[J[f"{side}_hip"], 1]) < 0.1
        assert s[J[f"{side}_knee"], 2] > s[J[f"{side}_hip"], 2] + 0.3
        assert abs(s[J[f"{side}_ankle"], 2] - s[J[f"{side}_knee"], 2]) < 0.1
    h = k["hands_on_hips"]
    for side in ("left", "right"):
        assert abs(h[J[f"{side}_wrist"], 1] - h[J[f"{side}_hip"], 1]) < 0.2
        assert abs(h[J[f"{side}_elbow"], 0]) > abs(h[J[f"{side}_wrist"], 0])  # elbows out
    wl = k["walk_left_step"]
    assert wl[J["left_ankle"], 2] > wl[J["right_ankle"], 2] + 0.3
    assert wl[J["right_wrist"], 2] > wl[J["left_wrist"], 2]  # the opposite arm swings forwards


def test_sampled_poses_never_hyperextend_knees_or_elbows(model):
    rng = np.random.default_rng(0)
    body_poses = poses.sample_poses(rng, 400)
    assert (body_poses >= poses.LIMIT_LOW - 1e-9).all() and (body_poses <= poses.LIMIT_HIGH + 1e-9).all()
    joints, _ = joints_of(model, body_poses)
    worst = min(min(hinge_angles(p, j).values()) for p, j in zip(body_poses, joints))
    assert worst > -5.0
    # and the measure itself sees a hyperextension when there is one
    bad = poses.keyframe(left_knee=[("x", -0.5)], right_elbow=[("y", -0.5)])
    angles = hinge_angles(bad, joints_of(model, bad)[0][0])
    assert angles["left_knee"] < -10 and angles["right_elbow"] < -10
    good = poses.keyframe(**poses._arms(left_elbow=1.0, right_elbow=1.0), left_knee=[("x", 1.0)])
    angles = hinge_angles(good, joints_of(model, good)[0][0])
    assert min(angles["left_knee"], angles["left_elbow"], angles["right_elbow"]) > 40


def test_slerp_and_axis_angle_round_trip():
    rng = np.random.default_rng(1)
    aa = rng.normal(0, 1.0, (50, 3))
    m = rotations.aa_to_matrix(aa)
    assert np.allclose(rotations.aa_to_matrix(rotations.quat_to_aa(rotations.aa_to_quat(aa))), m, atol=1e-9)
    back = np.stack([rotations.matrix_to_axis_angle(x) for x in m])
    assert np.allclose(rotations.aa_to_matrix(back), m, atol=1e-9)
    a, b = aa[:10], aa[10:20]
    assert np.allclose(rotations.aa_to_matrix(rotations.slerp(a, b, 0.0)), rotations.aa_to_matrix(a), atol=1e-9)
    assert np.allclose(rotations.aa_to_matrix(rotations.slerp(a, b, 1.0)), rotations.aa_to_matrix(b), atol=1e-9)
    half = rotations.slerp(np.zeros(3), np.array([0, 0, 1.0]), 0.5)
    assert np.allclose(half, [0, 0, 0.5])


# ---------------------------------------------------------------------------------------------------------------
# People


def _arrays(p: synth.SyntheticPerson) -> list[np.ndarray]:
    return [p.keypoints.body25, p.keypoints.residual, p.gt_body25_2d, p.hallucinated, *p.params.values(),
            np.array([p.camera.width, p.camera.height, p.camera.focal_length]), np.array(list(p.residuals.values()))]


def test_deterministic_for_a_seed_and_prefix_stable(model):
    a = synth.make_dataset(8, seed=3, model=model)
    b = synth.make_dataset(8, seed=3, model=model)
    c = synth.make_dataset(4, seed=3, model=model)
    d = synth.make_dataset(8, seed=4, model=model)
    for pa, pb in zip(a, b):
        assert all(np.array_equal(x, y) for x, y in zip(_arrays(pa), _arrays(pb)))
        assert pa.residuals == pb.residuals and pa.hallucination_modes == pb.hallucination_modes
    for pa, pc in zip(a, c):
        assert all(np.array_equal(x, y) for x, y in zip(_arrays(pa), _arrays(pc)))
    assert not np.array_equal(a[0].params["betas"], d[0].params["betas"])


def test_cameras_shapes_and_placement(dataset):
    for p in dataset:
        cam = p.camera
        assert (cam.width, cam.height) in synth.IMAGE_SIZES
        assert 0.8 <= cam.focal_length / math.hypot(cam.width, cam.height) <= 1.6
        assert cam.principal_point == (cam.width / 2, cam.height / 2)
        g = p.gt_body25_2d
        assert (g >= 0).all() and (g[:, 0] <= cam.width).all() and (g[:, 1] <= cam.height).all()
        assert 0.4 <= np.ptp(g[:, 1]) / cam.height <= 0.9
        assert 2.3 < p.gt_body25_3d[:, 2].mean() < 6.2
        assert (np.abs(p.params["betas"]) <= 2.5).all()
        # facing the camera: the body's forward axis (+z) points back at the camera within 60° (+ tilt)
        forward = synth.rotation_matrix(p.params)[:, 2]
        assert -forward[2] >= math.cos(math.radians(62))
        assert synth.rotation_matrix(p.params)[1, 1] < -0.98  # upright (y up -> image up)


def test_ground_truth_matches_the_body_model(model, dataset):
    for p in dataset[:60]:
        joints, b25 = joints_of(model, p.params["body_pose"], p.params["global_orient"], p.params["betas"],
                                p.params["transl"])
        assert np.allclose(joints[0], p.gt_joints_3d, atol=1e-5)
        assert np.allclose(p.camera.project_np(b25[0]), p.gt_body25_2d, atol=1e-2)
        for kind_name, lam in p.residuals.items():
            kind = residual_by_name(kind_name)
            ja, jt = joints[0, J[kind.anchor_joint]], joints[0, J[kind.upstream_joint]]
            assert np.allclose(p.gt_anchor_3d[kind_name], ja, atol=1e-5)
            assert np.allclose(p.gt_upstream_3d[kind_name], jt, atol=1e-5)
            ja, jt, end = p.gt_anchor_3d[kind_name], p.gt_upstream_3d[kind_name], p.gt_endpoint_3d[kind_name]
            # on the segment between Ja and Jt, at λ from the anchor
            assert np.linalg.norm(np.cross(end - ja, jt - ja)) < 1e-9
            assert np.isclose(np.linalg.norm(end - ja), lam * np.linalg.norm(jt - ja))
            assert np.isclose(p.gt_residual_length_m[kind_name], np.linalg.norm(end - jt))
            assert 0.02 < p.gt_residual_length_m[kind_name] < 0.5
            k = RESIDUAL_KINDS.index(kind_name)
            assert np.allclose(p.camera.project_np(end), p.gt_residual_2d[k])


def test_residuals_lambda_and_one_kind_per_limb(dataset):
    counts = collections.Counter()
    for p in dataset:
        assert 1 <= len(p.residuals) <= 3
        assert all(0.1 <= lam <= 0.9 for lam in p.residuals.values())
        limbs = [residual_by_name(k).limb for k in p.residuals]
        assert len(set(limbs)) == len(limbs)
        assert p.keypoints.residual_kinds() == list(p.residuals)
        assert np.array_equal(p.gt_residual_exists, [k in p.residuals for k in RESIDUAL_KINDS])
        assert np.array_equal(p.gt_body25_exists, ~distal_mask(list(p.residuals)))
        counts.update(p.residuals)
    expected = sum(counts.values()) / 8
    assert all(counts[k] > 0.6 * expected for k in RESIDUAL_KINDS), counts


def test_observed_keypoints(dataset):
    for p in dataset:
        kp = p.keypoints
        conf = kp.body25[:, 2]
        intact = p.gt_body25_exists & kp.body25_available & ~p.dropped
        assert (conf[intact] >= 0.6).all() and (conf[intact] <= 1.0).all()
        err = np.linalg.norm(kp.body25[intact, :2] - p.gt_body25_2d[intact], axis=1)
        assert err.max() < 6 * 3.0
        assert (kp.body25[p.dropped] == 0).all() and not (p.dropped & ~p.gt_body25_exists).any()
        # the torso stays usable: both shoulders and at least one hip observed
        assert conf[BODY25_INDEX["RShoulder"]] > 0 and conf[BODY25_INDEX["LShoulder"]] > 0
        assert max(conf[BODY25_INDEX["RHip"]], conf[BODY25_INDEX["LHip"]]) > 0
        res = kp.residual
        ok = p.gt_residual_exists
        assert (res[ok, 2] >= 0.6).all() and (res[~ok] == 0).all()
        assert (np.linalg.norm(res[ok, :2] - p.gt_residual_2d[ok], axis=1) < 6 * 3.0).all()
        # what does not exist is either hallucinated or unobserved
        missing = ~p.gt_body25_exists
        assert not (p.hallucinated & p.gt_body25_exists).any()
        assert ((conf[p.hallucinated] >= 0.5) & (conf[p.hallucinated] <= 0.9)).all()
        assert (kp.body25[missing & ~p.hallucinated] == 0).all()
    dropped_share = sum(p.dropped.sum() for p in dataset) / sum(p.gt_body25_exists.sum() for p in dataset)
    assert 0.02 < dropped_share < 0.08


def test_hallucinations_are_never_at_the_true_intact_positions(model, dataset):
    modes = collections.Counter()
    n_limbs = 0
    for p in dataset:
        joints, b25 = joints_of(model, p.params["body_pose"], p.params["global_orient"], p.params["betas"],
                                p.params["transl"])
        intact_2d = p.camera.project_np(b25[0])  # the body model has all limbs
        h = p.hallucinated
        assert (np.linalg.norm(p.keypoints.body25[h, :2] - intact_2d[h], axis=1) >= 20.0).all()
        n_limbs += len(p.residuals)
        for kind_name, mode in p.hallucination_modes.items():
            modes[mode] += 1
            distal = [i for i in residual_by_name(kind_name).distal_body25 if p.keypoints.body25_available[i]]
            assert h[distal].all()
            if mode == "squeezed":
                end = p.gt_residual_2d[RESIDUAL_KINDS.index(kind_name)]
                assert (np.linalg.norm(p.keypoints.body25[distal, :2] - end, axis=1) <= 10.0 + 1e-6).all()
        for kind_name in set(p.residuals) - set(p.hallucination_modes):
            assert not h[list(residual_by_name(kind_name).distal_body25)].any()
    assert set(modes) == set(synth.HALLUCINATION_MODES)
    assert 0.55 < sum(modes.values()) / n_limbs < 0.8


def test_coco_people_lack_neck_midhip_toes_and_heels(dataset):
    coco = [p for p in dataset if p.keypoints.source_format == "coco-ldpose"]
    assert 0.2 * len(dataset) < len(coco) < 0.4 * len(dataset)
    names = ("Neck", "MidHip", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
    missing = [BODY25_INDEX[n] for n in names]
    assert sorted(set(range(25)) - set(COCO17_TO_BODY25)) == sorted(missing)
    for p in coco:
        assert not p.keypoints.body25_available[missing].any()
        assert p.keypoints.body25_available.sum() == 17
        assert (p.keypoints.body25[missing] == 0).all() and not p.hallucinated[missing].any()
    for p in dataset:
        if p.keypoints.source_format == "openpose":
            assert p.keypoints.body25_available.all()


def test_written_files_read_back(tmp_path, dataset):
    people = dataset[:12]
    folder = synth.write_dataset(tmp_path / "synth", people, meta={"seed": 7})
    for p in people:
        kf = read_keypoints(folder / synth.keypoints_filename(p.index))
        assert kf.image_size == (p.camera.width, p.camera.height)
        assert kf.focal_length_px == pytest.approx(p.camera.focal_length)
        [person] = kf.people
        assert np.allclose(person.body25, p.keypoints.body25) and np.allclose(person.residual, p.keypoints.residual)
        assert np.array_equal(person.body25_available, p.keypoints.body25_available)
        assert person.source_format == p.keypoints.source_format
    back = synth.read_dataset(folder)
    assert len(back) == len(people)
    for a, b in zip(people, back):
        assert all(np.allclose(x, y) for x, y in zip(_arrays(a), _arrays(b)))
        assert a.residuals == b.residuals and a.hallucination_modes == b.hallucination_modes
        assert a.gt_residual_length_m == b.gt_residual_length_m and a.pose_source == b.pose_source
        assert np.array_equal(a.gt_body25_exists, b.gt_body25_exists) and np.array_equal(a.dropped, b.dropped)
        assert all(np.allclose(a.gt_endpoint_3d[k], b.gt_endpoint_3d[k]) for k in a.residuals)
