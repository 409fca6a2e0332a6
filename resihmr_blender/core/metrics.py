"""The paper's evaluation metrics (§4.1): 2D MPJPE over keypoint sets and mask IoU, plus λ and length errors.

Keypoint sets, as in the paper: "intact" = the 25 OpenPose BODY_25 keypoints that exist on the person (points
distal to an amputation do not exist and are not scored), "residual" = the 8 residual-limb endpoints that exist,
"body" = both together (up to 33). A dataset's MPJPE is the mean over all scored points of all people (a person
with more residual limbs weighs more), and its mIoU the mean over people; `MethodScores` keeps both rules.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .raster import mask_iou

__all__ = ["per_point_errors", "mpjpe", "mask_iou", "KeypointErrors", "keypoint_errors", "mean_or_nan",
           "MethodScores", "SUMMARY_FIELDS"]


def per_point_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Euclidean pixel errors of the points where mask is True."""
    pred, gt, mask = np.asarray(pred, float), np.asarray(gt, float), np.asarray(mask, bool)
    if pred.shape != gt.shape or mask.shape != pred.shape[:-1]:
        raise ValueError(f"shapes differ: pred {pred.shape}, gt {gt.shape}, mask {mask.shape}")
    return np.linalg.norm(pred[mask] - gt[mask], axis=-1)


def mpjpe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean per-joint position error in pixels over the masked points (NaN when there are none)."""
    return mean_or_nan(per_point_errors(pred, gt, mask))


def mean_or_nan(values: Iterable) -> float:
    """Mean over every number in `values` (numbers or arrays of them); NaN for none, as 0 would read as perfect."""
    parts = [np.ravel(np.asarray(v, float)) for v in values]
    flat = np.concatenate(parts) if parts else np.empty(0)
    return float(flat.mean()) if flat.size else float("nan")


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


# name -> meaning, in the order a report shows them; every key is in MethodScores.summary()
SUMMARY_FIELDS: dict[str, str] = {
    "body_mpjpe_px": "body 2D MPJPE (px), intact + residual points (up to 33 a person)",
    "residual_mpjpe_px": "residual-endpoint 2D MPJPE (px), the 8 kinds where present",
    "intact_mpjpe_px": "intact 2D MPJPE (px), the BODY_25 points that exist",
    "intact_halluc_mpjpe_px": "intact 2D MPJPE (px) over the people with hallucinated distal keypoints",
    "lambda_mae": "λ mean absolute error",
    "length_error_cm": "3D residual-length mean absolute error (cm)",
    "iou": "silhouette mIoU against the ground-truth amputated body",
    "failures": "people the method failed on",
}


@dataclass
class MethodScores:
    """Everything one method scored over a dataset; `summary()` turns it into the reported numbers."""

    intact: list[np.ndarray] = field(default_factory=list)
    residual: list[np.ndarray] = field(default_factory=list)
    intact_halluc: list[np.ndarray] = field(default_factory=list)
    lam_by_kind: dict[str, list[float]] = field(default_factory=dict)
    length_m: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    failures: int = 0

    def add_keypoints(self, errors: KeypointErrors, hallucination_case: bool) -> None:
        self.intact.append(errors.intact)
        self.residual.append(errors.residual)
        if hallucination_case:
            self.intact_halluc.append(errors.intact)

    def add_residual(self, kind: str, lam: float, gt_lam: float, length_m: float, gt_length_m: float) -> None:
        self.lam_by_kind.setdefault(kind, []).append(abs(float(lam) - float(gt_lam)))
        self.length_m.append(abs(float(length_m) - float(gt_length_m)))

    def add_masks(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if np.shape(pred) != np.shape(gt):
            raise ValueError(f"mask shapes differ: {np.shape(pred)} vs {np.shape(gt)}")
        self.iou.append(mask_iou(pred, gt))

    def lambda_mae_by_kind(self) -> dict[str, float]:
        return {k: mean_or_nan(v) for k, v in sorted(self.lam_by_kind.items())}

    def summary(self) -> dict[str, float]:
        return {
            "body_mpjpe_px": mean_or_nan(self.intact + self.residual),
            "residual_mpjpe_px": mean_or_nan(self.residual),
            "intact_mpjpe_px": mean_or_nan(self.intact),
            "intact_halluc_mpjpe_px": mean_or_nan(self.intact_halluc),
            "lambda_mae": mean_or_nan([e for v in self.lam_by_kind.values() for e in v]),
            "length_error_cm": mean_or_nan(self.length_m) * 100.0,
            "iou": mean_or_nan(self.iou),
            "failures": float(self.failures),
        }
