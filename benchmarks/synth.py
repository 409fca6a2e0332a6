"""Synthetic ground truth for the fitting benchmark (DESIGN §5), made from the embedded body without mocap data.

Each person: a random shape; a natural pose (benchmarks/poses.py); facing the camera within ±60° of yaw and a
few degrees of pitch/roll; a pinhole camera (OpenCV frame, principal point at the centre) whose image holds the
whole body at 40-90 % of its height; 1-3 amputated limbs over the 8 kinds with λ ~ U(0.1, 0.9). The observed
keypoints are what a detector + annotator would give: noisy intact points, a few dropped, annotated residual
endpoints, and for 70 % of the amputated limbs the distal keypoints a detector hallucinates on photos of
amputees (never at the true intact positions). A share of people come as LDPose-style COCO keypoints.

Everything is deterministic for a seed, and person i depends only on (seed, i): make_dataset(10, s) is a prefix
of make_dataset(100, s).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.poses import sample_pose
from resihmr_blender.core.atomic import write_text_atomic
from resihmr_blender.core.body_model import JOINT_INDEX, NUM_BODY_JOINTS, BodyModel, load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.keypoints import KeypointsFile, Person
from resihmr_blender.core.keypoints_io import read_keypoints, write_keypoints
from resihmr_blender.core.layouts import BODY25_INDEX, BODY25_NAMES, COCO17_TO_BODY25
from resihmr_blender.core.residuals import LIMBS, RESIDUAL_KINDS, RESIDUALS, distal_mask, residual_by_name
from resihmr_blender.core.rotations import aa_to_matrix, matrix_to_axis_angle, rot
from resihmr_blender.core.stump import descendants, dominant_joint

IMAGE_SIZES: tuple[tuple[int, int], ...] = ((1080, 1920), (1920, 1080), (1000, 1000))  # (width, height)
FOCAL_DIAGONAL_RANGE = (0.8, 1.6)  # focal length / image diagonal
DEPTH_RANGE_M = (2.5, 6.0)
HEIGHT_FRACTION_RANGE = (0.4, 0.9)  # projected keypoint height / image height
MAX_YAW = math.radians(60.0)
TILT_SIGMA, MAX_TILT = math.radians(3.0), math.radians(6.0)  # pitch and roll
LAMBDA_RANGE = (0.1, 0.9)
HALLUCINATION_MODES: tuple[str, ...] = ("prosthesis", "wrong_direction", "squeezed", "mirrored")
MIN_HALLUCINATION_OFFSET_PX = 20.0  # a hallucination closer than this to the truth would be no hallucination
GROUND_TRUTH_FORMAT = "resihmr-synth-groundtruth/1"

COCO_AVAILABLE = np.zeros(len(BODY25_NAMES), bool)
COCO_AVAILABLE[list(COCO17_TO_BODY25)] = True  # COCO has no Neck, MidHip, toes or heels
_TORSO = [BODY25_INDEX[n] for n in ("RShoulder", "LShoulder", "RHip", "LHip")]


@dataclass
class SyntheticPerson:
    """One synthetic person: the observed keypoints and everything true about them (camera frame, metres/px)."""

    keypoints: Person  # observed: noisy, some dropped, hallucinated distal points, residual endpoints
    camera: Camera
    params: dict[str, np.ndarray]  # betas (10,), global_orient (3,), body_pose (63,), transl (3,); float64
    residuals: dict[str, float]  # kind -> λ, in RESIDUAL_KINDS order
    gt_anchor_3d: dict[str, np.ndarray]  # kind -> Ja (3,)
    gt_upstream_3d: dict[str, np.ndarray]  # kind -> Jt (3,)
    gt_endpoint_3d: dict[str, np.ndarray]  # kind -> R = Ja + λ (Jt − Ja)
    gt_residual_length_m: dict[str, float]  # kind -> (1 − λ) |Jt − Ja|
    gt_joints_3d: np.ndarray  # (55, 3) intact skeleton
    gt_body25_3d: np.ndarray  # (25, 3) intact body's BODY_25 points
    gt_body25_2d: np.ndarray  # (25, 2) their projection (all inside the image)
    gt_body25_exists: np.ndarray  # (25,) bool: False where distal to an amputation (not on this person)
    gt_residual_2d: np.ndarray  # (8, 2) projected endpoints, 0 where no such residual
    gt_residual_exists: np.ndarray  # (8,) bool
    hallucinated: np.ndarray  # (25,) bool: observed with confidence > 0 although it does not exist
    hallucination_modes: dict[str, str] = field(default_factory=dict)  # kind -> one of HALLUCINATION_MODES
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(25, bool))  # (25,) existing but unobserved
    pose_source: tuple[str, str, float] = ("", "", 0.0)  # keyframes a, b and the blend t
    index: int = 0  # position in the dataset (person i is drawn from seed (seed, i))


# ---------------------------------------------------------------------------------------------------------------
# Drawing one person


@dataclass
class _Draft:
    """What is drawn before the body is posed (one rejection-sampling attempt)."""

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    pose_source: tuple[str, str, float]


def _draft(rng: np.random.Generator, num_betas: int) -> _Draft:
    betas = np.zeros(num_betas)
    k = min(10, num_betas)
    betas[:k] = np.clip(rng.normal(0.0, 1.0, k), -2.5, 2.5)
    body_pose, source = sample_pose(rng)
    yaw = rng.uniform(-MAX_YAW, MAX_YAW)
    pitch, roll = np.clip(rng.normal(0.0, TILT_SIGMA, 2), -MAX_TILT, MAX_TILT)
    # Rx(π) turns the body's y-up/facing-+z into the camera's y-down/facing-the-camera; then turn and tilt
    orient = rot("y", yaw) @ rot("x", pitch) @ rot("z", roll) @ rot("x", math.pi)
    return _Draft(betas, matrix_to_axis_angle(orient), body_pose, source)


def _place(rng: np.random.Generator, points: np.ndarray, margin_px: float) -> tuple[Camera, np.ndarray] | None:
    """Camera and translation putting `points` (posed, zero translation) inside the image, or None to resample."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    focal = rng.uniform(*FOCAL_DIAGONAL_RANGE) * math.hypot(width, height)
    span = float(np.ptp(points[:, 1]))
    # the depth range and the wanted projected height together bound the height fraction for this focal length
    lo = max(HEIGHT_FRACTION_RANGE[0], focal * span / (DEPTH_RANGE_M[1] * height))
    hi = min(HEIGHT_FRACTION_RANGE[1], focal * span / (DEPTH_RANGE_M[0] * height))
    if lo > hi:
        return None
    frac = rng.uniform(lo, hi)
    depth = focal * span / (frac * height)
    camera = Camera(int(width), int(height), float(focal))
    centre = 0.5 * (points.min(axis=0) + points.max(axis=0))
    transl = np.array([0.0, 0.0, depth]) - centre
    uv = camera.project_np(points + transl)
    # free room for a sideways shift, in pixels, turned into metres at the body's depth
    room_lo = np.array([margin_px, margin_px]) - uv.min(axis=0)
    room_hi = np.array([width - margin_px, height - margin_px]) - uv.max(axis=0)
    if (room_lo > room_hi).any():
        return None
    shift_px = rng.uniform(0.9 * room_lo, 0.9 * room_hi)
    transl[:2] += shift_px * depth / focal
    uv = camera.project_np(points + transl)
    inside = (uv >= margin_px).all() and (uv <= np.array([width, height]) - margin_px).all()
    fraction = np.ptp(uv[:, 1]) / height
    if not inside or not HEIGHT_FRACTION_RANGE[0] <= fraction <= HEIGHT_FRACTION_RANGE[1]:
        return None
    return camera, transl


