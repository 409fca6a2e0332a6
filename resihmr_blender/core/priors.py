"""Openly licensed pose and shape priors (no VPoser, no SMPLify GMM).

Every term is written here from anatomy, in the SMPL-X local joint frames: at the T-pose rest all frames are
aligned with the body (x = subject's left, y = up, z = forward), so for the near single-axis rotations of
hinge joints an axis-angle component is close to the anatomical angle about that axis.
"""
from __future__ import annotations

import torch

from .body_model import JOINT_INDEX

# (joint, axis, low, high) in radians, for the body_pose joints. Signs follow from the frames above, e.g. knee
# flexion swings the shank (pointing -y) backwards (-z): a positive rotation about x; left elbow flexion swings
# the forearm (pointing +x) forwards (+z): a negative rotation about y, the right elbow mirrors it.
_LIMITS: list[tuple[str, int, float, float]] = []
for _side, _s in (("left", 1.0), ("right", -1.0)):
    _LIMITS += [
        (f"{_side}_hip", 0, -2.4, 0.6), (f"{_side}_hip", 1, -0.9, 0.9),
        (f"{_side}_hip", 2, *sorted((-0.5 * _s, 1.2 * _s))),
        (f"{_side}_knee", 0, 0.0, 2.6), (f"{_side}_knee", 1, -0.35, 0.35), (f"{_side}_knee", 2, -0.15, 0.15),
        (f"{_side}_ankle", 0, -0.9, 0.8), (f"{_side}_ankle", 1, -0.5, 0.5), (f"{_side}_ankle", 2, -0.5, 0.5),
        (f"{_side}_foot", 0, -0.6, 0.6), (f"{_side}_foot", 1, -0.3, 0.3), (f"{_side}_foot", 2, -0.3, 0.3),
        (f"{_side}_collar", 0, -0.3, 0.3), (f"{_side}_collar", 1, -0.4, 0.4),
        (f"{_side}_collar", 2, *sorted((-0.3 * _s, 0.6 * _s))),
        (f"{_side}_shoulder", 0, -1.7, 1.7), (f"{_side}_shoulder", 1, -1.7, 1.7),
        (f"{_side}_shoulder", 2, *sorted((-1.8 * _s, 1.3 * _s))),
        (f"{_side}_elbow", 0, -1.2, 1.2), (f"{_side}_elbow", 1, *sorted((0.0, -2.7 * _s))),
        (f"{_side}_elbow", 2, -0.2, 0.2),
        (f"{_side}_wrist", 0, -1.2, 1.2), (f"{_side}_wrist", 1, -0.7, 0.7), (f"{_side}_wrist", 2, -1.3, 1.3),
    ]
for _joint in ("spine1", "spine2", "spine3"):
    _LIMITS += [(_joint, 0, -0.4, 0.8), (_joint, 1, -0.5, 0.5), (_joint, 2, -0.4, 0.4)]
for _joint in ("neck", "head"):
    _LIMITS += [(_joint, 0, -0.6, 0.8), (_joint, 1, -0.9, 0.9), (_joint, 2, -0.5, 0.5)]

# Index into the flat body_pose (63 = joints 1..21 x 3) and the bounds as tensors.
LIMIT_INDEX = torch.tensor([(JOINT_INDEX[j] - 1) * 3 + axis for j, axis, _, _ in _LIMITS])
LIMIT_LOW = torch.tensor([lo for _, _, lo, _ in _LIMITS])
LIMIT_HIGH = torch.tensor([hi for _, _, _, hi in _LIMITS])

# Per-joint weights of the L2 pose prior: joints that move a lot in daily life cost less.
_L2_WEIGHT = {name: 1.0 for name in JOINT_INDEX}
_L2_WEIGHT.update({f"{s}_{j}": 0.5 for s in ("left", "right") for j in ("hip", "knee", "shoulder", "elbow")})
_L2_WEIGHT.update({f"{s}_{j}": 2.0 for s in ("left", "right") for j in ("collar", "foot", "wrist")})
_L2_WEIGHT.update({"spine1": 2.0, "spine2": 2.0, "spine3": 2.0})
L2_WEIGHTS = torch.tensor([_L2_WEIGHT[name] for name in list(JOINT_INDEX)[1:22] for _ in range(3)])


