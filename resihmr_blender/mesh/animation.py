"""Play an SMPL-X pose sequence on the avatar as a Blender action (AMASS's `.npz` layout).

A motion file holds `poses` (N x 165 SMPL-X: root 3, body 63, jaw 3, eyes 6, hands 90; or N x 156 SMPL-H: root,
body, hands; or N x 66 body only) and `trans` (N x 3), optionally `mocap_frame_rate` (or `mocap_framerate`).
AMASS's world is z-up like Blender's, so its root orientation and translation apply as they are: a pose bone's
local rotation equals the SMPL-X local rotation (bone frames = SMPL-X frame, see frames.py), the root's is
C^T R_root and its location C^T (J0 + trans) - J0.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import torch

from ..core.body_model import JOINT_NAMES
from ..core.rotations import axis_angle_to_matrix
from .frames import C, blender_to_body

POSE_LAYOUTS = {165: "smplx", 156: "smplh", 66: "body"}


class MotionError(ValueError):
    pass


def read_motion(path: str | Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(poses as (N, 55, 3) axis-angle, trans (N, 3), frame rate). Errors name the file and field."""
    path = str(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MotionError(f"{path}: not a readable .npz motion file ({exc})") from exc
    with data:
        if "poses" not in data or "trans" not in data:
            raise MotionError(f"{path}: needs fields 'poses' and 'trans' (AMASS layout), found {sorted(data.files)}")
        poses, trans = np.asarray(data["poses"], float), np.asarray(data["trans"], float)
        rate_key = next((k for k in ("mocap_frame_rate", "mocap_framerate") if k in data.files), None)
        rate = float(data[rate_key]) if rate_key else 30.0
    if poses.ndim != 2 or poses.shape[1] not in POSE_LAYOUTS:
        raise MotionError(f"{path}: field 'poses' has shape {poses.shape}, expected (N, 165), (N, 156) or (N, 66)")
    if trans.shape != (poses.shape[0], 3):
        raise MotionError(f"{path}: field 'trans' has shape {trans.shape}, expected ({poses.shape[0]}, 3)")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all()):
        raise MotionError(f"{path}: 'poses' or 'trans' contains NaN or infinite values")
    full = np.zeros((poses.shape[0], 55, 3))
    layout = POSE_LAYOUTS[poses.shape[1]]
    full[:, :22] = poses[:, :66].reshape(-1, 22, 3)
    if layout == "smplx":
        full[:, 22:25] = poses[:, 66:75].reshape(-1, 3, 3)
        full[:, 25:55] = poses[:, 75:165].reshape(-1, 30, 3)
    elif layout == "smplh":
        full[:, 25:55] = poses[:, 66:156].reshape(-1, 30, 3)
    return full, trans, rate


def apply_motion(arm_obj, poses: np.ndarray, trans: np.ndarray, frame_rate: float = 30.0,
                 name: str = "ResiHMR motion", start_frame: int = 0):
    """Key every bone on every frame (from `start_frame`, 0: keys from time 0 in every format) into a new action
    on the armature; bones the rig lacks are skipped."""
    rotations = axis_angle_to_matrix(torch.tensor(poses)).numpy()  # (N, 55, 3, 3)
    rotations[:, 0] = np.einsum("ab,nbc->nac", C.T, rotations[:, 0])
    pelvis = arm_obj.data.bones.get(JOINT_NAMES[0])
    if pelvis is None:
        raise MotionError(f"{arm_obj.name}: the rig has no '{JOINT_NAMES[0]}' bone")
    j0 = blender_to_body(np.array(pelvis.head_local))
    locations = (np.asarray(trans) + j0) @ C - j0  # C^T (J0 + trans) - J0, as rows
    action = bpy.data.actions.new(name)
    if arm_obj.animation_data is None:
        arm_obj.animation_data_create()
    arm_obj.animation_data.action = action
    scene = bpy.context.scene
    scene.render.fps = max(1, round(frame_rate))
    bones = [(j, arm_obj.pose.bones.get(n)) for j, n in enumerate(JOINT_NAMES)]
    bones = [(j, b) for j, b in bones if b is not None]
    for b in (b for _, b in bones):
        b.rotation_mode = "QUATERNION"
    from mathutils import Matrix

    for f in range(len(poses)):
        frame = start_frame + f
        for j, bone in bones:
            bone.rotation_quaternion = Matrix(rotations[f, j].tolist()).to_quaternion()
            bone.keyframe_insert("rotation_quaternion", frame=frame, group=bone.name)
        root = arm_obj.pose.bones[JOINT_NAMES[0]]
        root.location = locations[f].tolist()
        root.keyframe_insert("location", frame=frame, group=root.name)
    scene.frame_start, scene.frame_end = start_frame, start_frame + len(poses) - 1
    return action