def _amputations(rng: np.random.Generator) -> dict[str, float]:
    """1-3 different limbs, above or below the joint with equal odds (so all 8 kinds are equally likely)."""
    limbs = rng.choice(len(LIMBS), rng.integers(1, 4), replace=False)
    chosen = {}
    for limb in limbs:
        kinds = [k.name for k in RESIDUALS if k.limb == LIMBS[limb]]
        chosen[kinds[rng.integers(len(kinds))]] = float(rng.uniform(*LAMBDA_RANGE))
    return {k: chosen[k] for k in RESIDUAL_KINDS if k in chosen}


# ---------------------------------------------------------------------------------------------------------------
# Detector-style hallucinations of a missing limb


def _mirror_name(name: str) -> str:
    return {"L": "R", "R": "L"}[name[0]] + name[1:]


def _rot2(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _chain(kind_name: str) -> list[int]:
    """BODY_25 ids of the missing limb's skeleton chain (anchor first), e.g. knee, ankle for transfemoral."""
    order = ("Elbow", "Wrist") if "arm" in residual_by_name(kind_name).limb else ("Knee", "Ankle")
    side = "R" if kind_name.startswith("right") else "L"
    distal = residual_by_name(kind_name).distal_body25
    return [BODY25_INDEX[side + j] for j in order if BODY25_INDEX[side + j] in distal]


def _hallucinate(rng: np.random.Generator, mode: str, kind_name: str, gt2d: np.ndarray, end2d: np.ndarray,
                 exists: np.ndarray) -> np.ndarray | None:
    """2D positions for the distal keypoints of one amputated limb, or None when the mode cannot apply."""
    kind = residual_by_name(kind_name)
    distal = list(kind.distal_body25)
    true = gt2d[distal]
    if mode == "prosthesis":
        # the missing segments continue the residual's direction (a straight pylon/prosthesis) with the normal
        # segment lengths; the prosthesis is 15-35 % of the segment shorter or longer than the lost limb (at
        # exactly the normal length a below-joint continuation would land on the true anchor). Hand/foot points
        # ride rigidly with the last chain joint.
        up = gt2d[kind.upstream_body25]
        direction = (end2d - up) / max(np.linalg.norm(end2d - up), 1e-6)
        mismatch = rng.uniform(0.15, 0.35) * rng.choice([-1.0, 1.0]) * np.linalg.norm(gt2d[kind.anchor_body25] - up)
        out, prev_true, prev_new = {}, end2d, end2d + direction * mismatch
        for i in _chain(kind_name):
            prev_new = prev_new + direction * np.linalg.norm(gt2d[i] - prev_true)
            prev_true = gt2d[i]
            out[i] = prev_new
        return np.array([out.get(i, prev_new + gt2d[i] - prev_true) for i in distal])
    if mode == "wrong_direction":  # the missing part swung about the endpoint by 40-120°
        angle = math.radians(rng.uniform(40.0, 120.0)) * rng.choice([-1.0, 1.0])
        return end2d + (true - end2d) @ _rot2(angle).T
    if mode == "squeezed":  # everything collapsed into the stump, within ~10 px of the endpoint
        offsets = rng.normal(0.0, 4.0, (len(distal), 2))
        norms = np.linalg.norm(offsets, axis=1, keepdims=True)
        return end2d + offsets * np.minimum(1.0, 10.0 / np.maximum(norms, 1e-9))
    # mirrored: the other side's keypoints reflected about the body's vertical midline in the image
    mirror = [BODY25_INDEX[_mirror_name(BODY25_NAMES[i])] for i in distal]
    if not exists[mirror].all():
        return None
    midline_x = gt2d[_TORSO, 0].mean()
    points = gt2d[mirror].copy()
    points[:, 0] = 2.0 * midline_x - points[:, 0]
    return points


# ---------------------------------------------------------------------------------------------------------------
# Observation


def _observe(rng: np.random.Generator, camera: Camera, joints: np.ndarray, gt2d: np.ndarray,
             residuals: dict[str, float], noise_px: float, coco_share: float, hallucination_share: float,
             drop_share: float) -> dict[str, Any]:
    exists = ~distal_mask(list(residuals))
    size = np.array([camera.width - 1.0, camera.height - 1.0])
    out: dict[str, Any] = {"anchor": {}, "upstream": {}, "endpoint": {}, "length": {}, "modes": {}}
    res2d, res_exists, res_obs = np.zeros((8, 2)), np.zeros(8, bool), np.zeros((8, 3))
    for name, lam in residuals.items():
        kind, k = residual_by_name(name), RESIDUAL_KINDS.index(name)
        ja, jt = joints[JOINT_INDEX[kind.anchor_joint]], joints[JOINT_INDEX[kind.upstream_joint]]
        end = ja + lam * (jt - ja)
        out["anchor"][name], out["upstream"][name], out["endpoint"][name] = ja, jt, end
        out["length"][name] = float((1.0 - lam) * np.linalg.norm(jt - ja))
        res2d[k], res_exists[k] = camera.project_np(end), True
        res_obs[k] = [*np.clip(res2d[k] + rng.normal(0.0, noise_px, 2), 0, size), rng.uniform(0.6, 1.0)]

    body25 = np.zeros((25, 3))
    n = int(exists.sum())
    body25[exists, :2] = np.clip(gt2d[exists] + rng.normal(0.0, noise_px, (n, 2)), 0, size)
    body25[exists, 2] = rng.uniform(0.6, 1.0, n)
    # drop a few, but keep the torso usable: both shoulders and at least one hip stay observed
    dropped = exists & (rng.uniform(size=25) < drop_share)
    dropped[[BODY25_INDEX["RShoulder"], BODY25_INDEX["LShoulder"]]] = False
    hips = [BODY25_INDEX["RHip"], BODY25_INDEX["LHip"]]
    if dropped[hips].all():
        dropped[hips[rng.integers(2)]] = False

    hallucinated = np.zeros(25, bool)
    for name in residuals:
        if rng.uniform() >= hallucination_share:
            continue  # the detector saw nothing there: distal points stay at confidence 0
        distal = list(residual_by_name(name).distal_body25)
        k = RESIDUAL_KINDS.index(name)
        # a mode drawn uniformly, given a few tries; then the others. A result within 20 px of the truth is no
        # hallucination (e.g. the mirrored other leg of a symmetric stance), so it is not kept.
        first = HALLUCINATION_MODES[rng.integers(len(HALLUCINATION_MODES))]
        order = [first] * 4 + [str(m) for m in rng.permutation(HALLUCINATION_MODES) if m != first]
        for mode in order:
            points = _hallucinate(rng, mode, name, gt2d, res2d[k], exists)
            if points is None:
                continue
            points = np.clip(points, 0, size)
            if (np.linalg.norm(points - gt2d[distal], axis=1) >= MIN_HALLUCINATION_OFFSET_PX).all():
                body25[distal, :2] = points
                body25[distal, 2] = rng.uniform(0.5, 0.9, len(distal))
                hallucinated[distal] = True
                out["modes"][name] = mode
                break

    available = np.ones(25, bool)
    coco = rng.uniform() < coco_share
    if coco:
        available = COCO_AVAILABLE.copy()
    body25[dropped | ~available] = 0.0
    hallucinated &= available
    dropped &= available
    out["person"] = Person(body25=body25, residual=res_obs, body25_available=available,
                           source_format="coco-ldpose" if coco else "openpose")
    out.update(res2d=res2d, res_exists=res_exists, exists=exists, hallucinated=hallucinated, dropped=dropped)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Public API


def make_dataset(n: int, seed: int = 0, model: BodyModel | None = None, coco_share: float = 0.2,
                 noise_px: float = 3.0, hallucination_share: float = 0.7, drop_share: float = 0.05,
                 margin_px: float = 10.0) -> list[SyntheticPerson]:
    """`n` synthetic people, deterministic for `seed` (person i depends only on seed and i).

    The body is posed in batches: one joints_only call for all people, then one more per round of
    rejections (a person whose keypoints cannot all fit in its image is drawn again).
    """
    model = model or load_body_model()
    rngs = [np.random.default_rng([seed, i]) for i in range(n)]
    drafts = [_draft(r, model.num_betas) for r in rngs]
    done: dict[int, tuple[_Draft, Camera, np.ndarray, np.ndarray, np.ndarray]] = {}
    pending = list(range(n))
    for _ in range(100):
        if not pending:
            break
        with torch.no_grad():
            posed = model.joints_only(
                betas=torch.tensor(np.stack([drafts[i].betas for i in pending]), dtype=model.dtype),
                global_orient=torch.tensor(np.stack([drafts[i].global_orient for i in pending]), dtype=model.dtype),
                body_pose=torch.tensor(np.stack([drafts[i].body_pose for i in pending]), dtype=model.dtype))
        joints_all, body25_all = posed.joints.double().numpy(), posed.body25.double().numpy()
        still = []
        for row, i in enumerate(pending):
            points = np.concatenate([joints_all[row, :NUM_BODY_JOINTS + 1], body25_all[row]])
            placed = _place(rngs[i], points, margin_px)
            if placed is None:
                drafts[i] = _draft(rngs[i], model.num_betas)
                still.append(i)
                continue
            camera, transl = placed
            done[i] = (drafts[i], camera, transl, joints_all[row] + transl, body25_all[row] + transl)
        pending = still
    if pending:
        raise RuntimeError(f"could not place {len(pending)} synthetic people in their images")

    people = []
    for i in range(n):
        draft, camera, transl, joints, body25_3d = done[i]
        rng = rngs[i]
        gt2d = camera.project_np(body25_3d)
        residuals = _amputations(rng)
        obs = _observe(rng, camera, joints, gt2d, residuals, noise_px, coco_share, hallucination_share, drop_share)
        params = {"betas": draft.betas, "global_orient": draft.global_orient, "body_pose": draft.body_pose,
                  "transl": transl}
        people.append(SyntheticPerson(
            keypoints=obs["person"], camera=camera, params=params, residuals=residuals,
            gt_anchor_3d=obs["anchor"], gt_upstream_3d=obs["upstream"], gt_endpoint_3d=obs["endpoint"],
            gt_residual_length_m=obs["length"], gt_joints_3d=joints, gt_body25_3d=body25_3d, gt_body25_2d=gt2d,
            gt_body25_exists=obs["exists"], gt_residual_2d=obs["res2d"], gt_residual_exists=obs["res_exists"],
            hallucinated=obs["hallucinated"], hallucination_modes=obs["modes"], dropped=obs["dropped"],
            pose_source=draft.pose_source, index=i))
    return people


def to_keypoints_file(person: SyntheticPerson, path: str | None = None) -> KeypointsFile:
    """The person's observed keypoints as a keypoints file with its image size and focal length."""
    return KeypointsFile(path=path, people=[person.keypoints], image_width=person.camera.width,
                         image_height=person.camera.height, focal_length_px=float(person.camera.focal_length))


def keypoints_filename(index: int) -> str:
    return f"person_{index:04d}.json"


def _vec(a: Any) -> Any:
    return np.asarray(a, dtype=np.float64).tolist()


def ground_truth_entry(person: SyntheticPerson) -> dict[str, Any]:
    """One person's ground truth as plain JSON (field names as in SyntheticPerson; see write_dataset)."""
    cam = person.camera
    return {
        "keypoints_file": keypoints_filename(person.index),
        "index": person.index,
        "source_format": person.keypoints.source_format,
        "image": {"width": cam.width, "height": cam.height},
        "camera": {"focal_length_px": float(cam.focal_length), "principal_point": _vec(cam.principal_point)},
        "params": {k: _vec(v) for k, v in person.params.items()},
        "residuals": [{"kind": k, "lambda": lam, "anchor_3d": _vec(person.gt_anchor_3d[k]),
                       "upstream_3d": _vec(person.gt_upstream_3d[k]), "endpoint_3d": _vec(person.gt_endpoint_3d[k]),
                       "endpoint_2d": _vec(person.gt_residual_2d[RESIDUAL_KINDS.index(k)]),
                       "residual_length_m": person.gt_residual_length_m[k],
                       "hallucination_mode": person.hallucination_modes.get(k)}
                      for k, lam in person.residuals.items()],
        "gt_joints_3d": _vec(person.gt_joints_3d),
        "gt_body25_3d": _vec(person.gt_body25_3d),
        "gt_body25_2d": _vec(person.gt_body25_2d),
        "gt_body25_exists": [bool(b) for b in person.gt_body25_exists],
        "gt_residual_2d": _vec(person.gt_residual_2d),
        "gt_residual_exists": [bool(b) for b in person.gt_residual_exists],
        "hallucinated": [bool(b) for b in person.hallucinated],
        "dropped": [bool(b) for b in person.dropped],
        "pose_source": {"keyframe_a": person.pose_source[0], "keyframe_b": person.pose_source[1],
                        "t": person.pose_source[2]},
    }


def write_dataset(folder: str | os.PathLike[str], people: list[SyntheticPerson],
                  meta: dict[str, Any] | None = None) -> Path:
    """Write person_NNNN.json (OpenPose-extended keypoints) per person and ground_truth.json; returns the folder.

    ground_truth.json = {"format": GROUND_TRUTH_FORMAT, "meta": {...generator settings...},
    "body25_names": [...], "residual_kinds": [...], "people": [ground_truth_entry(p), ...]}; per person:
    keypoints_file, index, source_format, image {width, height}, camera {focal_length_px, principal_point},
    params {betas, global_orient, body_pose, transl}, residuals [{kind, lambda, anchor_3d, upstream_3d,
    endpoint_3d, endpoint_2d, residual_length_m, hallucination_mode}], gt_joints_3d (55x3), gt_body25_3d,
    gt_body25_2d (25x2), gt_body25_exists (25), gt_residual_2d (8x2), gt_residual_exists (8), hallucinated (25),
    dropped (25), pose_source. Units: metres in the camera frame (OpenCV), pixels.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for person in people:
        name = keypoints_filename(person.index)
        write_keypoints(folder / name, to_keypoints_file(person, name))
    doc = {"format": GROUND_TRUTH_FORMAT, "meta": meta or {}, "body25_names": list(BODY25_NAMES),
           "residual_kinds": list(RESIDUAL_KINDS), "people": [ground_truth_entry(p) for p in people]}
    write_text_atomic(folder / "ground_truth.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return folder


def read_dataset(folder: str | os.PathLike[str]) -> list[SyntheticPerson]:
    """Read back what write_dataset wrote (the keypoints from their files, the rest from ground_truth.json)."""
    folder = Path(folder)
    doc = json.loads((folder / "ground_truth.json").read_text(encoding="utf-8"))
    if doc.get("format") != GROUND_TRUTH_FORMAT:
        raise ValueError(f"{folder / 'ground_truth.json'}: not a {GROUND_TRUTH_FORMAT} file")
    people = []
    for e in doc["people"]:
        kf = read_keypoints(folder / e["keypoints_file"])
        cam = Camera(e["image"]["width"], e["image"]["height"], e["camera"]["focal_length_px"],
                     tuple(e["camera"]["principal_point"]))
        res = {r["kind"]: r for r in e["residuals"]}
        arr = np.asarray
        people.append(SyntheticPerson(
            keypoints=kf.people[0], camera=cam, params={k: arr(v, dtype=np.float64) for k, v in e["params"].items()},
            residuals={k: r["lambda"] for k, r in res.items()},
            gt_anchor_3d={k: arr(r["anchor_3d"]) for k, r in res.items()},
            gt_upstream_3d={k: arr(r["upstream_3d"]) for k, r in res.items()},
            gt_endpoint_3d={k: arr(r["endpoint_3d"]) for k, r in res.items()},
            gt_residual_length_m={k: r["residual_length_m"] for k, r in res.items()},
            gt_joints_3d=arr(e["gt_joints_3d"]), gt_body25_3d=arr(e["gt_body25_3d"]),
            gt_body25_2d=arr(e["gt_body25_2d"]), gt_body25_exists=arr(e["gt_body25_exists"], dtype=bool),
            gt_residual_2d=arr(e["gt_residual_2d"]), gt_residual_exists=arr(e["gt_residual_exists"], dtype=bool),
            hallucinated=arr(e["hallucinated"], dtype=bool),
            hallucination_modes={k: r["hallucination_mode"] for k, r in res.items() if r["hallucination_mode"]},
            dropped=arr(e["dropped"], dtype=bool),
            pose_source=(e["pose_source"]["keyframe_a"], e["pose_source"]["keyframe_b"], e["pose_source"]["t"]),
            index=e["index"]))
    return people


def rotation_matrix(params: dict[str, np.ndarray]) -> np.ndarray:
    """(3, 3) global orientation of a person's params."""
    return aa_to_matrix(params["global_orient"])


def true_silhouette(model: BodyModel, person: SyntheticPerson, camera: Camera) -> np.ndarray:
    """The person's true amputated silhouette as `benchmarks/foreign.py` renders Anny's: the true body posed, each
    amputated limb's faces beyond the plane through its true endpoint (normal along the segment) removed, no cap;
    (H, W) bool through `camera` (e.g. the true camera at a quarter of the image). The input mask of the photo
    silhouette in benchmarks/run.py (never a mask of the fit)."""
    from resihmr_blender.core.raster import silhouette

    params = {k: torch.tensor(np.asarray(v, np.float64)[None], dtype=model.dtype) for k, v in person.params.items()}
    with torch.no_grad():
        verts = model.forward(**params).vertices[0].double().numpy()
    faces = np.asarray(model.faces)
    dominant = dominant_joint(model.weights.numpy())
    keep = np.ones(len(faces), bool)
    for name in person.residuals:
        below = np.isin(dominant, descendants(JOINT_INDEX[residual_by_name(name).upstream_joint], model.parents))
        axis = person.gt_upstream_3d[name] - person.gt_anchor_3d[name]
        beyond = below & ((verts - person.gt_endpoint_3d[name]) @ axis < 0.0)
        keep &= ~beyond[faces].any(axis=1)
    return silhouette(verts, faces[keep], camera)