def _relaxed_standing() -> torch.Tensor:
    """Mean of the L2 pose prior: arms hanging relaxed (about 65° below horizontal, elbows slightly bent),
    everything else at rest. Unobserved joints (e.g. a residual limb's segment) settle here rather than in the
    T-pose, which no one stands in."""
    pose = torch.zeros(21, 3)
    pose[JOINT_INDEX["left_shoulder"] - 1, 2], pose[JOINT_INDEX["right_shoulder"] - 1, 2] = -1.15, 1.15
    pose[JOINT_INDEX["left_elbow"] - 1, 1], pose[JOINT_INDEX["right_elbow"] - 1, 1] = -0.25, 0.25
    return pose.reshape(-1)


POSE_MEAN = _relaxed_standing()


def joint_limit_penalty(body_pose: torch.Tensor) -> torch.Tensor:
    """Squared hinge beyond anatomical ranges, incl. elbow/knee hyper-extension. (B, 63) -> (B,)."""
    values = body_pose[:, LIMIT_INDEX]
    low, high = LIMIT_LOW.to(body_pose.dtype), LIMIT_HIGH.to(body_pose.dtype)
    return (torch.relu(low - values) ** 2 + torch.relu(values - high) ** 2).sum(dim=1)


def joint_limit_residuals(body_pose: torch.Tensor) -> torch.Tensor:
    """Residuals whose squares sum to `joint_limit_penalty` (for least-squares solvers). (B, 63) -> (B, 2L)."""
    values = body_pose[:, LIMIT_INDEX]
    low, high = LIMIT_LOW.to(body_pose.dtype), LIMIT_HIGH.to(body_pose.dtype)
    return torch.cat([torch.relu(low - values), torch.relu(values - high)], dim=1)


def pose_gradient_and_curvature(body_pose: torch.Tensor, pose_weight: float, limit_weight: float):
    """Gauss-Newton's view of the pose priors, pose_weight · pose_l2(body_pose − POSE_MEAN) + limit_weight ·
    joint_limit_penalty(body_pose), both separable per column: (J^T r, diagonal of J^T J), each (B, 63). The
    hinge counts where a value lies beyond its limit (its residual is sqrt(w)·excess there, nothing inside)."""
    dtype = body_pose.dtype
    l2 = L2_WEIGHTS.to(dtype)
    grad = pose_weight * l2 * (body_pose - POSE_MEAN.to(dtype))
    curvature = (pose_weight * l2).expand_as(body_pose).clone()
    values = body_pose[:, LIMIT_INDEX]
    low, high = LIMIT_LOW.to(dtype), LIMIT_HIGH.to(dtype)
    excess = torch.where(values < low, values - low, torch.where(values > high, values - high, 0.0))
    grad.index_add_(1, LIMIT_INDEX, limit_weight * excess)
    curvature.index_add_(1, LIMIT_INDEX, limit_weight * (excess != 0).to(dtype))
    return grad, curvature


def pose_l2(body_pose: torch.Tensor) -> torch.Tensor:
    """Weighted L2 pull towards the rest pose. (B, 63) -> (B,)."""
    return (L2_WEIGHTS.to(body_pose.dtype) * body_pose**2).sum(dim=1)


def shape_l2(betas: torch.Tensor) -> torch.Tensor:
    """Betas are unit-variance: plain L2 is the Gaussian shape prior. (B, K) -> (B,)."""
    return (betas**2).sum(dim=1)


def limits_table() -> list[tuple[str, int, float, float]]:
    """The joint-limit table (joint, axis, low, high), for documentation and tests."""
    return list(_LIMITS)
