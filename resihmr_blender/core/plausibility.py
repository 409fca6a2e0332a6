"""Is a fitted person humanly possible and placed where the photo can show them? Flags, not refusals: an
implausible fit is still written, marked `"plausible": false` with the reasons, so nobody takes it as good.

Ranges are deliberately wide (children to tall adults, crouching people); they catch unit mix-ups (normalised
coordinates, a wrong image size), giants in front of the camera and bodies kilometres away.
"""
from __future__ import annotations

import numpy as np
import torch

from .body_model import JOINT_INDEX, BodyModel

HEIGHT_M = (0.9, 2.3)
DISTANCE_M = (0.3, 30.0)  # pelvis depth in front of the camera
# (name, from joint, to joint, (min m, max m)) — adult ranges widened by ~30 % both ways
BONES = (("upper arm", "right_shoulder", "right_elbow", (0.15, 0.45)),
         ("upper arm", "left_shoulder", "left_elbow", (0.15, 0.45)),
         ("forearm", "right_elbow", "right_wrist", (0.13, 0.40)),
         ("forearm", "left_elbow", "left_wrist", (0.13, 0.40)),
         ("thigh", "right_hip", "right_knee", (0.25, 0.65)), ("thigh", "left_hip", "left_knee", (0.25, 0.65)),
         ("shank", "right_knee", "right_ankle", (0.22, 0.60)), ("shank", "left_knee", "left_ankle", (0.22, 0.60)))
MAX_FIT_ERROR_TORSO = 0.25  # mean reprojection error above a quarter of the 2D torso length: not this body


def body_height(model: BodyModel, betas: np.ndarray) -> float:
    """Standing height of the rest (T-pose) mesh with these shape coefficients, in metres.

    Only the vertical coordinate of the shaped template is needed (the rest pose moves no vertex off the
    head-to-feet span), so no skinning: ~100x cheaper than a full forward pass, which mattered per person in batch.
    """
    betas = torch.as_tensor(np.asarray(betas, dtype=np.float64)[: model.num_betas], dtype=model.dtype)
    with torch.no_grad():
        y = model.v_template[:, 1] + model.shapedirs[:, 1, : betas.shape[0]] @ betas
    return float(y.max() - y.min())


def check(model: BodyModel, betas: np.ndarray, joints_3d: np.ndarray, fit_error_px: float,
          torso_2d_px: float | None) -> dict:
    """{"plausible": bool, "problems": [...], "height_m", "distance_m"} for one fitted person."""
    problems = []
    height = body_height(model, betas)
    if not HEIGHT_M[0] <= height <= HEIGHT_M[1]:
        problems.append(f"body height {height:.2f} m outside {HEIGHT_M[0]}-{HEIGHT_M[1]} m")
    distance = float(joints_3d[JOINT_INDEX["pelvis"], 2])
    if not DISTANCE_M[0] <= distance <= DISTANCE_M[1]:
        problems.append(f"{distance:.2f} m from the camera, outside {DISTANCE_M[0]}-{DISTANCE_M[1]} m "
                        "(image size or focal length wrong? normalised coordinates?)")
    for name, a, b, (lo, hi) in BONES:
        length = float(np.linalg.norm(joints_3d[JOINT_INDEX[a]] - joints_3d[JOINT_INDEX[b]]))
        if not lo <= length <= hi:
            problems.append(f"{a.split('_')[0]} {name} {length:.2f} m outside {lo}-{hi} m")
    if torso_2d_px and fit_error_px > MAX_FIT_ERROR_TORSO * torso_2d_px:
        problems.append(f"fit error {fit_error_px:.1f} px is more than {MAX_FIT_ERROR_TORSO:.0%} of the "
                        f"{torso_2d_px:.0f} px torso: the body does not explain the keypoints")
    return {"plausible": not problems, "problems": problems, "height_m": round(height, 4),
            "distance_m": round(distance, 4)}
