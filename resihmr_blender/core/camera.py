"""Pinhole camera in the OpenCV convention, focal-length guess and translation initialisation.

Camera frame: x right, y down, z forward (into the scene); pixel (u, v) = f * (X/Z, Y/Z) + principal point.
An upright person facing the camera therefore has an SMPL-X global orientation close to a half turn about x
(the body's y-up becomes the camera's -y, its +z front faces the camera).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# A guess when neither the keypoints file nor the user gives a focal length: the image diagonal in pixels,
# i.e. a 53 degree diagonal field of view, which is a "normal" lens (about 43 mm full-frame equivalent).
# Phones' main cameras are wider (~26 mm) but portraits of a whole person are usually taken from further away
# or cropped, which narrows the effective field of view; results are not very sensitive to it (depth absorbs it).
FOCAL_GUESS_DIAGONAL_FACTOR = 1.0


def guess_focal_length(width: int, height: int) -> float:
    """Focal length in pixels for an image of this size when nothing better is known (see above)."""
    return FOCAL_GUESS_DIAGONAL_FACTOR * math.hypot(width, height)


@dataclass
class Camera:
    """Perspective camera with the principal point at the image centre unless given."""

    width: int
    height: int
    focal_length: float
    principal_point: tuple[float, float] | None = None
    focal_guessed: bool = False

    def __post_init__(self):
        if self.principal_point is None:
            self.principal_point = (self.width / 2.0, self.height / 2.0)

    @classmethod
    def for_image(cls, width: int, height: int, focal_length: float | None = None) -> Camera:
        if focal_length is None:
            return cls(width, height, guess_focal_length(width, height), focal_guessed=True)
        return cls(width, height, float(focal_length))

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) camera-frame points -> (..., 2) pixels. Depth is clamped to stay differentiable."""
        z = points[..., 2:3].clamp(min=1e-3)
        centre = torch.tensor(self.principal_point, dtype=points.dtype)
        return self.focal_length * points[..., :2] / z + centre

    def project_np(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        return self.focal_length * points[..., :2] / points[..., 2:3] + np.asarray(self.principal_point)

    def scaled(self, s: float) -> Camera:
        """The same view in a picture s times the size (the small camera that masks and thumbnails are drawn with):
        the size rounded, at least one pixel; focal length and principal point scaled exactly."""
        return Camera(max(1, round(self.width * s)), max(1, round(self.height * s)), self.focal_length * s,
                      (self.principal_point[0] * s, self.principal_point[1] * s))

    def to_json(self) -> dict:
        return {"focal_length_px": float(self.focal_length), "principal_point": [float(c) for c in
                                                                                 self.principal_point],
                "focal_length_guessed": bool(self.focal_guessed)}


def depth_from_lengths(focal_length: float, length_3d: float, length_2d_px: float) -> float:
    """Similar triangles: a segment of length L metres seen as l pixels lies at depth f * L / l."""
    return focal_length * length_3d / max(length_2d_px, 1e-6)
