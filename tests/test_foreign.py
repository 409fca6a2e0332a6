"""The foreign-body benchmark's committed cases (benchmarks/foreign.py) and RAFO's λ interval (core/rafo.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks import foreign
from benchmarks.synth import COCO_AVAILABLE, MIN_HALLUCINATION_OFFSET_PX
from resihmr_blender.core.body_model import JOINT_INDEX, load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.layouts import BODY25_INDEX
from resihmr_blender.core.pipeline import reconstruct
from resihmr_blender.core.rafo import LimbProblem, RafoConfig, solve
from resihmr_blender.core.residuals import RESIDUAL_KINDS, distal_mask, residual_by_name
from resihmr_blender.core.result_json import person_json, residual_result
from resihmr_blender.core.rotations import matrix_to_axis_angle, rot


@pytest.fixture(scope="module")
def cases():
    return foreign.load_cases()


def test_committed_cases_hold_what_the_docstring_says(cases):
    meta = foreign.read_meta()
    assert foreign.DEFAULT_CASES.stat().st_size < 3e6
    assert meta["seed"] == foreign.HELD_OUT_SEED and meta["n"] == len(cases) == 100
    assert meta["bone_body25"] == foreign.BONE_BODY25 and meta["mask_scale"] == foreign.MASK_SCALE
    assert {c.family for c in cases} == set(foreign.POSE_FAMILIES)
    heights = [c.height_m for c in cases]
    assert min(heights) < 1.45 and max(heights) > 1.85  # children to tall adults
    assert 30 <= sum(c.focal_given for c in cases) <= 70  # the focal withheld in about half the cases
    for c in cases:
        w, h = c.camera.width, c.camera.height
        assert 800 <= c.camera.focal_length <= 4000
        assert c.fit_camera.focal_length == (c.camera.focal_length if c.focal_given
                                             else Camera.for_image(w, h).focal_length)
        # every true keypoint inside the image; the ones beyond an amputation do not exist
        assert (c.gt_body25_2d >= 0).all() and (c.gt_body25_2d <= [w, h]).all()
        assert np.array_equal(c.gt_body25_exists, ~distal_mask(list(c.residuals)))
        assert 1 <= len(c.residuals) <= 3 and list(c.residuals) == [k for k in RESIDUAL_KINDS if k in c.residuals]
        for kind, lam in c.residuals.items():
            assert 0.1 <= lam <= 0.9
            # the endpoint is λ along the true (Anny) segment, projected by the true camera
            end = c.gt_anchor_3d[kind] + lam * (c.gt_upstream_3d[kind] - c.gt_anchor_3d[kind])
            assert np.allclose(c.camera.project_np(end), c.gt_residual_2d[RESIDUAL_KINDS.index(kind)], atol=0.05)
            assert c.keypoints.residual[RESIDUAL_KINDS.index(kind), 2] > 0
            # the segment's ends are the mapped joints, e.g. knee and ankle of a transtibial limb
            k = residual_by_name(kind)
            assert np.allclose(c.gt_anchor_3d[kind], c.gt_body25_3d[k.anchor_body25], atol=1e-5)
            assert np.allclose(c.gt_upstream_3d[kind], c.gt_body25_3d[k.upstream_body25], atol=1e-5)
        obs = c.keypoints.body25
        assert (obs[~c.gt_body25_exists & ~c.hallucinated, 2] == 0).all()  # nothing there unless hallucinated
        far = np.linalg.norm(obs[c.hallucinated, :2] - c.gt_body25_2d[c.hallucinated], axis=1)
        assert (far >= MIN_HALLUCINATION_OFFSET_PX - 1e-3).all()
        if c.keypoints.source_format == "coco-ldpose":
            assert np.array_equal(c.keypoints.body25_available, COCO_AVAILABLE)
        # the silhouette: the image at mask_scale, covering the torso's true keypoints
        assert c.mask.shape == (round(h * c.mask_scale), round(w * c.mask_scale))
        torso = [BODY25_INDEX[n] for n in ("Neck", "MidHip", "RShoulder", "LShoulder", "RHip", "LHip")]
        px = np.floor(c.gt_body25_2d[torso] * c.mask_scale).astype(int)
        assert c.mask[px[:, 1], px[:, 0]].mean() >= 5 / 6
    assert sum(c.keypoints.source_format == "coco-ldpose" for c in cases) >= 5
    assert sum(c.hallucinated.any() for c in cases) >= 40


def test_amputated_parts_are_cut_from_the_silhouette(cases):
    """The distal joint of an amputated limb (an ankle below a transtibial stump) is mostly off the mask."""
    off, total = 0, 0
    for c in cases:
        for kind in c.residuals:
            distal = BODY25_INDEX[("R" if kind.startswith("right") else "L") + (
                "Wrist" if "arm" in residual_by_name(kind).limb else "Ankle")]
            x, y = np.floor(c.gt_body25_2d[distal] * c.mask_scale).astype(int)
            total += 1
            off += not c.mask[min(y, c.mask.shape[0] - 1), min(x, c.mask.shape[1] - 1)]
    assert off / total > 0.6  # a cut limb can still lie in front of the body (arms crossed, sitting)


def test_result_json_carries_the_lambda_interval(cases):
    model = load_body_model()
    picked = cases[:2]
    results = reconstruct(model, [c.keypoints for c in picked], [c.fit_camera for c in picked])
    n = 0
    for c, res in zip(picked, results):
        entry = person_json(res)
        assert [r["kind"] for r in entry["residuals"]] == list(c.residuals)
        for r in entry["residuals"]:
            lo, hi = r["lambda_interval"]
            assert 0.0 <= lo <= r["lambda"] <= hi <= 1.0
            assert residual_result(r).lam_interval == (lo, hi)
            # the λ hypotheses: a steeper segment reaches the same endpoint with a longer stump (a smaller λ)
            low, steep = sorted(r["lambda_hypotheses"], key=lambda h: h["sin_tilt"])
            assert low["sin_tilt"] < steep["sin_tilt"] and steep["lambda"] < low["lambda"]
            assert lo <= steep["lambda"] < low["lambda"] <= hi
            assert residual_result(r).lam_hypotheses == {f"{h['sin_tilt']:g}": h["lambda"]
                                                         for h in r["lambda_hypotheses"]}
            n += 1
    assert n >= 2


def _limb_seen(model, pitch_deg: float) -> tuple[float, float]:
    """RAFO on the left shank of the embedded body 3 m from the camera, the body turned by `pitch_deg`
    about the horizontal axis; returns (width of the λ interval, angle of the shank to the image plane)."""
    orient = rot("x", math.radians(pitch_deg)) @ rot("x", math.pi)  # facing the camera, then tipped over
    with torch.no_grad():
        out = model.joints_only(betas=torch.zeros(1, model.num_betas, dtype=model.dtype),
                                global_orient=torch.tensor(matrix_to_axis_angle(orient), dtype=model.dtype)[None],
                                body_pose=torch.zeros(1, 63, dtype=model.dtype))
    joints = out.joints[0].double().numpy()
    knee, ankle = joints[JOINT_INDEX["left_knee"]], joints[JOINT_INDEX["left_ankle"]]
    shift = np.array([0.0, 0.0, 3.0]) - 0.5 * (knee + ankle)  # the shank's middle on the optical axis
    knee, ankle = knee + shift, ankle + shift
    camera = Camera(1080, 1920, 1800.0)
    target = camera.project_np(ankle + 0.4 * (knee - ankle))  # the stump ends 40 % of the way up the shank
    kind = residual_by_name("left_transtibial")
    (res,) = solve([LimbProblem(kind, ankle, knee, target, camera, 3.0)], RafoConfig())
    lo, hi = res.lam_interval
    assert lo <= res.lam <= hi and lo <= 0.4 <= hi
    seg = knee - ankle
    view = 0.5 * (knee + ankle)
    tilt = math.degrees(math.asin(abs(seg @ view) / np.linalg.norm(seg) / np.linalg.norm(view)))
    return hi - lo, tilt


def test_lambda_interval_shrinks_when_the_limb_is_seen_side_on():
    model = load_body_model()
    side_on, tilt_side = _limb_seen(model, 0.0)
    foreshortened, tilt_fore = _limb_seen(model, 60.0)
    assert tilt_side < 15.0 < 45.0 < tilt_fore  # the shank across the view, then pointing along it
    assert side_on < 0.5 * foreshortened
