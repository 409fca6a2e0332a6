"""Reading and writing keypoint files (DESIGN §3.4), the format detected from the content:

* OpenPose per-image JSON, extended with ``image``, ``camera`` and ``residual_keypoints_2d``
  (``"people"`` at the top level). Plain OpenPose output without residuals is valid, as OpenPose really writes
  it: BODY_25, its 18-point COCO model or COCO-17 (told apart by length), the keys of OpenPose before 1.2
  (``pose_keypoints``...), confidences a little outside [0, 1] (clamped, with a warning), normalised
  coordinates (scaled by the image size), ControlNet's ``canvas_width``/``canvas_height`` as the image size.
  Hand and face arrays never fail a file: a malformed one is dropped with a warning.
* LDPose-style COCO annotations (``"annotations"`` at the top level): per person 17 COCO body
  points followed by the 8 LDPose residual endpoints (75 numbers). Plain COCO (51 numbers, no
  residual endpoints) is accepted too.

Everything is converted to one in-memory layout (keypoints.Person): BODY_25 order for the body,
residuals.RESIDUAL_KINDS order for the residual endpoints. What was repaired is listed in
``KeypointsFile.warnings``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .atomic import write_text_atomic
from .keypoints import KeypointsError, KeypointsFile, Person
from .keypoints_check import (
    _check_image_size,
    _check_inside,
    _check_one_per_limb,
    _clamp_confidence,
    _Ctx,
    _optional_str,
    _parse_flat,
    _positive_float,
    _positive_int,
    validate_person,
)
from .layouts import (
    BODY25_NAMES,
    COCO17_NAMES,
    COCO17_TO_BODY25,
    COCO18_TO_BODY25,
    F_AVAILABLE,
    F_FACE,
    F_HAND_L,
    F_HAND_R,
    F_POSE,
    F_RESIDUAL,
    F_SOURCE,
    LDPOSE_COCO_RESIDUAL_ORDER,
    N_BODY25,
    N_FACE,
    N_HAND,
    N_RESIDUAL,
    OLD_FIELD_NAMES,
    OPENPOSE_COCO18_NAMES,
    OTHER_POSE_LAYOUTS,
    POSE_LAYOUTS,
    SOURCE_FORMATS,
)
from .residuals import LDPOSE_NAMES, RESIDUAL_KINDS

# COCO residual position -> our kind index.
_COCO_RESIDUAL_TO_KIND: tuple[int, ...] = tuple(LDPOSE_NAMES.index(n) for n in LDPOSE_COCO_RESIDUAL_ORDER)
_COCO_POINT_NAMES: tuple[str, ...] = COCO17_NAMES + LDPOSE_COCO_RESIDUAL_ORDER

_COCO_AVAILABLE = np.zeros(N_BODY25, dtype=bool)
_COCO_AVAILABLE[list(COCO17_TO_BODY25)] = True


def _load_json(path: str) -> Any:
    ctx = _Ctx(path, None)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM (some Windows tools write one)
    except UnicodeDecodeError as e:
        raise ctx.error(f"not valid JSON: not UTF-8 text (byte {e.start})") from None
    try:
        # an integer literal too long for a float becomes inf, which the field checks report by name and index
        return json.loads(text, parse_int=lambda s: int(s) if len(s.lstrip("-")) <= 300 else float(s))
    except json.JSONDecodeError as e:
        raise ctx.error(f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise ctx.error("not valid JSON: nested too deeply") from None



# Normalised coordinates (OpenPose --keypoint_scale 3, ControlNet pose editors): every labelled body point in
# [0, 1] - with a margin for limbs just outside the frame - and enough of them that it cannot be a person
# drawn in pixels (a pixel-coordinate person inside a 1x1-pixel box is no photo anyone fits).
_NORMALISED_MIN_POINTS = 4
_NORMALISED_RANGE = (-0.1, 1.1)
_CENTRED_RANGE = (-1.1, 1.1)  # --keypoint_scale 4: [-1, 1], refused (not told apart from [0, 1] reliably)


@dataclass
class _RawPerson:
    """One OpenPose person as read, before the file-wide decision on normalised coordinates."""

    pose: np.ndarray  # (n, 3) in the file's layout
    pose_field: str
    layout: int  # points
    residual: np.ndarray
    optional: dict[str, np.ndarray | None]  # hands and face by their (new) field name
    optional_field: dict[str, str]  # ... and the name the file used
    available: np.ndarray | None
    source: str | None


def _image_block(doc: dict[str, Any], ctx: _Ctx, warnings: list[str]):
    """(image path, width, height, focal length, where the size came from) from the header."""
    image_path = width = height = focal = None
    where = None
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
        where = "the file's image block" if width is not None else None
    if width is None and ("canvas_width" in doc or "canvas_height" in doc):
        # ControlNet's OpenPose JSON: the canvas the pose was drawn on is the image.
        try:
            width = _positive_int(doc.get("canvas_width"), ctx, "canvas_width")
            height = _positive_int(doc.get("canvas_height"), ctx, "canvas_height")
            where = "the file's canvas_width/canvas_height"
        except KeypointsError as exc:
            warnings.append(f"{exc}; ignored")
            width = height = None
    camera = doc.get("camera")
    if camera is not None:
        if not isinstance(camera, dict):
            raise ctx.error(f"expected an object, got {type(camera).__name__}", "camera")
        if camera.get("focal_length_px") is not None:
            focal = _positive_float(camera["focal_length_px"], ctx, "camera.focal_length_px")
    return image_path, width, height, focal, where


def _field(entry: dict[str, Any], name: str) -> tuple[str, Any]:
    """(the name the file uses, its value) for an OpenPose array, new name first, then OpenPose < 1.2's."""
    if entry.get(name) is not None or name not in OLD_FIELD_NAMES or OLD_FIELD_NAMES[name] not in entry:
        return name, entry.get(name)
    return OLD_FIELD_NAMES[name], entry[OLD_FIELD_NAMES[name]]


