"""2D keypoints in memory: one person's BODY_25 points and residual endpoints, one file's people (DESIGN §3.4).

Reading and writing files: keypoints_io.py; the checks both apply: keypoints_check.py.
Pure python + numpy: this module never imports bpy or torch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .layouts import N_BODY25, N_FACE, N_HAND, N_RESIDUAL
from .residuals import RESIDUAL_KINDS


class KeypointsError(ValueError):
    """Malformed keypoints; the message names the file, person, field and index that apply."""

    def __init__(self, detail: str, *, path: str | os.PathLike[str] | None = None, person: int | None = None,
                 field: str | None = None, index: int | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.person = person
        self.field = field
        self.index = index
        self.detail = detail
        where = []
        if person is not None:
            where.append(f"person {person}")
        if field is not None:
            where.append(f"field {field!r}")
        if index is not None:
            where.append(f"index {index}")
        message = detail
        if where:
            message = f"{', '.join(where)}: {message}"
        if self.path is not None:
            message = f"{self.path}: {message}"
        super().__init__(message)


def _points_array(value: Any, n: int, name: str) -> np.ndarray:
    arr = np.array(value, dtype=np.float64)  # copy: a Person never aliases the caller's buffer
    if arr.shape != (n, 3):
        raise KeypointsError(f"expected shape ({n}, 3), got {arr.shape}", field=name)
    return arr


@dataclass
class Person:
    """One person's 2D keypoints in pixels, ``[x, y, confidence]`` per point.

    ``body25`` is in :data:`BODY25_NAMES` order, ``residual`` in :data:`RESIDUAL_KINDS` order
    (``0, 0, 0`` = no such residual). ``body25_available`` is False where the source format has
    no such keypoint (e.g. COCO's Neck); those points have confidence 0.
    """

    body25: np.ndarray
    residual: np.ndarray = field(default_factory=lambda: np.zeros((N_RESIDUAL, 3)))
    hand_left: np.ndarray | None = None
    hand_right: np.ndarray | None = None
    face: np.ndarray | None = None
    body25_available: np.ndarray = field(default_factory=lambda: np.ones(N_BODY25, dtype=bool))
    source_format: str = "openpose"

    def __post_init__(self) -> None:
        self.body25 = _points_array(self.body25, N_BODY25, "body25")
        self.residual = _points_array(self.residual, N_RESIDUAL, "residual")
        if self.hand_left is not None:
            self.hand_left = _points_array(self.hand_left, N_HAND, "hand_left")
        if self.hand_right is not None:
            self.hand_right = _points_array(self.hand_right, N_HAND, "hand_right")
        if self.face is not None:
            self.face = _points_array(self.face, N_FACE, "face")
        available = np.asarray(self.body25_available)
        if available.shape != (N_BODY25,):
            raise KeypointsError(f"expected shape ({N_BODY25},), got {available.shape}", field="body25_available")
        self.body25_available = available.astype(bool)

    def residual_kinds(self) -> list[str]:
        """Names of the residual kinds present (confidence > 0), in :data:`RESIDUAL_KINDS` order."""
        return [name for name, conf in zip(RESIDUAL_KINDS, self.residual[:, 2]) if conf > 0]


@dataclass
class KeypointsFile:
    """The content of one keypoints file: the people in one image plus what is known of the image."""

    path: str | None
    people: list[Person]
    image_path: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    focal_length_px: float | None = None
    # What the reader repaired or dropped (slightly out-of-range confidences clamped, a malformed hand or face
    # array dropped, normalised coordinates scaled, an unreadable photo), one line each naming file, person and
    # field, for the command line and the sidebar to show.
    warnings: list[str] = field(default_factory=list)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) when both are known."""
        if self.image_width is None or self.image_height is None:
            return None
        return self.image_width, self.image_height

