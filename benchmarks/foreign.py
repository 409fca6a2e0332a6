"""People the fit has never seen: a benchmark generator built on Anny used directly, and its committed cases.

Why: `benchmarks/synth.py` draws its people from the embedded body itself (its PCA shapes, its joints, poses in
the prior's comfort), so it cannot show what a different body does to the fit. Here every person is Anny
(NAVER, code Apache-2.0, MakeHuman assets CC0; `anny==0.6.2`) with its own 104-bone skeleton, its own linear
blend skinning (`skinning_method="lbs"`) and its own phenotypes, none of which the fit uses:

- **Phenotypes**: `anny.shape_distribution.SimpleShapeDistribution` (WHO-calibrated height for age) with a
  morphological age ~ U(5, 80) years: children to tall adults, its own weight/muscle/proportions spread. The
  embedded body is a 10-direction PCA of Anny *adults* (18-70) re-posed to a T-pose with merged weights.
- **Poses** (POSE_FAMILIES, equal odds) beyond the prior's comfort: standing (varied), crouching (deep knee
  and hip flexion, the torso leant 20-50°), sitting (thighs horizontal, knees ~90°), arms crossed in front of
  the chest, reaching (one or both arms raised forwards/sideways/up, the torso leant towards it). Limbs are set
  by segment directions (thigh, shank, upper arm, forearm; minimal rotation from Anny's rest A-pose, the lower
  segment turned from its parent's frame so twist follows the parent), the spine by lean/side-bend/twist.
- **Camera**: yaw within ±75°, a few degrees of pitch/roll; image 1080x1920, 1920x1080 or 1000x1000; focal
  length ~ U(800, 4000) px; the body at 40-90 % of the image height; the keypoints file gives the focal length
  for half of the people (FOCAL_GIVEN_SHARE) and withholds it for the others, whose fit then uses the
  add-on's own guess (`Camera.for_image`).
- **Seed**: HELD_OUT_SEED, used for nothing else (no setting of the fit or RAFO was tuned on these people).

Skeleton mapping to BODY_25 (both skeletons by anatomy; the fit's side is `core.body_model.BODY25_SOURCES`):

    BODY_25          Anny (this module)                      fit's embedded body
    Neck             head of bone neck01 (base of the neck)  SMPL-X neck joint
    MidHip           head of bone root (pelvis centre)       SMPL-X pelvis joint
    R/LShoulder      head of upperarm01.R/L (glenohumeral)   right/left_shoulder
    R/LElbow         head of lowerarm01.R/L                  right/left_elbow
    R/LWrist         head of wrist.R/L                       right/left_wrist
    R/LHip           head of upperleg01.R/L (hip joint)      right/left_hip
    R/LKnee          head of lowerleg01.R/L                  right/left_knee
    R/LAnkle         head of foot.R/L                        right/left_ankle
    Nose, R/LEye, R/LEar, R/LBigToe, R/LSmallToe, R/LHeel: Anny mesh vertices picked by anatomy on the rest
                     mesh (`tools/build_default_body.pick_surface_points`: nose tip, front of each eyeball,
                     outermost head vertex at eye height, tips of the first/fifth toe, back of the heel)
                     -> the SMPL-X surface points of the same names.

Neck and MidHip are the neck-base and pelvis joints on both sides, not OpenPose's shoulder and hip midpoints:
on Anny those midpoints lie ~10 cm and ~2 cm lower (measured on the rest meshes when this was written), a
difference of definition that would otherwise swamp the benchmark's joint errors.

Residual limbs, noise, dropouts, hallucinations: 1-3 amputated limbs per person with λ ~ U(0.1, 0.9) on the
*Anny* segment (anchor and upstream joints from the table above), the true endpoint Ja + λ (Jt − Ja) projected;
keypoint noise, dropped keypoints, hallucinated distal keypoints (4 modes) and the COCO share exactly as
synth.py (its `_amputations` and `_observe`). The ground-truth silhouette is Anny's own posed mesh with each
amputated limb's faces beyond the plane through the endpoint (normal along the segment) removed, rendered by
`core/raster.py` at MASK_SCALE of the image size.

Anny is slow to load and a heavy dependency, so the cases are generated once (`tools/make_foreign_cases.py`)
and committed as `benchmarks/data/foreign_cases.npz` (licence in benchmarks/data/NOTICE.md); `load_cases` reads
them with numpy alone. The file holds, for N people (arrays over people first; units px, metres in the camera
frame, OpenCV axes): meta (JSON string: format, seed, settings, Anny version, this mapping), image_wh (N, 2),
focal_px (N,), focal_given (N,), keypoints (N, 25, 3) and residual_obs (N, 8, 3) as a detector + annotator
would give them, available (N, 25), coco (N,), gt_body25_2d (N, 25, 2), gt_body25_3d (N, 25, 3),
gt_body25_exists (N, 25), gt_residual_exists (N, 8), gt_lambda (N, 8), gt_residual_2d (N, 8, 2),
gt_anchor_3d / gt_upstream_3d / gt_endpoint_3d (N, 8, 3), gt_residual_length_m (N, 8), hallucinated (N, 25),
dropped (N, 25), family (N,) index into POSE_FAMILIES, phenotype (N, 6) in PHENOTYPE_LABELS order, height_m
(N,), mask_hw (N, 2), mask_bits (packed bits of all masks, row-major, one after another) and mask_offsets (N+1,).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resihmr_blender.core.camera import Camera
from resihmr_blender.core.keypoints import Person
from resihmr_blender.core.layouts import BODY25_INDEX, BODY25_NAMES
from resihmr_blender.core.residuals import RESIDUAL_KINDS, residual_by_name
from resihmr_blender.core.rotations import rot, rotation_between

FORMAT = "resihmr-foreign-cases/1"
DEFAULT_CASES = Path(__file__).with_name("data") / "foreign_cases.npz"
HELD_OUT_SEED = 151126  # used for these cases only; never for tuning
ANNY_VERSION = "0.6.2"
AGE_RANGE = (5.0, 80.0)  # morphological age, years
POSE_FAMILIES: tuple[str, ...] = ("standing", "crouching", "sitting", "arms_crossed", "reaching")
IMAGE_SIZES: tuple[tuple[int, int], ...] = ((1080, 1920), (1920, 1080), (1000, 1000))
FOCAL_RANGE_PX = (800.0, 4000.0)
FOCAL_GIVEN_SHARE = 0.5
DEPTH_RANGE_M = (1.0, 20.0)
HEIGHT_FRACTION_RANGE = (0.4, 0.9)
MAX_YAW = math.radians(75.0)
TILT_SIGMA, MAX_TILT = math.radians(3.0), math.radians(8.0)
MASK_SCALE = 0.25
PHENOTYPE_LABELS: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")

# BODY_25 name -> Anny bone whose head is the keypoint (see the table in the docstring)
BONE_BODY25: dict[str, str] = {"Neck": "neck01", "MidHip": "root"}
for _s, _side in (("R", "R"), ("L", "L")):
    BONE_BODY25.update({f"{_s}Shoulder": f"upperarm01.{_side}", f"{_s}Elbow": f"lowerarm01.{_side}",
                        f"{_s}Wrist": f"wrist.{_side}", f"{_s}Hip": f"upperleg01.{_side}",
                        f"{_s}Knee": f"lowerleg01.{_side}", f"{_s}Ankle": f"foot.{_side}"})
# BODY_25 name -> surface point name of tools/build_default_body.pick_surface_points
VERTEX_BODY25: dict[str, str] = {
    "Nose": "nose", "REye": "right_eye", "LEye": "left_eye", "REar": "right_ear", "LEar": "left_ear",
    "LBigToe": "left_big_toe", "LSmallToe": "left_small_toe", "LHeel": "left_heel",
    "RBigToe": "right_big_toe", "RSmallToe": "right_small_toe", "RHeel": "right_heel",
}
# SMPL-X joint name (residual kinds' anchor/upstream) -> BODY_25 name
JOINT_BODY25: dict[str, str] = {f"{side}_{part}": f"{side[0].upper()}{part.capitalize()}"
                                for side in ("right", "left")
                                for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")}


@dataclass
class ForeignCase:
    """One foreign person as run.py scores it (the fields synth.SyntheticPerson has under the same names)."""

    keypoints: Person
    camera: Camera  # the true camera
    fit_camera: Camera  # what the fit is given: the true one, or the add-on's guess when the focal is withheld
    focal_given: bool
    residuals: dict[str, float]  # kind -> true λ, in RESIDUAL_KINDS order
    gt_residual_length_m: dict[str, float]
    gt_anchor_3d: dict[str, np.ndarray]
    gt_upstream_3d: dict[str, np.ndarray]
    gt_body25_2d: np.ndarray
    gt_body25_3d: np.ndarray
    gt_body25_exists: np.ndarray
    gt_residual_2d: np.ndarray
    gt_residual_exists: np.ndarray
    hallucinated: np.ndarray
    dropped: np.ndarray
    family: str
    phenotype: dict[str, float]
    height_m: float
    mask: np.ndarray  # (h, w) bool at mask_scale × the image: the amputated Anny body
    mask_scale: float
    index: int


# ---------------------------------------------------------------------------------------------------------------
# Reading the committed cases (numpy only)


def load_cases(path: str | os.PathLike[str] = DEFAULT_CASES) -> list[ForeignCase]:
    """The cases of a file written by write_cases; a wrong file is refused by name."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        d = {k: data[k] for k in data.files}
    meta = json.loads(str(d["meta"]))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: meta.format is {meta.get('format')!r}, not {FORMAT!r}")
    n = len(d["focal_px"])
    offsets = d["mask_offsets"]
    cases = []
    for i in range(n):
        w, h = (int(v) for v in d["image_wh"][i])
        camera = Camera(w, h, float(d["focal_px"][i]))
        given = bool(d["focal_given"][i])
        fit_camera = camera if given else Camera.for_image(w, h)
        present = [k for j, k in enumerate(RESIDUAL_KINDS) if d["gt_residual_exists"][i, j]]
        idx = {k: RESIDUAL_KINDS.index(k) for k in present}
        mh, mw = (int(v) for v in d["mask_hw"][i])
        bits = d["mask_bits"][offsets[i]:offsets[i + 1]]
        mask = np.unpackbits(bits, count=mh * mw).astype(bool).reshape(mh, mw)
        coco = bool(d["coco"][i])
        person = Person(body25=d["keypoints"][i].astype(np.float64), residual=d["residual_obs"][i].astype(np.float64),
                        body25_available=d["available"][i], source_format="coco-ldpose" if coco else "openpose")
        f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
        cases.append(ForeignCase(
            keypoints=person, camera=camera, fit_camera=fit_camera, focal_given=given,
            residuals={k: float(d["gt_lambda"][i, j]) for k, j in idx.items()},
            gt_residual_length_m={k: float(d["gt_residual_length_m"][i, j]) for k, j in idx.items()},
            gt_anchor_3d={k: f64(d["gt_anchor_3d"][i, j]) for k, j in idx.items()},
            gt_upstream_3d={k: f64(d["gt_upstream_3d"][i, j]) for k, j in idx.items()},
            gt_body25_2d=f64(d["gt_body25_2d"][i]), gt_body25_3d=f64(d["gt_body25_3d"][i]),
            gt_body25_exists=d["gt_body25_exists"][i].astype(bool), gt_residual_2d=f64(d["gt_residual_2d"][i]),
            gt_residual_exists=d["gt_residual_exists"][i].astype(bool), hallucinated=d["hallucinated"][i].astype(bool),
            dropped=d["dropped"][i].astype(bool), family=POSE_FAMILIES[int(d["family"][i])],
            phenotype=dict(zip(PHENOTYPE_LABELS, (float(v) for v in d["phenotype"][i]))),
            height_m=float(d["height_m"][i]), mask=mask, mask_scale=float(meta["mask_scale"]), index=i))
    return cases


