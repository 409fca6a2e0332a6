"""The paper's evaluation metrics (§4.1): 2D MPJPE over keypoint sets, mask IoU, plus λ and length errors.

Keypoint sets, as in the paper: "intact" = the 25 OpenPose BODY_25 keypoints that exist on the person (points
distal to an amputation do not exist and are not scored), "residual" = the 8 residual-limb endpoints that exist,
"body" = both together (up to 33).
"""
from __future__ import annotations

import numpy as np

from .raster import mask_iou

__all__ = ["per_point_errors", "mpjpe", "mask_iou", "KeypointErrors", "keypoint_errors"]


def per_point_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Euclidean pixel errors of the points where mask is True."""
    pred, gt, mask = np.asarray(pred, float), np.asarray(gt, float), np.asarray(mask, bool)
    return np.linalg.norm(pred[mask] - gt[mask], axis=-1)


def mpjpe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean per-joint position error in pixels over the masked points (NaN when there are none)."""
    errors = per_point_errors(pred, gt, mask)
    return float(errors.mean()) if errors.size else float("nan")


class KeypointErrors:
    """Per-point errors of one person, kept separate so a dataset mean is a mean over points, not people."""

    def __init__(self, intact: np.ndarray, residual: np.ndarray):
        self.intact, self.residual = intact, residual

    @property
    def body(self) -> np.ndarray:
        return np.concatenate([self.intact, self.residual])


def keypoint_errors(pred_body25: np.ndarray, gt_body25: np.ndarray, body25_exists: np.ndarray,
                    pred_residual: np.ndarray, gt_residual: np.ndarray, residual_exists: np.ndarray) -> KeypointErrors:
    return KeypointErrors(per_point_errors(pred_body25, gt_body25, body25_exists),
                          per_point_errors(pred_residual, gt_residual, residual_exists))
