"""2D keypoints: BODY_25 + residual-limb endpoints, read/write/validate (DESIGN §3.3, §3.4).

Two input formats are read, detected from the content:

* OpenPose per-image JSON, extended with ``image``, ``camera`` and ``residual_keypoints_2d``
  (``"people"`` at the top level). Plain OpenPose output without residuals is valid.
* LDPose-style COCO annotations (``"annotations"`` at the top level): per person 17 COCO body
  points followed by the 8 LDPose residual endpoints (75 numbers). Plain COCO (51 numbers, no
  residual endpoints) is accepted too.

Everything is converted to one in-memory layout (:class:`Person`): BODY_25 order for the body,
:data:`RESIDUAL_KINDS` order for the residual endpoints. Errors name the file, the person, the
field and the index *as they appear in the file*, so a user can find the bad number.

Pure python + numpy: this module never imports bpy or torch.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BODY25_INDEX",
    "BODY25_NAMES",
    "COCO17_NAMES",
    "COCO17_TO_BODY25",
    "LDPOSE_COCO_RESIDUAL_ORDER",
    "LDPOSE_NAMES",
    "LIMBS",
    "RESIDUALS",
    "RESIDUAL_KINDS",
    "KeypointsError",
    "KeypointsFile",
    "Person",
    "ResidualKind",
    "distal_mask",
    "ignored_hands",
    "read_keypoints",
    "read_keypoints_all",
    "residual_by_name",
    "validate_person",
    "write_keypoints",
]

# --------------------------------------------------------------------------------------------
# Skeleton and residual-limb tables
# --------------------------------------------------------------------------------------------

BODY25_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye",
    "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
BODY25_INDEX: dict[str, int] = {name: i for i, name in enumerate(BODY25_NAMES)}

N_BODY25 = 25
N_RESIDUAL = 8
N_HAND = 21
N_FACE = 70  # OpenPose face model: 68 landmarks + 2 pupils

LIMBS: tuple[str, ...] = ("right_arm", "left_arm", "right_leg", "left_leg")


@dataclass(frozen=True)
class ResidualKind:
    """One of the 8 residual-limb kinds (DESIGN §3.3).

    The endpoint is ``R = Ja + λ (Jt − Ja)`` with ``Ja`` the anchor and ``Jt`` the upstream joint.
    ``distal_body25`` lists the BODY_25 keypoints beyond the endpoint; detectors hallucinate them,
    so the fit must ignore them even when they come with high confidence.
    """

    name: str
    ldpose_name: str
    limb: str
    anchor_joint: str
    upstream_joint: str
    anchor_body25: int
    upstream_body25: int
    distal_body25: tuple[int, ...]


def _kind(name: str, ldpose: str, limb: str, anchor: str, upstream: str, distal: Sequence[str]) -> ResidualKind:
    # SMPL-X joint name "right_elbow" <-> BODY_25 name "RElbow".
    def b25(joint: str) -> int:
        side, part = joint.split("_", 1)
        return BODY25_INDEX[side[0].upper() + part.capitalize()]

    return ResidualKind(name, ldpose, limb, anchor, upstream, b25(anchor), b25(upstream),
                        tuple(BODY25_INDEX[d] for d in distal))


# Fixed order of DESIGN §3.3. The anchor itself is distal: e.g. a transhumeral residual ends between
# shoulder and elbow, so any elbow a detector reports is hallucinated.
RESIDUALS: tuple[ResidualKind, ...] = (
    _kind("right_transhumeral", "above_right_elbow_end", "right_arm", "right_elbow", "right_shoulder",
          ("RElbow", "RWrist")),
    _kind("right_transradial", "below_right_elbow_end", "right_arm", "right_wrist", "right_elbow", ("RWrist",)),
    _kind("left_transhumeral", "above_left_elbow_end", "left_arm", "left_elbow", "left_shoulder",
          ("LElbow", "LWrist")),
    _kind("left_transradial", "below_left_elbow_end", "left_arm", "left_wrist", "left_elbow", ("LWrist",)),
    _kind("right_transfemoral", "above_right_knee_end", "right_leg", "right_knee", "right_hip",
          ("RKnee", "RAnkle", "RBigToe", "RSmallToe", "RHeel")),
    _kind("right_transtibial", "below_right_knee_end", "right_leg", "right_ankle", "right_knee",
          ("RAnkle", "RBigToe", "RSmallToe", "RHeel")),
    _kind("left_transfemoral", "above_left_knee_end", "left_leg", "left_knee", "left_hip",
          ("LKnee", "LAnkle", "LBigToe", "LSmallToe", "LHeel")),
    _kind("left_transtibial", "below_left_knee_end", "left_leg", "left_ankle", "left_knee",
          ("LAnkle", "LBigToe", "LSmallToe", "LHeel")),
)
RESIDUAL_KINDS: tuple[str, ...] = tuple(k.name for k in RESIDUALS)
LDPOSE_NAMES: tuple[str, ...] = tuple(k.ldpose_name for k in RESIDUALS)
_RESIDUAL_BY_NAME: dict[str, ResidualKind] = {k.name: k for k in RESIDUALS}


def residual_by_name(name: str) -> ResidualKind:
    """The :class:`ResidualKind` called ``name`` (our kind name or its LDPose name)."""
    if name in _RESIDUAL_BY_NAME:
        return _RESIDUAL_BY_NAME[name]
    for kind in RESIDUALS:
        if kind.ldpose_name == name:
            return kind
    raise KeyError(f"unknown residual kind {name!r}; known kinds: {', '.join(RESIDUAL_KINDS)}")


def _residual_flags(residual_flags: Any) -> np.ndarray:
    """Normalise the accepted spellings of "which kinds are present" to a bool (8,) array."""
    if isinstance(residual_flags, str):
        residual_flags = [residual_flags]
    if not isinstance(residual_flags, np.ndarray):
        residual_flags = list(residual_flags)
        if all(isinstance(x, str) for x in residual_flags) and residual_flags:
            present = {residual_by_name(x).name for x in residual_flags}
            return np.array([k in present for k in RESIDUAL_KINDS], dtype=bool)
    arr = np.asarray(residual_flags)
    if arr.shape == (N_RESIDUAL, 3):  # a Person.residual array: present where confidence > 0
        return arr[:, 2].astype(np.float64) > 0
    if arr.shape == (N_RESIDUAL,):
        return arr.astype(bool) if arr.dtype == bool else arr.astype(np.float64) > 0
    if arr.size == 0:
        return np.zeros(N_RESIDUAL, dtype=bool)
    raise ValueError(f"residual flags must be 8 flags, an (8, 3) residual array or kind names; got shape {arr.shape}")


def distal_mask(residual_flags: Any) -> np.ndarray:
    """Bool (25,) mask of BODY_25 keypoints the fit must ignore.

    ``residual_flags``: 8 flags in :data:`RESIDUAL_KINDS` order (truthy = present), a
    ``Person.residual`` (8, 3) array (present = confidence > 0), or an iterable of kind names.
    """
    flags = _residual_flags(residual_flags)
    mask = np.zeros(N_BODY25, dtype=bool)
    for kind, present in zip(RESIDUALS, flags):
        if present:
            mask[list(kind.distal_body25)] = True
    return mask


def ignored_hands(residual_flags: Any) -> tuple[bool, bool]:
    """(left, right): whether that hand's 21 keypoints are hallucinated (an arm residual on that side)."""
    flags = _residual_flags(residual_flags)
    limbs = {kind.limb for kind, present in zip(RESIDUALS, flags) if present}
    return "left_arm" in limbs, "right_arm" in limbs


