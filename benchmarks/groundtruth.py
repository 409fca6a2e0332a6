"""Synthetic ground truth for the fitting benchmark, made from the embedded body (no mocap data needed).

Each person: a random shape; a natural pose (two hand-authored keyframes blended, small bounded noise, clipped
to the anatomical limits of core/priors.py); facing the camera within ±60° of yaw; a camera with a known focal
length placing the whole body in the image; 1-3 amputated limbs over all 8 kinds with λ ~ U(0.1, 0.9); noisy,
sometimes dropped keypoints; and, for 70 % of the amputated limbs, the distal keypoints a detector hallucinates
on photos of amputees — along a prosthesis (the residual direction continued), in a wrong direction, squeezed
into the stump, or copied from the other side — never at the true intact positions. A share of people is given
only as LDPose-style COCO keypoints (no neck, mid-hip, toes or heels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from resihmr_blender.core.body_model import JOINT_INDEX, BodyModel, axis_angle_to_matrix, load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.keypoints import BODY25_INDEX, LIMBS, RESIDUAL_KINDS, RESIDUALS, Person, distal_mask
from resihmr_blender.core.priors import LIMIT_HIGH, LIMIT_INDEX, LIMIT_LOW
from resihmr_blender.core.rafo import matrix_to_axis_angle

IMAGE_SIZES = ((1080, 1920), (1920, 1080), (1000, 1000))
COCO_MISSING = ("Neck", "MidHip", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
HALLUCINATION_MODES = ("prosthesis", "wrong_direction", "squeezed", "mirrored")


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _keyframe(**joints: list[tuple[str, float]]) -> np.ndarray:
    """Body pose (63,) from per-joint elementary rotations, applied right to left (first one acts first)."""
    pose = np.zeros((22, 3))
    for name, steps in joints.items():
        rot = np.eye(3)
        for axis, angle in steps:
            rot = _rot(axis, angle) @ rot
        pose[JOINT_INDEX[name]] = matrix_to_axis_angle(rot)
    return pose[1:].reshape(-1)


def _arms(left_down=-1.3, right_down=1.3, left_fwd=0.0, right_fwd=0.0, left_elbow=-0.2, right_elbow=0.2):
    # arm down: about z; then swung forward (negative) or back about x; elbow flexion about y (mirrored)
    return {"left_shoulder": [("z", left_down), ("x", -left_fwd)],
            "right_shoulder": [("z", right_down), ("x", -right_fwd)],
            "left_elbow": [("y", left_elbow)], "right_elbow": [("y", right_elbow)]}


KEYFRAMES = {
    "standing": _keyframe(**_arms()),
    "walk_a": _keyframe(**_arms(left_fwd=-0.35, right_fwd=0.35, left_elbow=-0.3, right_elbow=0.4),
                        left_hip=[("x", -0.45)], right_hip=[("x", 0.25)], right_knee=[("x", 0.45)]),
    "walk_b": _keyframe(**_arms(left_fwd=0.35, right_fwd=-0.35, left_elbow=-0.4, right_elbow=0.3),
                        right_hip=[("x", -0.45)], left_hip=[("x", 0.25)], left_knee=[("x", 0.45)]),
    "wave": _keyframe(**_arms(left_down=0.9, left_elbow=-1.4), spine2=[("z", 0.05)]),
    "hands_on_hips": _keyframe(**_arms(left_down=-0.8, right_down=0.8, left_elbow=-1.6, right_elbow=1.6,
                                       left_fwd=-0.2, right_fwd=-0.2)),
    "reach": _keyframe(**_arms(right_fwd=1.2, right_elbow=0.1, left_fwd=0.4), spine1=[("x", 0.15)]),
    "sitting": _keyframe(**_arms(left_fwd=0.5, right_fwd=0.5, left_elbow=-0.9, right_elbow=0.9),
                         left_hip=[("x", -1.45)], right_hip=[("x", -1.45)], left_knee=[("x", 1.5)],
                         right_knee=[("x", 1.5)]),
    "squat": _keyframe(**_arms(left_fwd=0.8, right_fwd=0.8), left_hip=[("x", -1.1)], right_hip=[("x", -1.1)],
                       left_knee=[("x", 1.7)], right_knee=[("x", 1.7)], spine1=[("x", 0.3)]),
    "side_step": _keyframe(**_arms(left_down=-1.0), left_hip=[("z", 0.35)], right_knee=[("x", 0.15)]),
    "lean": _keyframe(**_arms(right_down=1.45), spine1=[("z", 0.12)], spine2=[("z", 0.12)],
                      spine3=[("z", 0.1)]),
    "look_aside": _keyframe(**_arms(), neck=[("y", 0.4)], head=[("y", 0.3)], spine3=[("y", 0.15)]),
}


def natural_pose(rng: np.random.Generator) -> np.ndarray:
    names = list(KEYFRAMES)
    a, b = rng.choice(len(names), 2, replace=False)
    alpha = rng.uniform(0, 1)
    pose = (1 - alpha) * KEYFRAMES[names[a]] + alpha * KEYFRAMES[names[b]] + rng.normal(0, 0.06, 63)
    pose[LIMIT_INDEX.numpy()] = np.clip(pose[LIMIT_INDEX.numpy()], LIMIT_LOW.numpy(), LIMIT_HIGH.numpy())
    return pose


@dataclass
class SyntheticPerson:
    keypoints: Person  # what a detector + annotator would give
    camera: Camera
    params: dict  # ground-truth betas, global_orient, body_pose, transl
    residuals: dict[str, float]  # kind -> λ
    gt_body25_2d: np.ndarray  # (25, 2) projection of the intact body's keypoints
    gt_body25_exists: np.ndarray  # (25,) False where the keypoint is distal to an amputation
    gt_residual_2d: np.ndarray  # (8, 2) endpoints (0 where none)
    gt_residual_exists: np.ndarray  # (8,)
    gt_residual_length_m: dict[str, float]  # (1 − λ) ||Jt − Ja||
    hallucinated: np.ndarray  # (25,) bool
    hallucination_modes: dict[str, str] = field(default_factory=dict)  # kind -> mode


def _camera_and_transl(rng, joints_local: np.ndarray, body25_local: np.ndarray):
    """Image size, focal length and translation putting the body 40-90 % of the image height, fully inside."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    focal = rng.uniform(0.8, 1.6) * math.hypot(width, height)
    pts = np.concatenate([joints_local, body25_local])
    extent = pts.max(axis=0) - pts.min(axis=0)
    span = max(extent[1], 0.3)
    depth = focal * span / (rng.uniform(0.4, 0.9) * height)
    centre = 0.5 * (pts.max(axis=0) + pts.min(axis=0))
    room_x = max(0.0, 0.5 * (width * depth / focal - extent[0]) * 0.9)
    room_y = max(0.0, 0.5 * (height * depth / focal - extent[1]) * 0.9)
    target = np.array([rng.uniform(-room_x, room_x), rng.uniform(-room_y, room_y), depth])
    return Camera(width, height, focal), target - centre