def read_meta(path: str | os.PathLike[str] = DEFAULT_CASES) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["meta"]))


# ---------------------------------------------------------------------------------------------------------------
# Poses: segment directions in Anny's body frame (x = subject's left, y = backwards, z = up)


def _dir(forward: float, left: float, up: float) -> np.ndarray:
    v = np.array([left, -forward, up], dtype=np.float64)
    return v / np.linalg.norm(v)


def sample_pose(rng: np.random.Generator, family: str) -> dict[str, Any]:
    """Targets for one pose: spine angles (rad) and, per side s (+1 left, −1 right), segment directions.

    Legs are given in the pelvis frame, arms in the chest frame (so "arms crossed" stays in front of a
    leaning chest). Everything is drawn from wide ranges on purpose: these people are not the prior's."""
    u = rng.uniform
    pose: dict[str, Any] = {"lean": u(-0.1, 0.25), "side": u(-0.1, 0.1), "twist": u(-0.3, 0.3),
                            "head": (u(-0.3, 0.3), u(-0.4, 0.4)), "ankle": u(-0.2, 0.2, 2)}
    for side, s in (("L", 1.0), ("R", -1.0)):
        # standing defaults, overridden per family below
        thigh_forward, upper_forward = u(-0.25, 0.35), u(-0.3, 0.6)
        thigh = _dir(thigh_forward, s * u(0.0, 0.25), -1.0)
        shank = _dir(thigh_forward - u(0.0, 0.5), s * u(0.0, 0.15), -1.0)  # the knee bends backwards only
        upper = _dir(upper_forward, s * u(0.05, 0.6), -1.0)
        fore = _dir(upper_forward + u(0.0, 1.2), s * u(-0.3, 0.4), u(-1.0, 0.2))  # the elbow bends forwards
        if family == "crouching":
            thigh = _dir(1.0, s * u(0.2, 0.6), u(-0.5, 0.15))
            shank = _dir(u(-0.7, -0.1), s * u(0.0, 0.2), -1.0)
            upper = _dir(1.0, s * u(0.0, 0.4), u(-1.2, 0.0))
            fore = _dir(1.0, s * u(-0.4, 0.2), u(-0.8, 0.3))
        elif family == "sitting":
            thigh = _dir(1.0, s * u(0.0, 0.35), u(-0.25, 0.2))
            shank = _dir(u(-0.5, 0.5), s * u(0.0, 0.2), -1.0)
            upper = _dir(u(0.1, 0.6), s * u(0.0, 0.3), -1.0)
            fore = _dir(1.0, -s * u(0.0, 0.5), u(-0.6, 0.1))
        elif family == "arms_crossed":
            upper = _dir(u(0.2, 0.6), s * u(0.0, 0.25), -1.0)
            fore = _dir(u(0.1, 0.5), -s * 1.0, u(0.0, 0.5))
        elif family == "reaching" and (side == pose.setdefault("reach_side", "LR"[rng.integers(2)])
                                       or u() < 0.35):
            elevation = u(math.radians(45.0), math.radians(165.0))  # from hanging down
            azimuth = u(-0.3, 1.3)  # 0 = forwards, π/2 = sideways outwards
            upper = _dir(math.sin(elevation) * math.cos(azimuth), s * math.sin(elevation) * math.sin(azimuth),
                         -math.cos(elevation))
            fore = upper + rng.normal(0.0, 0.25, 3)
            fore /= np.linalg.norm(fore)
        pose[f"thigh.{side}"], pose[f"shank.{side}"] = thigh, shank
        pose[f"upper.{side}"], pose[f"fore.{side}"] = upper, fore
    if family == "crouching":
        pose["lean"] = u(0.35, 0.9)
    elif family == "sitting":
        pose["lean"] = u(-0.25, 0.25)
    elif family == "reaching":
        pose["lean"] = u(0.0, 0.5)
    return pose