# --------------------------------------------------------------------------------------------
# COCO / LDPose layout
# --------------------------------------------------------------------------------------------

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO index -> BODY_25 index. COCO has no Neck, MidHip, toes or heels; those stay unavailable
# (never synthesised: a made-up neck would pull the fit towards a guess).
COCO17_TO_BODY25: tuple[int, ...] = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)
# Order of the 8 residual endpoints after the 17 COCO points in LDPose's mmpose dataset config.
LDPOSE_COCO_RESIDUAL_ORDER: tuple[str, ...] = (
    "above_left_elbow_end", "above_right_elbow_end", "below_left_elbow_end", "below_right_elbow_end",
    "above_left_knee_end", "above_right_knee_end", "below_left_knee_end", "below_right_knee_end",
)
# COCO residual position -> our kind index.
_COCO_RESIDUAL_TO_KIND: tuple[int, ...] = tuple(LDPOSE_NAMES.index(n) for n in LDPOSE_COCO_RESIDUAL_ORDER)
_COCO_POINT_NAMES: tuple[str, ...] = COCO17_NAMES + LDPOSE_COCO_RESIDUAL_ORDER

_COCO_AVAILABLE = np.zeros(N_BODY25, dtype=bool)
_COCO_AVAILABLE[list(COCO17_TO_BODY25)] = True

