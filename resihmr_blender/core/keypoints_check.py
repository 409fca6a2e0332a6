"""Checks on keypoints, shared by the readers, the writer and validate_person: every error names the file, the
person, the field and the index as they appear in the file, so a user can find the bad number.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .keypoints import KeypointsError, Person
from .layouts import BODY25_NAMES, F_FACE, F_HAND_L, F_HAND_R, F_POSE, F_RESIDUAL, F_SOURCE, N_RESIDUAL, SOURCE_FORMATS
from .residuals import RESIDUAL_KINDS, limb_conflict, limb_label


@dataclass(frozen=True)
class _Ctx:
    path: str | None
    person: int | None

    def error(self, detail: str, field_name: str | None = None, index: int | None = None) -> KeypointsError:
        return KeypointsError(detail, path=self.path, person=self.person, field=field_name, index=index)

    def message(self, detail: str, field_name: str | None = None) -> str:
        """A warning worded like an error: "file: person p, field 'f': detail"."""
        return str(self.error(detail, field_name))


# OpenPose's confidences are raw network outputs (heatmap peaks, for the body averaged with limb scores), not
# probabilities squashed into [0, 1]: real files hold face points at about -1e-4 and hand points at 1.006.
# Within -0.01..1.05 the excess is numerical noise (10x-100x what was seen, still far from any other quantity):
# clamped, with a warning. Beyond it the number means something else - a COCO visibility 2, a percentage,
# a sign error - and stays an error.
CONFIDENCE_TOLERANCE = (-0.01, 1.05)


def _is_number(v: Any) -> bool:
    # bool is an int subclass in Python, but `true` in a keypoints array is a mistake, not 1.0.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse_flat(value: Any, n_points: int, field_name: str, ctx: _Ctx, what: str,
                alt_points: int | None = None) -> np.ndarray:
    """A flat JSON list of ``n_points * 3`` finite numbers -> (n_points, 3) float64."""
    if not isinstance(value, list):
        raise ctx.error(f"expected a list of {n_points * 3} numbers ({what}), got {type(value).__name__}", field_name)
    allowed = [n_points * 3] + ([alt_points * 3] if alt_points else [])
    if len(value) not in allowed:
        expected = " or ".join(str(a) for a in allowed)
        raise ctx.error(f"expected {expected} numbers ({what}), got {len(value)}", field_name)
    for i, v in enumerate(value):
        if not _is_number(v):
            raise ctx.error(f"{_COMPONENT[i % 3]} value {v!r} is not a number", field_name, i // 3)
        if not math.isfinite(v):
            raise ctx.error(f"{_COMPONENT[i % 3]} value {v} is not finite", field_name, i // 3)
    return np.array(value, dtype=np.float64).reshape(-1, 3)


_COMPONENT = ("x", "y", "confidence")


def _check_finite(points: np.ndarray, field_name: str, ctx: _Ctx) -> None:
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if bad.size:
        i = int(bad[0])
        raise ctx.error(f"point {points[i].tolist()} is not finite", field_name, i)


def _check_confidence(points: np.ndarray, field_name: str, ctx: _Ctx, names: Sequence[str] | None) -> None:
    conf = points[:, 2]
    bad = np.flatnonzero((conf < 0) | (conf > 1))
    if bad.size:
        i = int(bad[0])
        label = f"{names[i]} " if names else ""
        raise ctx.error(f"{label}confidence {conf[i]:g} is outside [0, 1]", field_name, i)


def _clamp_confidence(points: np.ndarray, field_name: str, ctx: _Ctx, names: Sequence[str] | None,
                      warnings: list[str]) -> np.ndarray:
    """Confidences within :data:`CONFIDENCE_TOLERANCE` of [0, 1] clamped (one warning per field); farther: error."""
    conf = points[:, 2]
    lo, hi = CONFIDENCE_TOLERANCE
    far = np.flatnonzero((conf < lo) | (conf > hi))
    if far.size:
        i = int(far[0])
        label = f"{names[i]} " if names else ""
        raise ctx.error(f"{label}confidence {conf[i]:g} is outside [0, 1] (only {lo:g}..{hi:g}, OpenPose's rounding, "
                        "is accepted and clamped)", field_name, i)
    slight = (conf < 0) | (conf > 1)
    if not slight.any():
        return points
    n, outside = int(slight.sum()), np.unique(conf[slight])
    values = ", ".join(f"{v:g}" for v in outside) if len(outside) <= 3 else f"{outside[0]:g} to {outside[-1]:g}"
    warnings.append(ctx.message(f"{n} confidence{'s' if n > 1 else ''} slightly outside [0, 1] ({values}) "
                                "clamped to [0, 1]", field_name))
    points = points.copy()
    points[:, 2] = np.clip(conf, 0.0, 1.0)
    return points


def _check_inside(points: np.ndarray, present: np.ndarray, field_name: str, ctx: _Ctx,
                  image_size: tuple[int, int] | None, names: Sequence[str] | None) -> None:
    """A labelled point more than half the image beyond a border is a unit or file mix-up, not a pose."""
    if image_size is None:
        return
    w, h = image_size
    x, y = points[:, 0], points[:, 1]
    far = present & ((x < -0.5 * w) | (x > 1.5 * w) | (y < -0.5 * h) | (y > 1.5 * h))
    bad = np.flatnonzero(far)
    if bad.size:
        i = int(bad[0])
        label = f"{names[i]} " if names else "point "
        raise ctx.error(f"{label}at ({x[i]:g}, {y[i]:g}) is far outside the {w}x{h} image "
                        f"(more than 50% of the image size beyond its border)", field_name, i)


def _check_one_per_limb(present: np.ndarray, field_name: str, ctx: _Ctx, file_index: Sequence[int]) -> None:
    """``present`` in kind order; ``file_index[k]`` is where kind k sits in the file (for the message)."""
    # Walk in file order so the error points at the second one the user wrote.
    in_file_order = [RESIDUAL_KINDS[k] for k in sorted(range(N_RESIDUAL), key=lambda k: file_index[k]) if present[k]]
    conflict = limb_conflict(in_file_order)
    if conflict is not None:
        first, second = (RESIDUAL_KINDS.index(c) for c in conflict)
        raise ctx.error(f"{conflict[0]} (index {file_index[first]}) and {conflict[1]} (index {file_index[second]}) "
                        f"are both present on the {limb_label(conflict[0])}; at most one residual kind per limb",
                        field_name, file_index[second])


def _check_image_size(image_size: Any, ctx: _Ctx, field_name: str = "image_size") -> tuple[int, int]:
    try:
        w, h = image_size
    except (TypeError, ValueError):
        raise ctx.error(f"expected (width, height), got {image_size!r}", field_name) from None
    return (_positive_int(w, ctx, f"{field_name}[0] (width)"), _positive_int(h, ctx, f"{field_name}[1] (height)"))


MAX_SIDE_PX = 100_000  # an image side beyond this is a unit or file mix-up (100 MP photos are ~12000 px wide)


def _positive_int(v: Any, ctx: _Ctx, field_name: str) -> int:
    # 1080.0 is accepted (some writers emit floats); 1080.5, 0, -1, "1080" and true are not.
    value = None
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0:
        value = int(v)
    elif isinstance(v, (float, np.floating)) and math.isfinite(v) and v > 0 and float(v).is_integer():
        value = int(v)
    if value is None:
        raise ctx.error(f"must be a positive integer, got {v!r}", field_name)
    if value > MAX_SIDE_PX:
        raise ctx.error(f"{value} px is not an image size (more than {MAX_SIDE_PX} px)", field_name)
    return value


def _positive_float(v: Any, ctx: _Ctx, field_name: str) -> float:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        f = float(v)
        if math.isfinite(f) and f > 0:
            return f
    raise ctx.error(f"must be a positive finite number, got {v!r}", field_name)


def validate_person(person: Person, image_size: tuple[int, int] | None = None, *,
                    path: str | os.PathLike[str] | None = None, person_index: int | None = None) -> None:
    """Raise :class:`KeypointsError` if ``person`` is not fit for fitting or writing.

    Checks: finite values, confidences in [0, 1], at most one residual kind per limb, no labelled
    point far outside the image (when ``image_size`` = (width, height) is given), and no confidence
    on a keypoint the source format cannot provide. Fields and indices are named as in the
    OpenPose-extended file.
    """
    ctx = _Ctx(os.fspath(path) if path is not None else None, person_index)
    if image_size is not None:
        image_size = _check_image_size(image_size, ctx)
    if person.source_format not in SOURCE_FORMATS:
        raise ctx.error(f"unknown source format {person.source_format!r}; expected one of {SOURCE_FORMATS}",
                        F_SOURCE)
    groups: list[tuple[np.ndarray | None, str, Sequence[str] | None]] = [
        (person.body25, F_POSE, BODY25_NAMES),
        (person.residual, F_RESIDUAL, RESIDUAL_KINDS),
        (person.hand_left, F_HAND_L, None),
        (person.hand_right, F_HAND_R, None),
        (person.face, F_FACE, None),
    ]
    for points, field_name, names in groups:
        if points is None:
            continue
        _check_finite(points, field_name, ctx)
        _check_confidence(points, field_name, ctx, names)
        _check_inside(points, points[:, 2] > 0, field_name, ctx, image_size, names)
    unavailable_conf = np.flatnonzero(~person.body25_available & (person.body25[:, 2] > 0))
    if unavailable_conf.size:
        i = int(unavailable_conf[0])
        raise ctx.error(f"{BODY25_NAMES[i]} has confidence {person.body25[i, 2]:g} but is marked unavailable "
                        f"in the {person.source_format} source", F_POSE, i)
    _check_one_per_limb(person.residual[:, 2] > 0, F_RESIDUAL, ctx, range(N_RESIDUAL))


def _optional_str(v: Any, ctx: _Ctx, field_name: str) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise ctx.error(f"must be a string, got {type(v).__name__}", field_name)