def _layout_error(n: int) -> str:
    expected = ("expected 75 numbers (BODY_25), 54 (OpenPose COCO-18) or 51 (COCO-17): x, y, confidence per point; "
                f"got {n}")
    if n % 3:
        return f"{expected}, not x, y, confidence triples"
    known = OTHER_POSE_LAYOUTS.get(n // 3)
    return f"{expected} = {known}, not read" if known else f"{expected} = {n // 3} points, a layout not read"


def _parse_pose(value: Any, field_name: str, pctx: _Ctx, warnings: list[str]) -> tuple[np.ndarray, int]:
    if not isinstance(value, list):
        raise pctx.error(f"expected a list of 75 numbers (BODY_25 x, y, confidence), got {type(value).__name__}",
                         field_name)
    if not value:  # OpenPose with the body off (--body 0) writes []: a person without body points
        warnings.append(pctx.message("empty: no body keypoints, this person cannot be fitted", field_name))
        return np.zeros((N_BODY25, 3)), N_BODY25
    if isinstance(value[0], list):
        raise pctx.error("expected a flat list x1, y1, c1, x2, ... (OpenPose's layout), got a list of lists",
                         field_name)
    n = len(value)
    if n % 3 or n // 3 not in POSE_LAYOUTS:
        raise pctx.error(_layout_error(n), field_name)
    points = _parse_flat(value, n // 3, field_name, pctx, f"{POSE_LAYOUTS[n // 3][1]} x, y, confidence")
    return points, n // 3


def _optional_points(entry: dict[str, Any], key: str, n: int, what: str, pctx: _Ctx,
                     warnings: list[str]) -> tuple[np.ndarray | None, str]:
    """A hand or face array, or None. The fit does not use them: a malformed one is dropped with a warning."""
    field_name, value = _field(entry, key)
    if value is None or value == []:  # OpenPose writes [] when hands/face detection was off: same as absent
        return None, field_name
    try:
        points = _parse_flat(value, n, field_name, pctx, what)
        return _clamp_confidence(points, field_name, pctx, None, warnings), field_name
    except KeypointsError as exc:
        warnings.append(f"{exc}; this array is dropped (the fit does not use it)")
        return None, field_name


def _read_person(entry: Any, pctx: _Ctx, warnings: list[str]) -> _RawPerson:
    if not isinstance(entry, dict):
        raise pctx.error(f"expected an object, got {type(entry).__name__}")
    pose_field, value = _field(entry, F_POSE)
    if value is None:
        raise pctx.error(f"missing (expected '{F_POSE}', or '{OLD_FIELD_NAMES[F_POSE]}' of OpenPose before 1.2)",
                         F_POSE)
    pose, layout = _parse_pose(value, pose_field, pctx, warnings)
    names = BODY25_NAMES if layout == N_BODY25 else OPENPOSE_COCO18_NAMES if layout == 18 else COCO17_NAMES
    pose = _clamp_confidence(pose, pose_field, pctx, names, warnings)
    residual = np.zeros((N_RESIDUAL, 3))
    if entry.get(F_RESIDUAL) is not None:
        residual = _parse_flat(entry[F_RESIDUAL], N_RESIDUAL, F_RESIDUAL, pctx, "8 residual endpoints x 3")
        residual = _clamp_confidence(residual, F_RESIDUAL, pctx, RESIDUAL_KINDS, warnings)
    optional: dict[str, np.ndarray | None] = {}
    optional_field: dict[str, str] = {}
    for key, n, what in ((F_HAND_L, N_HAND, "21 hand points x 3"), (F_HAND_R, N_HAND, "21 hand points x 3"),
                         (F_FACE, N_FACE, "70 face points x 3")):
        optional[key], optional_field[key] = _optional_points(entry, key, n, what, pctx, warnings)
    available = None
    if entry.get(F_AVAILABLE) is not None and layout == N_BODY25:
        flags = entry[F_AVAILABLE]
        if not isinstance(flags, list) or len(flags) != N_BODY25 or not all(isinstance(f, bool) for f in flags):
            raise pctx.error(f"expected a list of {N_BODY25} booleans", F_AVAILABLE)
        available = np.array(flags, dtype=bool)
    source = entry.get(F_SOURCE) if layout == N_BODY25 else None
    if source is not None and source not in SOURCE_FORMATS:
        raise pctx.error(f"unknown source format {source!r}; expected one of {SOURCE_FORMATS}", F_SOURCE)
    return _RawPerson(pose=pose, pose_field=pose_field, layout=layout, residual=residual, optional=optional,
                      optional_field=optional_field, available=available, source=source)


def _coordinates_kind(raw_people: list[_RawPerson]) -> str:
    """'pixels', 'normalised' ([0, 1]) or 'centred' ([-1, 1]), from the labelled body and residual points."""
    xy = [p.pose[p.pose[:, 2] > 0, :2] for p in raw_people] + [p.residual[p.residual[:, 2] > 0, :2]
                                                               for p in raw_people]
    xy = np.concatenate(xy) if xy else np.zeros((0, 2))
    if len(xy) < _NORMALISED_MIN_POINTS:
        return "pixels"
    lo, hi = xy.min(), xy.max()
    if _NORMALISED_RANGE[0] <= lo and hi <= _NORMALISED_RANGE[1]:
        return "normalised"
    if _CENTRED_RANGE[0] <= lo and hi <= _CENTRED_RANGE[1]:
        return "centred"
    return "pixels"


def _size_for_normalised(path: str, image_path: str | None, size: tuple[int, int] | None, where: str | None,
                         ctx: _Ctx) -> tuple[tuple[int, int], str]:
    if size is not None:
        return size, where or "the image size given"
    from .image import ImageError, image_size
    from .photo import find_photo  # the photo beside the file knows the size (Pillow, imported only here)

    photo = find_photo(path, image_path)
    if photo is not None:
        try:
            return image_size(photo), f"the photo {photo.name}"
        except ImageError as exc:
            raise ctx.error(f"coordinates are normalised to [0, 1] and the photo that would give the image size "
                            f"cannot be read ({exc}); pass the image size (--image-size WIDTHxHEIGHT)",
                            F_POSE) from None
    raise ctx.error("coordinates are normalised to [0, 1] (e.g. OpenPose --keypoint_scale 3) and the image size "
                    "is unknown: pass the image size (--image-size WIDTHxHEIGHT, or 'image': {'width', 'height'} "
                    "in the file) or put the photo beside the file", F_POSE)


def _to_body25(raw: _RawPerson) -> tuple[np.ndarray, np.ndarray, str]:
    """(BODY_25 points, availability, source format) from the file's layout."""
    if raw.layout == N_BODY25:
        available = raw.available if raw.available is not None else np.ones(N_BODY25, dtype=bool)
        return raw.pose, available, raw.source or "openpose"
    table = COCO18_TO_BODY25 if raw.layout == 18 else COCO17_TO_BODY25
    body25 = np.zeros((N_BODY25, 3))
    body25[list(table)] = raw.pose
    available = np.zeros(N_BODY25, dtype=bool)
    available[list(table)] = True
    return body25, available, POSE_LAYOUTS[raw.layout][0]


def _read_openpose(doc: dict[str, Any], path: str, image_size: tuple[int, int] | None) -> KeypointsFile:
    ctx = _Ctx(path, None)
    warnings: list[str] = []
    image_path, width, height, focal, where = _image_block(doc, ctx, warnings)
    if image_size is not None:
        (width, height), where = image_size, "the image size given"
    size = (width, height) if width is not None and height is not None else None

    if "people" not in doc:
        raise ctx.error("missing (expected OpenPose JSON with a 'people' list, "
                        "or a COCO/LDPose file with 'annotations')", "people")
    people_raw = doc["people"]
    if not isinstance(people_raw, list):
        raise ctx.error(f"expected a list, got {type(people_raw).__name__}", "people")
    raw_people = [_read_person(entry, _Ctx(path, p), warnings) for p, entry in enumerate(people_raw)]

    kind = _coordinates_kind(raw_people)
    if kind == "centred":
        raise ctx.error("coordinates are normalised to [-1, 1] (OpenPose --keypoint_scale 4), which this reader "
                        "does not take: write pixels (--keypoint_scale 0) or [0, 1] (--keypoint_scale 3)", F_POSE)
    if kind == "normalised":
        size, where = _size_for_normalised(path, image_path, size, where, ctx)
        width, height = size
        scale = np.array([width, height, 1.0])
        for raw in raw_people:
            raw.pose, raw.residual = raw.pose * scale, raw.residual * scale
            raw.optional = {k: None if v is None else v * scale for k, v in raw.optional.items()}
        warnings.append(ctx.message(f"coordinates are normalised to [0, 1]: scaled to pixels by the image size "
                                    f"{width}x{height} (from {where})", F_POSE))

    people = []
    for p, raw in enumerate(raw_people):
        pctx = _Ctx(path, p)
        for key, points in raw.optional.items():  # far outside the image, or NaN: dropped, never fatal
            if points is None:
                continue
            try:
                _check_inside(points, points[:, 2] > 0, raw.optional_field[key], pctx, size, None)
            except KeypointsError as exc:
                warnings.append(f"{exc}; this array is dropped (the fit does not use it)")
                raw.optional[key] = None
        body25, available, source = _to_body25(raw)
        person = Person(body25=body25, residual=raw.residual, hand_left=raw.optional[F_HAND_L],
                        hand_right=raw.optional[F_HAND_R], face=raw.optional[F_FACE], body25_available=available,
                        source_format=source)
        try:
            validate_person(person, size, path=path, person_index=p)
        except KeypointsError as exc:
            if raw.layout != N_BODY25 and exc.field == F_POSE and exc.index is not None:
                # name the point as the file has it (COCO-18 index), not its BODY_25 place
                index = list(COCO18_TO_BODY25 if raw.layout == 18 else COCO17_TO_BODY25).index(exc.index)
                raise KeypointsError(exc.detail, path=path, person=p, field=raw.pose_field, index=index) from None
            if exc.field == F_POSE and raw.pose_field != F_POSE:
                raise KeypointsError(exc.detail, path=path, person=p, field=raw.pose_field,
                                     index=exc.index) from None
            raise
        people.append(person)
    return KeypointsFile(path=path, people=people, image_path=image_path, image_width=width,
                         image_height=height, focal_length_px=focal, warnings=warnings)


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
        if isinstance(image_id, (list, dict)):
            raise ctx.error(f"expected a number or a string, got {type(image_id).__name__}", f"images[{i}].id")
        info[image_id] = (_optional_str(img.get("file_name"), ctx, f"images[{i}].file_name"), width, height)
        order.append(image_id)
    groups: dict[Any, list[tuple[int, dict[str, Any]]]] = {image_id: [] for image_id in order}
    for a, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise _Ctx(path, a).error(f"expected an object, got {type(ann).__name__}")
        image_id = ann.get("image_id")
        if isinstance(image_id, (list, dict)):
            raise _Ctx(path, a).error(f"expected a number or a string, got {type(image_id).__name__}", "image_id")
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
    write_text_atomic(path, json.dumps(doc, allow_nan=False) + "\n")
