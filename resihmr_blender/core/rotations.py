"""The one rotations module: axis-angle, matrices, quaternions (w, x, y, z), in torch for the fit's autograd and
in numpy everywhere else. Axis-angle is SMPL-X's pose parameterisation (a rotation vector: axis times angle).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, batched over leading dims: (..., 3) -> (..., 3, 3). Smooth at zero (torch)."""
    angle_sq = (rotvec * rotvec).sum(-1, keepdim=True)
    angle = torch.sqrt(angle_sq + 1e-16)
    axis = rotvec / angle
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(skew)
    return eye + sin * skew + (1.0 - cos) * (skew @ skew)


def rot(axis: str, angle: float) -> np.ndarray:
    """Right-handed rotation matrix about a coordinate axis."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def aa_to_quat(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 4) unit quaternion (w, x, y, z)."""
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(a/2)/a -> 1/2 at a = 0; the series keeps small angles exact
    scale = np.where(angle > 1e-8, np.sin(half) / np.maximum(angle, 1e-12), 0.5 - angle**2 / 48.0)
    return np.concatenate([np.cos(half), aa * scale], axis=-1)


def quat_to_aa(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternion -> (..., 3) axis-angle with angle in [0, π]."""
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)  # the short way round
    w = np.clip(q[..., :1], -1.0, 1.0)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, w)
    scale = np.where(sin_half > 1e-8, angle / np.maximum(sin_half, 1e-12), 2.0)
    return q[..., 1:] * scale


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (3,) axis-angle (via a quaternion; robust near π)."""
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    return quat_to_aa(np.array(q))


def aa_to_matrix(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3) (Rodrigues)."""
    aa = np.asarray(aa, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)[..., None]
    axis = aa / np.maximum(angle[..., 0], 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*aa.shape[:-1], 3, 3)
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Per-joint spherical interpolation of (..., 3) axis-angle rotations."""
    qa, qb = aa_to_quat(a), aa_to_quat(b)
    dot = np.sum(qa * qb, axis=-1, keepdims=True)
    qb = np.where(dot < 0, -qb, qb)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    safe = sin > 1e-6
    wa = np.where(safe, np.sin((1 - t) * theta) / np.where(safe, sin, 1.0), 1 - t)
    wb = np.where(safe, np.sin(t * theta) / np.where(safe, sin, 1.0), t)
    q = wa * qa + wb * qb
    return quat_to_aa(q / np.linalg.norm(q, axis=-1, keepdims=True))


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction a to direction b (3x3)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis, c = np.cross(a, b), float(np.dot(a, b))
    s = np.linalg.norm(axis)
    if s < 1e-12:
        return np.eye(3)
    k = axis / s
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * skew + (1 - c) * skew @ skew