def _amputations(rng) -> dict[str, float]:
    limbs = rng.choice(len(LIMBS), rng.integers(1, 4), replace=False)
    out = {}
    for limb in limbs:
        kinds = [k.name for k in RESIDUALS if k.limb == LIMBS[limb]]
        out[kinds[rng.integers(2)]] = float(rng.uniform(0.1, 0.9))
    return out


def _hallucinate(rng, mode, distal, gt2d, end2d, upstream2d, mirror_source, midline_x):
    """Detector-style positions for the distal keypoints of one amputated limb."""
    if mode == "prosthesis":  # the missing part continues the residual segment's direction
        d = (end2d - upstream2d) / max(np.linalg.norm(end2d - upstream2d), 1e-6)
        side = np.array([-d[1], d[0]])
        out = []
        for i in distal:
            rel = gt2d[i] - upstream2d
            out.append(upstream2d + d * np.linalg.norm(rel) + side * rng.normal(0, 6.0))
        return np.array(out)
    if mode == "wrong_direction":
        angle = math.radians(rng.uniform(40, 120)) * rng.choice([-1, 1])
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return np.array([end2d + rot @ (gt2d[i] - end2d) for i in distal])
    if mode == "mirrored" and mirror_source is not None:
        return np.array([[2 * midline_x - p[0], p[1]] for p in mirror_source])
    return np.array([end2d + rng.normal(0, 4.0, 2) for _ in distal])  # squeezed into the stump


MIRROR = {"L": "R", "R": "L"}


def make_dataset(n: int, seed: int = 0, model: BodyModel | None = None, noise_px: float = 3.0,
                 coco_share: float = 0.2, hallucination_share: float = 0.7, drop_share: float = 0.05
                 ) -> list[SyntheticPerson]:
    """n people, deterministic for a seed."""
    model = model or load_body_model()
    rng = np.random.default_rng(seed)
    people: list[SyntheticPerson] = []
    while len(people) < n:
        betas = np.clip(rng.normal(0, 1, model.num_betas), -2.5, 2.5)
        pose = natural_pose(rng)
        yaw, pitch, roll = rng.uniform(-1.05, 1.05), rng.normal(0, 0.08), rng.normal(0, 0.08)
        orient = _rot("y", yaw) @ _rot("x", pitch) @ _rot("z", roll) @ _rot("x", math.pi)
        params = {"betas": betas, "global_orient": matrix_to_axis_angle(orient), "body_pose": pose,
                  "transl": np.zeros(3)}
        with torch.no_grad():
            local = model.joints_only(**{k: torch.tensor(v, dtype=model.dtype)[None] for k, v in params.items()})
        camera, transl = _camera_and_transl(rng, local.joints[0].numpy(), local.body25[0].numpy())
        params["transl"] = transl
        joints = local.joints[0].numpy() + transl
        body25_3d = local.body25[0].numpy() + transl
        gt2d = camera.project_np(body25_3d)
        if (gt2d < 0).any() or (gt2d[:, 0] >= camera.width).any() or (gt2d[:, 1] >= camera.height).any():
            continue
        residuals = _amputations(rng)
        people.append(_observe(rng, model, params, camera, joints, gt2d, residuals, noise_px, coco_share,
                               hallucination_share, drop_share))
    return people