SOURCE_FORMATS = ("openpose", "coco-ldpose")

# OpenPose field names, also used to name fields in errors about in-memory people.
F_POSE = "pose_keypoints_2d"
F_RESIDUAL = "residual_keypoints_2d"
F_HAND_L = "hand_left_keypoints_2d"
F_HAND_R = "hand_right_keypoints_2d"
F_FACE = "face_keypoints_2d"
F_AVAILABLE = "body25_available"  # our extension: keeps COCO's missing points missing on round trip
F_SOURCE = "source_format"  # our extension


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


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

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) when both are known."""
        if self.image_width is None or self.image_height is None:
            return None
        return self.image_width, self.image_height


# --------------------------------------------------------------------------------------------
# Checks shared by the readers, the writer and validate_person
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    path: str | None
    person: int | None

    def error(self, detail: str, field_name: str | None = None, index: int | None = None) -> KeypointsError:
        return KeypointsError(detail, path=self.path, person=self.person, field=field_name, index=index)


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
    seen: dict[str, int] = {}
    # Walk in file order so the error points at the second one the user wrote.
    for k in sorted(range(N_RESIDUAL), key=lambda k: file_index[k]):
        if not present[k]:
            continue
        limb = RESIDUALS[k].limb
        if limb in seen:
            first = seen[limb]
            raise ctx.error(f"{RESIDUAL_KINDS[first]} (index {file_index[first]}) and {RESIDUAL_KINDS[k]} "
                            f"(index {file_index[k]}) are both present on the {limb.replace('_', ' ')}; "
                            f"at most one residual kind per limb", field_name, file_index[k])
        seen[limb] = k


def _check_image_size(image_size: Any, ctx: _Ctx, field_name: str = "image_size") -> tuple[int, int]:
    try:
        w, h = image_size
    except (TypeError, ValueError):
        raise ctx.error(f"expected (width, height), got {image_size!r}", field_name) from None
    return (_positive_int(w, ctx, f"{field_name}[0] (width)"), _positive_int(h, ctx, f"{field_name}[1] (height)"))


def _positive_int(v: Any, ctx: _Ctx, field_name: str) -> int:
    # 1080.0 is accepted (some writers emit floats); 1080.5, 0, -1, "1080" and true are not.
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0:
        return int(v)
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and v > 0 and float(v).is_integer():
        return int(v)
    raise ctx.error(f"must be a positive integer, got {v!r}", field_name)


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


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _load_json(path: str) -> Any:
    ctx = _Ctx(path, None)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM (some Windows tools write one)
    except UnicodeDecodeError as e:
        raise ctx.error(f"not valid JSON: not UTF-8 text (byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ctx.error(f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None


def _optional_str(v: Any, ctx: _Ctx, field_name: str) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise ctx.error(f"must be a string, got {type(v).__name__}", field_name)


def _read_openpose(doc: dict[str, Any], path: str, image_size: tuple[int, int] | None) -> KeypointsFile:
    ctx = _Ctx(path, None)
    image_path = width = height = focal = None
    image = doc.get("image")
    if image is not None:
        if not isinstance(image, dict):
            raise ctx.error(f"expected an object, got {type(image).__name__}", "image")
        image_path = _optional_str(image.get("path"), ctx, "image.path")
        if image.get("width") is not None:
            width = _positive_int(image["width"], ctx, "image.width")
        if image.get("height") is not None:
            height = _positive_int(image["height"], ctx, "image.height")
        if (width is None) != (height is None):
            missing = "image.height" if height is None else "image.width"
            raise ctx.error("image width and height must be given together", missing)
    camera = doc.get("camera")
    if camera is not None:
        if not isinstance(camera, dict):
            raise ctx.error(f"expected an object, got {type(camera).__name__}", "camera")
        if camera.get("focal_length_px") is not None:
            focal = _positive_float(camera["focal_length_px"], ctx, "camera.focal_length_px")
    if image_size is not None:
        width, height = image_size
    size = (width, height) if width is not None and height is not None else None

    if "people" not in doc:
        raise ctx.error("missing (expected OpenPose JSON with a 'people' list, "
                        "or a COCO/LDPose file with 'annotations')", "people")
    people_raw = doc["people"]
    if not isinstance(people_raw, list):
        raise ctx.error(f"expected a list, got {type(people_raw).__name__}", "people")

    people = []
    for p, entry in enumerate(people_raw):
        pctx = _Ctx(path, p)
        if not isinstance(entry, dict):
            raise pctx.error(f"expected an object, got {type(entry).__name__}")
        if F_POSE not in entry:
            raise pctx.error("missing", F_POSE)
        body25 = _parse_flat(entry[F_POSE], N_BODY25, F_POSE, pctx, "25 BODY_25 points x 3")
        residual = np.zeros((N_RESIDUAL, 3))
        if entry.get(F_RESIDUAL) is not None:
            residual = _parse_flat(entry[F_RESIDUAL], N_RESIDUAL, F_RESIDUAL, pctx, "8 residual endpoints x 3")
        optional: dict[str, np.ndarray | None] = {}
        for key, n, what in ((F_HAND_L, N_HAND, "21 hand points x 3"), (F_HAND_R, N_HAND, "21 hand points x 3"),
                             (F_FACE, N_FACE, "70 face points x 3")):
            value = entry.get(key)
            # OpenPose writes [] when hands/face detection was off: same as absent.
            optional[key] = None if value is None or value == [] else _parse_flat(value, n, key, pctx, what)
        available = np.ones(N_BODY25, dtype=bool)
        if entry.get(F_AVAILABLE) is not None:
            flags = entry[F_AVAILABLE]
            if not isinstance(flags, list) or len(flags) != N_BODY25 or not all(isinstance(f, bool) for f in flags):
                raise pctx.error(f"expected a list of {N_BODY25} booleans", F_AVAILABLE)
            available = np.array(flags, dtype=bool)
        source = entry.get(F_SOURCE, "openpose")
        if source not in SOURCE_FORMATS:
            raise pctx.error(f"unknown source format {source!r}; expected one of {SOURCE_FORMATS}", F_SOURCE)
        person = Person(body25=body25, residual=residual, hand_left=optional[F_HAND_L],
                        hand_right=optional[F_HAND_R], face=optional[F_FACE], body25_available=available,
                        source_format=source)
        validate_person(person, size, path=path, person_index=p)
        people.append(person)
    return KeypointsFile(path=path, people=people, image_path=image_path, image_width=width,
                         image_height=height, focal_length_px=focal)


def _coco_person(ann: dict[str, Any], ctx: _Ctx, size: tuple[int, int] | None) -> Person | None:
    """One COCO annotation -> Person, or None when it labels no point at all (e.g. a crowd box)."""
    if "keypoints" not in ann:
        raise ctx.error("missing", "keypoints")
    raw = _parse_flat(ann["keypoints"], 25, "keypoints", ctx, "17 COCO points + 8 LDPose residual endpoints, x, y, v",
                      alt_points=17)
    v = raw[:, 2]
    bad = np.flatnonzero(~np.isin(v, (0.0, 1.0, 2.0)))
    if bad.size:
        i = int(bad[0])
        raise ctx.error(f"{_COCO_POINT_NAMES[i]} visibility {v[i]:g} is not 0, 1 or 2", "keypoints", i)
    # v=1 (labelled but occluded) counts as a label: the annotator placed the point, and for a
    # residual endpoint the position is what matters, not whether it is visible.
    labelled = v > 0
    if not labelled.any():
        return None
    _check_inside(raw, labelled, "keypoints", ctx, size, _COCO_POINT_NAMES)
    points = np.where(labelled[:, None], np.column_stack([raw[:, :2], np.ones(len(raw))]), 0.0)
    residual_present = np.zeros(N_RESIDUAL, dtype=bool)
    if len(raw) == 25:
        residual_present[list(_COCO_RESIDUAL_TO_KIND)] = labelled[17:]
    file_index = [0] * N_RESIDUAL
    for pos, k in enumerate(_COCO_RESIDUAL_TO_KIND):
        file_index[k] = 17 + pos
    _check_one_per_limb(residual_present, "keypoints", ctx, file_index)

    body25 = np.zeros((N_BODY25, 3))
    body25[list(COCO17_TO_BODY25)] = points[:17]
    residual = np.zeros((N_RESIDUAL, 3))
    if len(raw) == 25:
        residual[list(_COCO_RESIDUAL_TO_KIND)] = points[17:]
    return Person(body25=body25, residual=residual, body25_available=_COCO_AVAILABLE.copy(),
                  source_format="coco-ldpose")


def _read_coco(doc: dict[str, Any], path: str, image_size: tuple[int, int] | None) -> list[KeypointsFile]:
    """One KeypointsFile per image in a COCO file; person indices in errors are annotation indices."""
    ctx = _Ctx(path, None)
    anns = doc["annotations"]
    if not isinstance(anns, list):
        raise ctx.error(f"expected a list, got {type(anns).__name__}", "annotations")
    images = doc.get("images", [])
    if images is None:
        images = []
    if not isinstance(images, list):
        raise ctx.error(f"expected a list, got {type(images).__name__}", "images")

    # Group by image id, in the order of "images" then of first appearance in "annotations".
    info: dict[Any, tuple[str | None, int | None, int | None]] = {}
    order: list[Any] = []
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            raise ctx.error(f"expected an object, got {type(img).__name__}", "images", i)
        width = height = None
        if img.get("width") is not None:
            width = _positive_int(img["width"], ctx, f"images[{i}].width")
        if img.get("height") is not None:
            height = _positive_int(img["height"], ctx, f"images[{i}].height")
        if (width is None) != (height is None):
            raise ctx.error("image width and height must be given together", f"images[{i}]")
        image_id = img.get("id")
        info[image_id] = (_optional_str(img.get("file_name"), ctx, f"images[{i}].file_name"), width, height)
        order.append(image_id)
    groups: dict[Any, list[tuple[int, dict[str, Any]]]] = {image_id: [] for image_id in order}
    for a, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise _Ctx(path, a).error(f"expected an object, got {type(ann).__name__}")
        image_id = ann.get("image_id")
        if image_id not in groups:
            groups[image_id] = []
            order.append(image_id)
        groups[image_id].append((a, ann))

    files = []
    for image_id in order or [None]:
        file_name, width, height = info.get(image_id, (None, None, None))
        if image_size is not None:
            width, height = image_size
        size = (width, height) if width is not None and height is not None else None
        people = []
        for a, ann in groups.get(image_id, []):
            if ann.get("iscrowd"):  # a crowd region, not one person
                continue
            person = _coco_person(ann, _Ctx(path, a), size)
            if person is not None:
                people.append(person)
        files.append(KeypointsFile(path=path, people=people, image_path=file_name, image_width=width,
                                   image_height=height, focal_length_px=None))
    return files


def read_keypoints_all(path: str | os.PathLike[str],
                       image_size: tuple[int, int] | None = None) -> list[KeypointsFile]:
    """Like :func:`read_keypoints`, but a COCO file holding several images gives one entry per image."""
    path = os.fspath(path)
    ctx = _Ctx(path, None)
    if image_size is not None:
        image_size = _check_image_size(image_size, ctx)
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise ctx.error(f"not a keypoints file: the top level is a JSON {type(doc).__name__}, expected an object")
    if "people" not in doc and "annotations" in doc:
        return _read_coco(doc, path, image_size)
    return [_read_openpose(doc, path, image_size)]


def read_keypoints(path: str | os.PathLike[str], image_size: tuple[int, int] | None = None) -> KeypointsFile:
    """Read an OpenPose(-extended) or LDPose/COCO keypoints file (format detected from the content).

    ``image_size`` = (width, height), e.g. from the command line, overrides the size in the file.
    Raises :class:`KeypointsError` (a ValueError) naming file, person, field and index on any
    malformed content; OSError when the file cannot be read. A COCO file must hold one image
    (use :func:`read_keypoints_all` for more).
    """
    files = read_keypoints_all(path, image_size)
    if len(files) != 1:
        raise KeypointsError(f"this COCO file holds {len(files)} images; read it with read_keypoints_all() "
                             "or split it into one file per image", path=path)
    return files[0]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _flat(points: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(points, dtype=np.float64).reshape(-1)]


def write_keypoints(path: str | os.PathLike[str], kf: KeypointsFile) -> None:
    """Write ``kf`` as OpenPose-extended JSON (DESIGN §3.4), atomically (temp file + os.replace).

    Validates first, so a file this writes always reads back with :func:`read_keypoints`.
    """
    path = os.fspath(path)
    ctx = _Ctx(path, None)
    if (kf.image_width is None) != (kf.image_height is None):
        raise ctx.error("image width and height must be given together", "image")
    size = None
    if kf.image_width is not None:
        size = (_positive_int(kf.image_width, ctx, "image.width"), _positive_int(kf.image_height, ctx, "image.height"))
    doc: dict[str, Any] = {"version": 1.3}
    image: dict[str, Any] = {}
    if kf.image_path is not None:
        image["path"] = _optional_str(kf.image_path, ctx, "image.path")
    if size is not None:
        image["width"], image["height"] = size
    if image:
        doc["image"] = image
    if kf.focal_length_px is not None:
        doc["camera"] = {"focal_length_px": _positive_float(kf.focal_length_px, ctx, "camera.focal_length_px")}
    people = []
    for p, person in enumerate(kf.people):
        validate_person(person, size, path=path, person_index=p)
        entry: dict[str, Any] = {F_POSE: _flat(person.body25), F_RESIDUAL: _flat(person.residual)}
        if person.hand_left is not None:
            entry[F_HAND_L] = _flat(person.hand_left)
        if person.hand_right is not None:
            entry[F_HAND_R] = _flat(person.hand_right)
        if person.face is not None:
            entry[F_FACE] = _flat(person.face)
        # Extension keys only when they carry information, so plain-OpenPose people stay plain.
        if not person.body25_available.all():
            entry[F_AVAILABLE] = [bool(a) for a in person.body25_available]
        if person.source_format != "openpose":
            entry[F_SOURCE] = person.source_format
        people.append(entry)
    doc["people"] = people
    text = json.dumps(doc, allow_nan=False)

    # Temp file in the same folder so os.replace is an atomic rename on the same file system;
    # os.open with 0o666 lets the umask set the permissions as a plain open() would.
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