def bone_rotations(labels: list[str], parents: list[int], rest_heads: np.ndarray, pose: dict[str, Any]
                   ) -> np.ndarray:
    """(B, 3, 3) world rotation of every bone relative to the rest pose (a bone not set follows its parent)."""
    index = {label: i for i, label in enumerate(labels)}
    g = np.tile(np.eye(3), (len(labels), 1, 1))

    def seg(a: str, b: str) -> np.ndarray:
        return rest_heads[index[b]] - rest_heads[index[a]]

    spine = rot("z", pose["twist"]) @ rot("y", pose["side"]) @ rot("x", pose["lean"])
    half = rot("z", 0.5 * pose["twist"]) @ rot("y", 0.5 * pose["side"]) @ rot("x", 0.5 * pose["lean"])
    chest = None
    for i, label in enumerate(labels):
        p = parents[i]
        g[i] = g[p] if p >= 0 else np.eye(3)
        if label == "spine05":
            g[i] = half
        elif label == "spine03":
            g[i] = spine
        elif label == "neck02":
            g[i] = g[p] @ rot("z", pose["head"][1]) @ rot("x", pose["head"][0])
        elif label.startswith("upperleg01."):
            side = label[-1]
            g[i] = rotation_between(seg(label, f"lowerleg01.{side}"), pose[f"thigh.{side}"])
        elif label.startswith("lowerleg01."):
            side = label[-1]
            g[i] = rotation_between(g[p] @ seg(label, f"foot.{side}"), pose[f"shank.{side}"]) @ g[p]
        elif label.startswith("foot."):
            g[i] = rot("x", pose["ankle"][0 if label.endswith("L") else 1])  # flat on the ground, give or take
        elif label.startswith("upperarm01."):
            side = label[-1]
            chest = g[index["spine01"]]
            g[i] = rotation_between(g[p] @ seg(label, f"lowerarm01.{side}"), chest @ pose[f"upper.{side}"]) @ g[p]
        elif label.startswith("lowerarm01."):
            side = label[-1]
            chest = g[index["spine01"]]
            g[i] = rotation_between(g[p] @ seg(label, f"wrist.{side}"), chest @ pose[f"fore.{side}"]) @ g[p]
    return g


