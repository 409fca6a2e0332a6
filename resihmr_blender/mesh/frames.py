"""Coordinate frames shared by the Blender side (no bpy needed here, so tests can use them anywhere).

- SMPL-X body frame: y up, facing +z, subject's left +x (the rest mesh and rest joints).
- Camera frame of the fit (OpenCV): x right, y down, z forward.
- Blender world: z up. The rest mesh is stored as C·x (C: SMPL-X y-up -> Blender z-up), so the avatar stands
  upright facing -y (towards Blender's front view). The photo's camera sits at the world origin looking along
  +y with +z up, so a point of the fit's camera frame maps to the world by M: (X, Y, Z) -> (X, Z, -Y).
Every bone points along +z with roll 0, which makes its rest frame exactly C: a pose bone's local rotation is
then the SMPL-X local rotation itself, with no per-bone conversion.
"""
from __future__ import annotations

import numpy as np

# SMPL-X body frame -> Blender (x, y, z) -> (x, -z, y)
C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# fit camera frame (OpenCV) -> Blender world (X, Y, Z) -> (X, Z, -Y)
M = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
# C^T M: the half turn about x that turns a camera-frame global orientation into the root bone's rotation
ROOT_FROM_CAMERA = C.T @ M


def body_to_blender(points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ C.T


def blender_to_body(points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ C


def camera_to_world(points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ M.T


def world_to_camera(points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ M