def _observe(rng, model, params, camera, joints, gt2d, residuals, noise_px, coco_share, hallucination_share,
             drop_share) -> SyntheticPerson:
    exists = ~distal_mask(list(residuals))
    res2d, res_exists, lengths = np.zeros((8, 2)), np.zeros(8, bool), {}
    residual_obs = np.zeros((8, 3))
    for kind_name, lam in residuals.items():
        kind = next(k for k in RESIDUALS if k.name == kind_name)
        ja, jt = joints[JOINT_INDEX[kind.anchor_joint]], joints[JOINT_INDEX[kind.upstream_joint]]
        k = RESIDUAL_KINDS.index(kind_name)
        res2d[k] = camera.project_np(ja + lam * (jt - ja))
        res_exists[k] = True
        lengths[kind_name] = float((1 - lam) * np.linalg.norm(jt - ja))
        residual_obs[k] = [*(res2d[k] + rng.normal(0, noise_px, 2)), rng.uniform(0.6, 1.0)]
    body25 = np.zeros((25, 3))
    body25[exists, :2] = gt2d[exists] + rng.normal(0, noise_px, (int(exists.sum()), 2))
    body25[exists, 2] = rng.uniform(0.6, 1.0, int(exists.sum()))
    protected = {BODY25_INDEX["RShoulder"], BODY25_INDEX["LShoulder"], BODY25_INDEX["RHip"]}
    for i in np.nonzero(exists)[0]:
        if i not in protected and rng.uniform() < drop_share:
            body25[i] = 0.0
    hallucinated = np.zeros(25, bool)
    modes = {}
    midline_x = 0.5 * (gt2d[BODY25_INDEX["MidHip"], 0] + gt2d[BODY25_INDEX["Neck"], 0])
    for kind_name in residuals:
        if rng.uniform() >= hallucination_share:
            continue
        kind = next(k for k in RESIDUALS if k.name == kind_name)
        distal = list(kind.distal_body25)
        k = RESIDUAL_KINDS.index(kind_name)
        mode = HALLUCINATION_MODES[rng.integers(len(HALLUCINATION_MODES))]
        mirror_names = [name[:0] + MIRROR[name[0]] + name[1:] for name in
                        (list(BODY25_INDEX)[i] for i in distal)]
        mirror_idx = [BODY25_INDEX[m] for m in mirror_names]
        mirror_source = gt2d[mirror_idx] if exists[mirror_idx].all() else None
        if mode == "mirrored" and mirror_source is None:
            mode = "squeezed"
        points = _hallucinate(rng, mode, distal, gt2d, res2d[k], gt2d[kind.upstream_body25], mirror_source,
                              midline_x)
        # a hallucination at the true intact position would mislead nobody: keep them at least 20 px away
        for j, i in enumerate(distal):
            if np.linalg.norm(points[j] - gt2d[i]) < 20.0:
                points[j] = res2d[k] + rng.normal(0, 4.0, 2)
        points[:, 0] = np.clip(points[:, 0], 0, camera.width - 1)
        points[:, 1] = np.clip(points[:, 1], 0, camera.height - 1)
        body25[distal, :2] = points
        body25[distal, 2] = rng.uniform(0.5, 0.9, len(distal))
        hallucinated[distal] = True
        modes[kind_name] = mode
    coco = rng.uniform() < coco_share
    available = np.ones(25, bool)
    if coco:
        for name in COCO_MISSING:
            available[BODY25_INDEX[name]] = False
        body25[~available] = 0.0
        hallucinated &= available
    person = Person(body25=body25, residual=residual_obs, body25_available=available,
                    source_format="coco-ldpose" if coco else "openpose")
    return SyntheticPerson(person, camera, params, residuals, gt2d, exists, res2d, res_exists, lengths,
                           hallucinated, modes)


def rotation_of(params: dict) -> np.ndarray:
    return axis_angle_to_matrix(torch.tensor(params["global_orient"])[None])[0].numpy()