# ---------------------------------------------------------------------------------------------------------------
# Generating (needs Anny: tools/make_foreign_cases.py)


ANNY_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # z up/facing −y -> y down/facing −z


def _place(rng: np.random.Generator, points: np.ndarray, margin_px: float = 10.0
           ) -> tuple[Camera, np.ndarray] | None:
    """Camera and translation putting `points` (camera frame, zero translation) inside the image, or None."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    focal = rng.uniform(*FOCAL_RANGE_PX)
    span = float(np.ptp(points[:, 1]))
    lo = max(HEIGHT_FRACTION_RANGE[0], focal * span / (DEPTH_RANGE_M[1] * height))
    hi = min(HEIGHT_FRACTION_RANGE[1], focal * span / (DEPTH_RANGE_M[0] * height))
    if lo > hi:
        return None
    depth = focal * span / (rng.uniform(lo, hi) * height)
    camera = Camera(int(width), int(height), float(focal))
    centre = 0.5 * (points.min(axis=0) + points.max(axis=0))
    transl = np.array([0.0, 0.0, depth]) - centre
    if (points[:, 2] + transl[2] < 0.3).any():  # nothing closer than 30 cm to the lens
        return None
    uv = camera.project_np(points + transl)
    room_lo = np.array([margin_px, margin_px]) - uv.min(axis=0)
    room_hi = np.array([width - margin_px, height - margin_px]) - uv.max(axis=0)
    if (room_lo > room_hi).any():
        return None
    transl[:2] += rng.uniform(0.9 * room_lo, 0.9 * room_hi) * depth / focal
    uv = camera.project_np(points + transl)
    inside = (uv >= margin_px).all() and (uv <= np.array([width, height]) - margin_px).all()
    if not inside or not HEIGHT_FRACTION_RANGE[0] <= np.ptp(uv[:, 1]) / height <= HEIGHT_FRACTION_RANGE[1]:
        return None
    return camera, transl


def _limb_bones(labels: list[str], parents: list[int], top: str) -> np.ndarray:
    """Bool per bone: `top` and everything below it."""
    index = {label: i for i, label in enumerate(labels)}
    inside = np.zeros(len(labels), bool)
    for i in range(len(labels)):
        j = i
        while j >= 0 and j != index[top]:
            j = parents[j]
        inside[i] = j >= 0
    return inside


def generate(n: int, seed: int = HELD_OUT_SEED, noise_px: float = 3.0, coco_share: float = 0.15,
             hallucination_share: float = 0.7, drop_share: float = 0.05, log=print) -> dict[str, np.ndarray]:
    """`n` foreign people as the arrays write_cases stores (person i depends on (seed, i) and Anny only)."""
    import anny
    import torch
    from anny.shape_distribution import SimpleShapeDistribution

    from benchmarks import synth
    from resihmr_blender.core.body_model import JOINT_INDEX
    from resihmr_blender.core.raster import silhouette
    from tools.build_default_body import anny_to_smplx_frame, connected_components, pick_surface_points

    model = anny.Anny(rig="anny", skinning_method="lbs")
    labels, parents = list(model.bone_labels), [int(p) for p in model.bone_parents]
    index = {label: i for i, label in enumerate(labels)}
    faces = model.faces.numpy().astype(np.int64)
    dense = model.dense_vertex_bone_weights.numpy()
    dominant_bone = dense.argmax(axis=1)

    # surface keypoints picked once on the mean phenotype's rest mesh (vertex ids are the same for everyone)
    with torch.no_grad():
        mean_rest = model(phenotype_kwargs={k: 0.5 for k in PHENOTYPE_LABELS})["rest_vertices"][0].numpy()
    component = connected_components(faces, len(mean_rest))
    picks = pick_surface_points(anny_to_smplx_frame(mean_rest), [labels[b] for b in dominant_bone], component)
    bone_ids = {name: index[bone] for name, bone in BONE_BODY25.items()}
    vertex_ids = {name: picks[point] for name, point in VERTEX_BODY25.items()}

    torch.manual_seed(seed)
    ages = torch.distributions.Uniform(torch.tensor(AGE_RANGE[0], dtype=model.dtype),
                                       torch.tensor(AGE_RANGE[1], dtype=model.dtype))
    _, phen = SimpleShapeDistribution(model, morphological_age_distribution=ages).sample(n)
    phenotype = np.stack([phen[k].numpy() for k in PHENOTYPE_LABELS], 1)

    rngs = [np.random.default_rng([seed, i]) for i in range(n)]
    families = [int(r.integers(len(POSE_FAMILIES))) for r in rngs]
    poses = [sample_pose(r, POSE_FAMILIES[f]) for r, f in zip(rngs, families)]
    out: dict[str, list] = {}
    chunk = 16
    for start in range(0, n, chunk):
        ids = list(range(start, min(n, start + chunk)))
        kw = {k: torch.as_tensor(phenotype[ids, j], dtype=model.dtype) for j, k in enumerate(PHENOTYPE_LABELS)}
        with torch.no_grad():
            rest = model(phenotype_kwargs=kw)
            rest_poses = rest["rest_bone_poses"].numpy()
            deltas = np.tile(np.eye(4), (len(ids), len(labels), 1, 1))
            for row, i in enumerate(ids):
                g = bone_rotations(labels, parents, rest_poses[row, :, :3, 3], poses[i])
                deltas[row, :, :3, :3] = g @ rest_poses[row, :, :3, :3]  # world-orient: the bone's world axes
                deltas[row, 0, :3, 3] = rest_poses[row, 0, :3, 3]
            posed = model(pose_parameters=torch.as_tensor(deltas, dtype=model.dtype), phenotype_kwargs=kw,
                          pose_parameterization="world-orient")
        verts_all, heads_all = posed["vertices"].numpy(), posed["bone_poses"][..., :3, 3].numpy()
        rest_verts = rest["rest_vertices"].numpy()
        for row, i in enumerate(ids):
            rng = rngs[i]
            height = float(np.ptp(rest_verts[row, :, 2]))
            yaw = rng.uniform(-MAX_YAW, MAX_YAW)
            pitch, roll = np.clip(rng.normal(0.0, TILT_SIGMA, 2), -MAX_TILT, MAX_TILT)
            turn = rot("y", yaw) @ rot("x", pitch) @ rot("z", roll) @ ANNY_TO_CAMERA
            verts = verts_all[row] @ turn.T
            heads = heads_all[row] @ turn.T
            body25 = np.zeros((25, 3))
            for name, b in bone_ids.items():
                body25[BODY25_INDEX[name]] = heads[b]
            for name, v in vertex_ids.items():
                body25[BODY25_INDEX[name]] = verts[v]
            for _ in range(200):
                placed = _place(rng, body25)
                if placed is not None:
                    break
            else:
                raise RuntimeError(f"foreign person {i}: no camera puts its keypoints inside an image")
            camera, transl = placed
            verts, body25 = verts + transl, body25 + transl
            joints = np.zeros((55, 3))  # the fit's joint slots the residual kinds name, filled from Anny
            for joint, name in JOINT_BODY25.items():
                joints[JOINT_INDEX[joint]] = body25[BODY25_INDEX[name]]
            gt2d = camera.project_np(body25)
            residuals = synth._amputations(rng)
            obs = synth._observe(rng, camera, joints, gt2d, residuals, noise_px, coco_share, hallucination_share,
                                 drop_share)
            focal_given = bool(rng.uniform() < FOCAL_GIVEN_SHARE)
            # the amputated body's silhouette: each limb's faces beyond the plane through its endpoint removed
            keep = np.ones(len(faces), bool)
            for kind_name in residuals:
                kind = residual_by_name(kind_name)
                top = BONE_BODY25[JOINT_BODY25[kind.upstream_joint]]
                limb = _limb_bones(labels, parents, top)[dominant_bone]
                axis = obs["upstream"][kind_name] - obs["anchor"][kind_name]
                beyond = limb & ((verts - obs["endpoint"][kind_name]) @ axis < 0.0)
                keep &= ~beyond[faces].any(axis=1)
            small = camera.scaled(MASK_SCALE)
            mask = silhouette(verts, faces[keep], small)
            person = obs["person"]
            k8 = lambda key: np.stack([obs[key].get(k, np.zeros(3)) for k in RESIDUAL_KINDS])  # noqa: E731
            record = {
                "image_wh": [camera.width, camera.height], "focal_px": camera.focal_length,
                "focal_given": focal_given, "keypoints": person.body25, "residual_obs": person.residual,
                "available": person.body25_available, "coco": person.source_format != "openpose",
                "gt_body25_2d": gt2d, "gt_body25_3d": body25, "gt_body25_exists": obs["exists"],
                "gt_residual_exists": obs["res_exists"],
                "gt_lambda": [residuals.get(k, 0.0) for k in RESIDUAL_KINDS], "gt_residual_2d": obs["res2d"],
                "gt_anchor_3d": k8("anchor"), "gt_upstream_3d": k8("upstream"), "gt_endpoint_3d": k8("endpoint"),
                "gt_residual_length_m": [obs["length"].get(k, 0.0) for k in RESIDUAL_KINDS],
                "hallucinated": obs["hallucinated"], "dropped": obs["dropped"], "family": families[i],
                "phenotype": phenotype[i], "height_m": height, "mask_hw": mask.shape,
                "mask": mask,
            }
            for key, value in record.items():
                out.setdefault(key, []).append(value)
        log(f"foreign people {ids[-1] + 1}/{n}")
    meta = {"format": FORMAT, "generator": "benchmarks/foreign.py via tools/make_foreign_cases.py",
            "seed": seed, "n": n, "anny_version": anny.__version__, "rig": "anny", "skinning": "lbs",
            "age_range_years": AGE_RANGE, "pose_families": POSE_FAMILIES, "image_sizes": IMAGE_SIZES,
            "focal_range_px": FOCAL_RANGE_PX, "focal_given_share": FOCAL_GIVEN_SHARE, "max_yaw_deg": 75.0,
            "noise_px": noise_px, "coco_share": coco_share, "hallucination_share": hallucination_share,
            "drop_share": drop_share, "mask_scale": MASK_SCALE, "bone_body25": BONE_BODY25,
            "vertex_body25": {k: [VERTEX_BODY25[k], int(v)] for k, v in vertex_ids.items()},
            "body25_names": list(BODY25_NAMES), "residual_kinds": list(RESIDUAL_KINDS),
            "phenotype_labels": PHENOTYPE_LABELS,
            "licence": "Anny (NAVER) code Apache-2.0, MakeHuman-derived assets CC0; see benchmarks/data/NOTICE.md"}
    masks = out.pop("mask")
    bits = [np.packbits(m.ravel()) for m in masks]
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["mask_bits"] = np.concatenate(bits)
    arrays["mask_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in bits])]).astype(np.int64)
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def write_cases(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Compact storage: float32 coordinates (sub-millipixel at these image sizes), bools and small ints."""
    small: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        elif value.dtype.kind == "i" and key not in ("mask_offsets",):
            value = value.astype(np.int32)
        small[key] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **small)
    os.replace(tmp, path)
    return path
