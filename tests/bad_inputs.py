"""The bad-input corpus that tests/test_bad_inputs.py runs through `resihmr run`.

Every case builds its files in an empty folder and says how the command line must answer: the exit status and a
regex that one line of stderr must match (each error is one line naming the file; never a traceback). Classes:

    json     malformed JSON (empty, truncated, not UTF-8, wrong top level, 100 000 nested brackets, ...)
    types    wrong types (people a dict, a point a string or `true`, image/camera blocks of the wrong kind, ...)
    numbers  numbers no float holds (an integer literal of 401 or 5000 digits, 1e400) and absurd values
    nan      NaN / Infinity literals and "NaN" strings
    lengths  arrays of the wrong length
    coco     COCO/LDPose oddities (image_id a list or an object, annotations not a list, visibility 3, ...)
    model    hostile body-model files (0 bytes, .npy, text, truncated zip, faces empty/strings/out of range, ...)
    paths    odd paths (`..`, absolute, spaces, unicode, a leading dot, separators in names, symlink loops,
             --out being the input folder, an output folder that is a symlink out of --out)
    flags    bad flags (--focal 0/-5/nan, --threshold -1/nan, --batch-size 0/-1, --formats '', ...)
    photo    a keypoints file naming a photo where an output would be written

Disk-full, exporter failures and interrupts need a real fit or a process to kill; they are in the test module.
Good inputs here have no people (`{"image": {...}, "people": []}`): they run through the whole command in
milliseconds, so only the few cases that must fit somebody pay for a fit.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo" / "keypoints.json"
OK, FAILED, USAGE = 0, 1, 2


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    build: Callable[[Path], list[str]]  # writes the case's files under the folder, returns main()'s argv
    status: int
    message: str | None  # a regex one line of stderr must match (re.search)
    complete: tuple[str, ...] = ()  # output folders (relative to the case's folder) that must be complete
    check: Callable[[Path], None] | None = None  # further checks, given the folder
    cwd: str | None = None  # run from this sub-folder of the case's folder
    output: str | None = None  # a regex one line of stdout must match


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def no_people(**image) -> dict:
    """A valid keypoints file without people: the command runs end to end without fitting anybody."""
    return {"image": {"width": 64, "height": 48, **image}, "people": []}


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


def raw_number(literal: str, change: Callable[[dict, float], None], doc: dict | None = None) -> str:
    """The example (or `doc`) as JSON text with one number replaced by `literal`, exactly as written."""
    sentinel = 987654.3125
    doc = example() if doc is None else doc
    change(doc, sentinel)
    text = json.dumps(doc)
    assert text.count(repr(sentinel)) == 1
    return text.replace(repr(sentinel), literal)


def changed(change: Callable[[dict], None], doc: dict | None = None) -> dict:
    doc = example() if doc is None else doc
    change(doc)
    return doc


def _set(path: str, value):
    """A change setting a dotted/indexed path, e.g. "people.0.pose_keypoints_2d.3"."""
    def change(doc, v=value):
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = v
        else:
            node[last] = v
    return change


def _del(path: str):
    def change(doc):
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]
    return change


def _pose(n: int) -> Callable[[dict], None]:
    return _set("people.0.pose_keypoints_2d", [0.5] * n)


def coco(annotations=None, images=None, **extra) -> dict:
    keypoints = [10.0, 10.0, 2.0] * 17 + [0.0, 0.0, 0.0] * 8
    doc = {"images": [{"id": 1, "file_name": "p.png", "width": 64, "height": 48}] if images is None else images,
           "annotations": [{"image_id": 1, "keypoints": keypoints}] if annotations is None else annotations}
    doc.update(extra)
    return doc


# ---------------------------------------------------------------------------------------------------------------
# Cases on one keypoints file: it fails to read, the run exits 1 and says so on one line naming the file


def keypoints_case(case_id: str, group: str, content, detail: str) -> Case:
    def build(folder: Path) -> list[str]:
        data = content() if callable(content) else content
        path = write(folder / "in" / f"{case_id}.json", data)
        return ["run", str(path), "--out", str(folder / "out"), "--formats", "json"]

    return Case(case_id, group, build, FAILED, rf"^error: \S*{re.escape(case_id)}\.json: .*{detail}")


def tolerated_case(case_id: str, change: Callable[[dict], None], warning: str) -> Case:
    """Malformed but repairable (an optional array dropped): written, exit 0, a warning line naming the field. The
    person's pose is all zeros (nobody to fit: the run stays fast; the person is listed as not fitted)."""
    def build(folder: Path) -> list[str]:
        doc = changed(change, changed(_set("people.0.pose_keypoints_2d", [0.0] * 75)))
        path = write(folder / "in" / f"{case_id}.json", doc)
        return ["run", str(path), "--out", str(folder / "out"), "--formats", "json"]

    return Case(case_id, "lengths", build, OK, None, complete=(f"out/{case_id}",),
                output=rf"^    warning: \S*{re.escape(case_id)}\.json: .*{warning}")


POSE = "pose_keypoints_2d"
RES = "residual_keypoints_2d"

KEYPOINT_CASES = [
    # json
    keypoints_case("empty_file", "json", b"", "not valid JSON"),
    keypoints_case("not_json", "json", "{ not json", "not valid JSON"),
    keypoints_case("truncated", "json", lambda: EXAMPLE.read_text()[:200], "not valid JSON"),
    keypoints_case("latin1_bytes", "json", '{"people": [], "x": "caf\xe9"}'.encode("latin-1"), "UTF-8"),
    keypoints_case("utf16", "json", json.dumps(no_people()).encode("utf-16"), "(UTF-8|not valid JSON)"),
    keypoints_case("top_level_list", "json", [], "top level is a JSON list"),
    keypoints_case("top_level_string", "json", "\"hello\"", "top level is a JSON str"),
    keypoints_case("top_level_null", "json", "null", "top level is a JSON NoneType"),
    keypoints_case("trailing_garbage", "json", json.dumps(no_people()) + " xyz", "not valid JSON: Extra data"),
    keypoints_case("nested_100000", "json", "[" * 100_000 + "]" * 100_000, "(recursion|nest|deep|JSON)"),
    keypoints_case("nul_bytes", "json", b"\x00" * 64, "not valid JSON"),
    keypoints_case("single_quotes", "json", "{'people': []}", "not valid JSON"),
    keypoints_case("no_people_key", "json", {"version": 1.3}, "'people'"),
    # types
    keypoints_case("people_dict", "types", {"people": {"0": {}}}, "field 'people': expected a list"),
    keypoints_case("people_string", "types", {"people": "anna"}, "field 'people': expected a list"),
    keypoints_case("person_list", "types", {"people": [[1, 2, 3]]}, "person 0: expected an object"),
    keypoints_case("person_null", "types", {"people": [None]}, "person 0: expected an object"),
    keypoints_case("pose_missing", "types", {"people": [{}]}, f"person 0, field '{POSE}'"),
    keypoints_case("pose_string", "types", lambda: changed(_set(f"people.0.{POSE}", "1,2,3")),
                   f"person 0, field '{POSE}': expected a list"),
    keypoints_case("pose_object", "types", lambda: changed(_set(f"people.0.{POSE}", {"x": 1})),
                   f"person 0, field '{POSE}': expected a list"),
    keypoints_case("value_string", "types", lambda: changed(_set(f"people.0.{POSE}.3", "12")),
                   f"person 0, field '{POSE}', index 1: x value '12' is not a number"),
    keypoints_case("value_true", "types", lambda: changed(_set(f"people.0.{POSE}.4", True)),
                   f"person 0, field '{POSE}', index 1: y value True is not a number"),
    keypoints_case("value_null", "types", lambda: changed(_set(f"people.0.{POSE}.5", None)),
                   f"person 0, field '{POSE}', index 1: confidence value None is not a number"),
    keypoints_case("value_list", "types", lambda: changed(_set(f"people.0.{POSE}.0", [1, 2])),
                   f"person 0, field '{POSE}'.*(\\[1, 2\\] is not a number|list of lists)"),
    keypoints_case("image_list", "types", lambda: changed(_set("image", [1080, 1920])),
                   "field 'image': expected an object"),
    keypoints_case("width_string", "types", lambda: changed(_set("image.width", "1080")),
                   "field 'image.width': must be a positive integer"),
    keypoints_case("width_negative", "types", lambda: changed(_set("image.width", -1080)),
                   "field 'image.width': must be a positive integer"),
    keypoints_case("width_zero", "types", lambda: changed(_set("image.width", 0)),
                   "field 'image.width': must be a positive integer"),
    keypoints_case("width_fraction", "types", lambda: changed(_set("image.width", 1080.5)),
                   "field 'image.width': must be a positive integer"),
    keypoints_case("width_alone", "types", lambda: changed(_del("image.height")), "image.height"),
    keypoints_case("image_path_number", "types", lambda: changed(_set("image.path", 7)),
                   "field 'image.path': must be a string"),
    keypoints_case("camera_string", "types", lambda: changed(_set("camera", "canon")),
                   "field 'camera': expected an object"),
    keypoints_case("focal_zero", "types", lambda: changed(_set("camera.focal_length_px", 0)),
                   "field 'camera.focal_length_px': must be a positive finite number"),
    keypoints_case("focal_negative", "types", lambda: changed(_set("camera.focal_length_px", -5)),
                   "field 'camera.focal_length_px': must be a positive finite number"),
    keypoints_case("focal_string", "types", lambda: changed(_set("camera.focal_length_px", "1600")),
                   "field 'camera.focal_length_px': must be a positive finite number"),
    keypoints_case("available_not_bools", "types", lambda: changed(_set("people.0.body25_available", [1] * 25)),
                   "person 0, field 'body25_available'"),
    keypoints_case("source_unknown", "types", lambda: changed(_set("people.0.source_format", "kinect")),
                   "person 0, field 'source_format'"),
    keypoints_case("confidence_above_one", "types", lambda: changed(_set(f"people.0.{POSE}.2", 2.0)),
                   f"person 0, field '{POSE}', index 0: .*confidence 2 is outside"),
    keypoints_case("two_kinds_one_limb", "types",
                   lambda: changed(_set(f"people.0.{RES}", [0.0] * 18 + [500.0, 1500.0, 1.0, 500.0, 1600.0, 1.0])),
                   f"person 0, field '{RES}', index 7: .*at most one residual kind per limb"),
    # numbers
    keypoints_case("pose_401_digits", "numbers",
                   lambda: raw_number("1" + "0" * 400, lambda d, s: d["people"][0][POSE].__setitem__(3, s)),
                   f"person 0, field '{POSE}', index 1: x value .*not finite"),
    keypoints_case("pose_5000_digits", "numbers",
                   lambda: raw_number("9" * 5000, lambda d, s: d["people"][0][POSE].__setitem__(4, s)),
                   f"person 0, field '{POSE}', index 1: y value .*not finite"),
    keypoints_case("residual_negative_401_digits", "numbers",
                   lambda: raw_number("-1" + "0" * 400, lambda d, s: d["people"][0][RES].__setitem__(0, s)),
                   f"person 0, field '{RES}', index 0: x value .*not finite"),
    keypoints_case("focal_401_digits", "numbers",
                   lambda: raw_number("1" + "0" * 400, lambda d, s: d["camera"].__setitem__("focal_length_px", s)),
                   "camera.focal_length_px.*(not finite|positive finite)"),
    keypoints_case("width_401_digits", "numbers",
                   lambda: raw_number("1" + "0" * 400, lambda d, s: d["image"].__setitem__("width", s)),
                   "image.width.*(not finite|positive integer|too large|at most)"),
    keypoints_case("pose_1e400", "numbers",
                   lambda: raw_number("1e400", lambda d, s: d["people"][0][POSE].__setitem__(6, s)),
                   f"person 0, field '{POSE}', index 2: x value inf is not finite"),
    keypoints_case("focal_1e400", "numbers",
                   lambda: raw_number("1e400", lambda d, s: d["camera"].__setitem__("focal_length_px", s)),
                   "field 'camera.focal_length_px': must be a positive finite number"),
    keypoints_case("confidence_1e308", "numbers",
                   lambda: raw_number("1e308", lambda d, s: d["people"][0][POSE].__setitem__(2, s)),
                   f"person 0, field '{POSE}', index 0: .*confidence 1e\\+308 is outside"),
    keypoints_case("x_1e300", "numbers",
                   lambda: raw_number("1e300", lambda d, s: d["people"][0][POSE].__setitem__(3, s)),
                   f"person 0, field '{POSE}', index 1: .*far outside"),
    # nan
    keypoints_case("nan_string", "nan", lambda: changed(_set(f"people.0.{POSE}.3", "NaN")),
                   f"person 0, field '{POSE}', index 1: x value 'NaN' is not a number"),
    keypoints_case("nan_literal", "nan", lambda: raw_number("NaN", lambda d, s: d["people"][0][POSE].__setitem__(3, s)),
                   f"person 0, field '{POSE}', index 1: x value nan is not finite"),
    keypoints_case("infinity_literal", "nan",
                   lambda: raw_number("Infinity", lambda d, s: d["people"][0][RES].__setitem__(4, s)),
                   f"person 0, field '{RES}', index 1: y value inf is not finite"),
    keypoints_case("focal_minus_infinity", "nan",
                   lambda: raw_number("-Infinity", lambda d, s: d["camera"].__setitem__("focal_length_px", s)),
                   "field 'camera.focal_length_px': must be a positive finite number"),
    keypoints_case("focal_nan", "nan",
                   lambda: raw_number("NaN", lambda d, s: d["camera"].__setitem__("focal_length_px", s)),
                   "field 'camera.focal_length_px': must be a positive finite number"),
    keypoints_case("width_nan_string", "nan", lambda: changed(_set("image.width", "nan")),
                   "field 'image.width': must be a positive integer"),
    keypoints_case("width_nan_literal", "nan",
                   lambda: raw_number("NaN", lambda d, s: d["image"].__setitem__("width", s)),
                   "field 'image.width': must be a positive integer"),
    # lengths
    keypoints_case("pose_74", "lengths", lambda: changed(_pose(74)), f"person 0, field '{POSE}': .*\\b74\\b"),
    keypoints_case("pose_76", "lengths", lambda: changed(_pose(76)), f"person 0, field '{POSE}': .*\\b76\\b"),
    keypoints_case("pose_53", "lengths", lambda: changed(_pose(53)), f"person 0, field '{POSE}': .*\\b53\\b"),
    keypoints_case("residual_23", "lengths", lambda: changed(_set(f"people.0.{RES}", [0.0] * 23)),
                   f"person 0, field '{RES}': expected 24 numbers.*got 23"),
    keypoints_case("available_24", "lengths", lambda: changed(_set("people.0.body25_available", [True] * 24)),
                   "person 0, field 'body25_available'"),
    # tolerated: the reader drops a malformed optional array with a warning, the file is written
    tolerated_case("hand_62", _set("people.0.hand_left_keypoints_2d", [0.0] * 62),
                   "person 0, field 'hand_left_keypoints_2d'.*62"),
    tolerated_case("face_211", _set("people.0.face_keypoints_2d", [0.0] * 211),
                   "person 0, field 'face_keypoints_2d'.*211"),
    tolerated_case("pose_empty", _pose(0), f"person 0, field '{POSE}'"),
    # coco
    keypoints_case("coco_image_id_list", "coco", lambda: coco([{"image_id": [1], "keypoints": [0.0] * 75}]),
                   "(image_id|unhashable)"),
    keypoints_case("coco_image_id_object", "coco", lambda: coco([{"image_id": {"id": 1}, "keypoints": [0.0] * 75}]),
                   "(image_id|unhashable)"),
    keypoints_case("coco_annotations_dict", "coco", lambda: coco({"0": {}}), "field 'annotations': expected a list"),
    keypoints_case("coco_annotations_string", "coco", lambda: coco("none"), "field 'annotations': expected a list"),
    keypoints_case("coco_annotation_number", "coco", lambda: coco([5]), "person 0: expected an object"),
    keypoints_case("coco_keypoints_50", "coco", lambda: coco([{"image_id": 1, "keypoints": [0.0] * 50}]),
                   "person 0, field 'keypoints': expected 75 or 51 numbers.*got 50"),
    keypoints_case("coco_visibility_3", "coco",
                   lambda: coco([{"image_id": 1, "keypoints": [10.0, 10.0, 3.0] * 25}]),
                   "person 0, field 'keypoints', index 0: .*visibility 3 is not 0, 1 or 2"),
    keypoints_case("coco_keypoints_missing", "coco", lambda: coco([{"image_id": 1}]),
                   "person 0, field 'keypoints'"),
    keypoints_case("coco_images_dict", "coco", lambda: coco(images={"id": 1}), "field 'images': expected a list"),
    keypoints_case("coco_image_width_string", "coco",
                   lambda: coco(images=[{"id": 1, "width": "64", "height": 48}]), r"images\[0\]\.width"),
    keypoints_case("coco_two_images", "coco",
                   lambda: coco([{"image_id": 1, "keypoints": [10.0, 10.0, 2.0] * 17 + [0.0] * 24},
                                 {"image_id": 2, "keypoints": [10.0, 10.0, 2.0] * 17 + [0.0] * 24}],
                                [{"id": 1, "width": 64, "height": 48}, {"id": 2, "width": 64, "height": 48}]),
                   "2 images"),
    keypoints_case("coco_two_kinds_one_limb", "coco",
                   lambda: coco([{"image_id": 1, "keypoints": [10.0, 10.0, 2.0] * 17 + [10.0, 10.0, 2.0] * 8}]),
                   "person 0, field 'keypoints', index \\d+: .*at most one residual kind per limb"),
]


# ---------------------------------------------------------------------------------------------------------------
# Hostile body-model files: refused before anything runs (exit 2), one line naming the file and the key


@lru_cache(maxsize=1)
def _default_arrays() -> dict[str, np.ndarray]:
    from resihmr_blender.core.body_model import DEFAULT_MODEL_PATH

    with np.load(DEFAULT_MODEL_PATH, allow_pickle=False) as raw:
        return {k: raw[k] for k in raw.files}


def model_variant(**changes) -> Callable[[Path], None]:
    """The embedded body's arrays with keys replaced (None = removed), written as .npz."""
    def make(path: Path) -> None:
        data = {k: v for k, v in _default_arrays().items() if changes.get(k, 0) is not None}
        data.update({k: v for k, v in changes.items() if v is not None})
        with open(path, "wb") as handle:  # np.savez would add '.npz' to a name without it
            np.savez(handle, **data)
    return make


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _npy(path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, _default_arrays()["v_template"])


def _truncated(path: Path) -> None:
    from resihmr_blender.core.body_model import DEFAULT_MODEL_PATH

    path.write_bytes(DEFAULT_MODEL_PATH.read_bytes()[:300_000])


def _damaged_member(path: Path) -> None:
    """A zip whose central directory is fine but whose `f` member is garbage."""
    model_variant()(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("surface_keypoint_vertex_ids.npy", b"\x93NUMPY garbage")


def model_case(case_id: str, make: Callable[[Path], None], detail: str, name: str = "model.npz") -> Case:
    def build(folder: Path) -> list[str]:
        model = folder / "models" / name
        model.parent.mkdir(parents=True, exist_ok=True)
        make(model)
        good = write(folder / "in" / "nobody.json", no_people())
        return ["run", str(good), "--out", str(folder / "out"), "--model", str(model)]

    return Case(f"model_{case_id}", "model", build, USAGE, rf"^error: \S*{re.escape(name)}: {detail}")


V = 13718
MODEL_CASES = [
    model_case("zero_bytes", _bytes(b""), r"is empty \(0 bytes\)"),
    model_case("npy_named_npz", _npy, "is a single .npy array, not an .npz archive"),
    model_case("plain_npy", _npy, "is a single .npy array, not an .npz archive", name="SMPLX_NEUTRAL.npy"),
    model_case("text", _bytes(b"hello, I am not a model"), "not an .npz file"),
    model_case("truncated_zip", _truncated, "not a readable .npz file"),
    model_case("damaged_member", _damaged_member, "key 'surface_keypoint_vertex_ids' cannot be read"),
    model_case("pickle_inside", _bytes(b"\x80\x04K\x01."), "holds pickled data.*refused"),
    model_case("pkl", _bytes(b"\x80\x04K\x01."), r"\.pkl model files are refused because unpickling can run code",
               name="SMPLX_NEUTRAL.pkl"),
    model_case("folder", lambda path: path.mkdir(), "is a folder"),
    model_case("missing", lambda path: None, "body model file not found"),
    model_case("empty_zip", lambda path: zipfile.ZipFile(path, "w").close(), "missing key 'v_template'"),
    model_case("faces_empty", model_variant(f=np.zeros((0, 3), np.int64)), r"key 'f' is empty"),
    model_case("faces_strings", model_variant(f=np.array([["a", "b", "c"]])),
               "key 'f' holds <U1 values, expected integers"),
    model_case("faces_float", model_variant(f=np.ones((10, 3))), "key 'f' holds float64 values, expected integers"),
    model_case("faces_out_of_range", model_variant(f=np.array([[0, 1, V]])), f"key 'f' face 0 uses vertex {V}"),
    model_case("faces_negative", model_variant(f=np.array([[0, 1, 2], [0, -1, 2]])), "key 'f' face 1 uses vertex -1"),
    model_case("faces_missing", model_variant(f=None), "missing key 'f'"),
    model_case("faces_wrong_shape", model_variant(f=np.zeros((10, 4), np.int64)), r"key 'f' has shape \(10, 4\)"),
    model_case("vertices_empty", model_variant(v_template=np.zeros((0, 3), np.float32)), "key 'v_template' is empty"),
    model_case("vertices_nan", model_variant(v_template=np.full((V, 3), np.nan, np.float32)),
               "key 'v_template' contains NaN"),
    model_case("vertices_strings", model_variant(v_template=np.full((V, 3), "x")), "key 'v_template' holds <U1"),
    model_case("regressor_strings", model_variant(J_regressor=np.full((55, V), "x")), "key 'J_regressor' holds <U1"),
    model_case("weights_shape", model_variant(weights=np.zeros((V, 24))), r"key 'weights' has shape \(13718, 24\)"),
    model_case("weights_object", model_variant(weights=np.array([{"a": 1}], dtype=object)),
               "key 'weights' is a pickled object array"),
    model_case("posedirs_inf", model_variant(posedirs=np.full((V, 3, 486), np.inf, np.float32)),
               "key 'posedirs' contains NaN or infinite"),
    model_case("kintree_other_tree", model_variant(kintree_table=np.zeros((2, 55), np.int64)),
               "key 'kintree_table' is not the SMPL-X tree"),
    model_case("shapedirs_complex", model_variant(shapedirs=np.zeros((V, 3, 20), np.complex64)),
               "key 'shapedirs' holds complex64"),
    model_case("surface_ids_out_of_range", model_variant(surface_keypoint_names=np.array(["nose"]),
                                                         surface_keypoint_vertex_ids=np.array([V + 5])),
               r"has 13718 vertices but the surface keypoints need vertex ids 6\.\.13723"),
]


# ---------------------------------------------------------------------------------------------------------------
# Flags: refused before anything runs, exit 2, one line


def flag_case(case_id: str, flags: list[str], detail: str) -> Case:
    def build(folder: Path) -> list[str]:
        good = write(folder / "in" / "nobody.json", no_people())
        return ["run", str(good), "--out", str(folder / "out"), *flags]

    return Case(f"flag_{case_id}", "flags", build, USAGE, detail)


FLAG_CASES = [
    flag_case("focal_0", ["--focal", "0"], "argument --focal: must be a positive finite number, got '0'"),
    flag_case("focal_minus_5", ["--focal=-5"], "argument --focal: must be a positive finite number, got '-5'"),
    flag_case("focal_nan", ["--focal", "nan"], "argument --focal: must be a positive finite number, got 'nan'"),
    flag_case("focal_inf", ["--focal", "inf"], "argument --focal: must be a positive finite number, got 'inf'"),
    flag_case("focal_word", ["--focal", "wide"], "argument --focal: must be a number, got 'wide'"),
    flag_case("threshold_minus_1", ["--threshold=-1"], "argument --threshold: must be a finite number >= 0"),
    flag_case("threshold_nan", ["--threshold", "nan"], "argument --threshold: must be a finite number >= 0"),
    flag_case("batch_size_0", ["--batch-size", "0"], "argument --batch-size: must be at least 1, got '0'"),
    flag_case("batch_size_minus_1", ["--batch-size=-1"], "argument --batch-size: must be at least 1, got '-1'"),
    flag_case("batch_size_fraction", ["--batch-size", "1.5"], "argument --batch-size: must be a whole number"),
    flag_case("workers_0", ["--workers", "0"], "argument --workers: must be at least 1"),
    flag_case("threads_minus_1", ["--threads=-1"], "argument --threads: must be 0 or more"),
    flag_case("formats_empty", ["--formats", ""], "^error: --formats is empty"),
    flag_case("formats_commas", ["--formats", ",,"], "^error: --formats is empty"),
    flag_case("formats_unknown", ["--formats", "json,obj"], "^error: --formats obj not available"),
    flag_case("image_size_zero", ["--image-size", "0x5"], "--image-size must look like 1080x1920"),
    flag_case("image_size_word", ["--image-size", "big"], "--image-size must look like 1080x1920"),
    flag_case("unknown_flag", ["--frobnicate"], "unrecognized arguments: --frobnicate"),
    flag_case("executor_unknown", ["--executor", "slurm"], "argument --executor: invalid choice"),
]


def _out_is_file(folder: Path) -> list[str]:
    good = write(folder / "in" / "nobody.json", no_people())
    write(folder / "out", "I am a file")
    return ["run", str(good), "--out", str(folder / "out")]


def _out_empty(folder: Path) -> list[str]:
    good = write(folder / "in" / "nobody.json", no_people())
    return ["run", str(good), "--out", ""]


def _missing_input(folder: Path) -> list[str]:
    return ["run", str(folder / "in" / "nowhere.json"), "--out", str(folder / "out")]


def _empty_folder(folder: Path) -> list[str]:
    (folder / "in").mkdir()
    write(folder / "in" / "notes.txt", "not a keypoints file")
    return ["run", str(folder / "in"), "--out", str(folder / "out")]


FLAG_CASES += [
    Case("flag_out_is_file", "flags", _out_is_file, USAGE, r"^error: --out \S+ is a file, not a folder"),
    Case("flag_out_empty", "flags", _out_empty, USAGE, "^error: --out is empty"),
    Case("flag_missing_input", "flags", _missing_input, USAGE, r"^error: \S+nowhere\.json: no such file or folder"),
    Case("flag_folder_without_inputs", "flags", _empty_folder, USAGE, r"^error: \S+in: folder holds no \.json"),
]


# ---------------------------------------------------------------------------------------------------------------
# Odd paths: written where they belong (inside --out, under a safe name), nothing else touched


def _complete(folder: Path) -> bool:
    return (folder / ".resihmr-done.json").is_file() and (folder / "result.json").is_file()


def _parent_relative(folder: Path) -> list[str]:
    write(folder / "subject" / "keypoints.json", no_people())
    (folder / "subject" / "work").mkdir()
    return ["run", "../keypoints.json", "--out", "out"]  # from subject/work


def _check_parent_relative(folder: Path) -> None:
    work = folder / "subject" / "work"
    assert _complete(work / "out" / "subject"), sorted(work.rglob("*"))
    assert sorted(p.name for p in work.iterdir()) == ["out"]  # nothing written in the working folder
    assert sorted(p.name for p in (work / "out").iterdir()) == ["subject"]
    assert sorted(p.name for p in (folder / "subject").iterdir()) == ["keypoints.json", "work"]


def _dot_dot_names(folder: Path) -> list[str]:
    write(folder / "in" / "..json", no_people())  # stem '.', a leading dot
    write(folder / "in" / "...json", no_people())  # stem '..'
    return ["run", str(folder / "in" / "..json"), str(folder / "in" / "...json"), "--out", str(folder / "out")]


def _check_dot_dot_names(folder: Path) -> None:
    names = sorted(p.name for p in (folder / "out").iterdir())
    assert names == ["input", "input_2"], names
    assert all(_complete(folder / "out" / n) for n in names)
    assert sorted(p.name for p in folder.iterdir()) == ["in", "out"]


def _absolute(folder: Path) -> list[str]:
    good = write(folder / "in" / "anna.json", no_people())
    return ["run", str(good.resolve()), "--out", str((folder / "out").resolve())]


def _spaces(folder: Path) -> list[str]:
    write(folder / "my inputs" / " photo 1 .json", no_people())
    return ["run", str(folder / "my inputs"), "--out", str(folder / "my out")]


def _unicode(folder: Path) -> list[str]:
    write(folder / "in" / "Zoë 名前" / "keypoints.json", no_people())
    write(folder / "in" / "Łukasz.json", no_people())
    return ["run", str(folder / "in"), "--out", str(folder / "out")]


def _separators(folder: Path) -> list[str]:
    write(folder / "in" / "a\\b.json", no_people())
    write(folder / "in" / "tab\there\nline.json", no_people())
    return ["run", str(folder / "in"), "--out", str(folder / "out")]


def _check_separators(folder: Path) -> None:
    names = sorted(p.name for p in (folder / "out").iterdir())
    assert names == ["a_b", "tab_here_line"], names


def _symlink_loop(folder: Path) -> list[str]:
    write(folder / "in" / "anna.json", no_people())
    os.symlink("loop.json", folder / "in" / "loop.json")
    os.symlink(".", folder / "in" / "again")  # a folder leading back to itself
    return ["run", str(folder / "in"), "--out", str(folder / "out")]


def _symlink_loop_only(folder: Path) -> list[str]:
    (folder / "in").mkdir()
    os.symlink("loop.json", folder / "in" / "loop.json")
    return ["run", str(folder / "in" / "loop.json"), "--out", str(folder / "out")]


def _out_is_input_folder(folder: Path) -> list[str]:
    write(folder / "in" / "anna.json", no_people())
    write(folder / "in" / "ben" / "keypoints.json", no_people())
    return ["run", str(folder / "in"), "--out", str(folder / "in")]


def _check_out_is_input_folder(folder: Path) -> None:
    from resihmr_blender.cli import main

    inputs = folder / "in"
    assert _complete(inputs / "anna") and _complete(inputs / "ben")
    # again: the inputs are still found (their own outputs are not), and --resume finds both complete
    assert main(["run", str(inputs), "--out", str(inputs), "--resume"]) == OK
    assert sorted(p.name for p in inputs.iterdir()) == ["anna", "anna.json", "ben"]
    assert sorted(p.name for p in (inputs / "ben").iterdir()) == [".resihmr-done.json", "keypoints.json", "mask.png",
                                                                  "overlay.png", "result.json"]


def _out_folder_symlink_outside(folder: Path) -> list[str]:
    write(folder / "in" / "anna.json", no_people())
    (folder / "elsewhere").mkdir()
    (folder / "out").mkdir()
    os.symlink(folder / "elsewhere", folder / "out" / "anna")
    return ["run", str(folder / "in"), "--out", str(folder / "out")]


def _check_nothing_elsewhere(folder: Path) -> None:
    assert list((folder / "elsewhere").iterdir()) == []


def _same_names(folder: Path) -> list[str]:
    write(folder / "in" / "anna.json", no_people())
    write(folder / "in" / "anna" / "keypoints.json", no_people())
    write(folder / "in" / "ANNA.json", no_people())
    return ["run", str(folder / "in"), str(folder / "in" / "anna.json"), "--out", str(folder / "out")]


def _check_same_names(folder: Path) -> None:
    names = sorted(p.name for p in (folder / "out").iterdir())
    assert names == ["ANNA", "anna_2", "anna_3"], names  # the file named twice runs once


def _hidden_and_outputs_skipped(folder: Path) -> list[str]:
    write(folder / "in" / "anna.json", no_people())
    write(folder / "in" / ".hidden.json", "{ not json")
    write(folder / "in" / "old" / "result.json", '{"format": "resihmr-result/1", "people": []}')
    write(folder / "in" / "old" / ".result.x1y2.resihmr-tmp.json", "")
    return ["run", str(folder / "in"), "--out", str(folder / "in" / "old")]


def _check_hidden(folder: Path) -> None:
    assert _complete(folder / "in" / "old" / "anna")
    assert not (folder / "in" / "old" / ".result.x1y2.resihmr-tmp.json").exists()  # a killed run's temp file
    assert (folder / "in" / ".hidden.json").exists()


def _fifo(folder: Path) -> list[str]:
    (folder / "in").mkdir()
    os.mkfifo(folder / "in" / "pipe.json")
    return ["run", str(folder / "in" / "pipe.json"), "--out", str(folder / "out")]


def _photo_without_detect(folder: Path) -> list[str]:
    photo = write(folder / "in" / "photo.png", b"\x89PNG not decoded")
    return ["run", str(photo), "--out", str(folder / "out")]


def paths_case(case_id: str, build, status: int, message: str | None, complete: tuple[str, ...] = (),
               check=None, cwd: str | None = None) -> Case:
    return Case(f"path_{case_id}", "paths", build, status, message, complete, check, cwd)


PATH_CASES = [
    paths_case("parent_relative", _parent_relative, OK, None, check=_check_parent_relative, cwd="subject/work"),
    paths_case("dot_names", _dot_dot_names, OK, None, check=_check_dot_dot_names),
    paths_case("absolute", _absolute, OK, None, complete=("out/anna",)),
    paths_case("spaces", _spaces, OK, None, complete=("my out/photo 1",)),
    paths_case("unicode", _unicode, OK, None, complete=("out/Zoë 名前", "out/Łukasz")),
    paths_case("separators_in_names", _separators, OK, None, check=_check_separators),
    paths_case("symlink_loop_in_folder", _symlink_loop, OK, r"^warning: \S+loop\.json: symlink loop, skipped",
               complete=("out/anna",)),
    paths_case("symlink_loop_folder", _symlink_loop, OK, r"^warning: \S+again: symlink loop", complete=("out/anna",)),
    paths_case("symlink_loop_named", _symlink_loop_only, USAGE, r"^error: \S+loop\.json: symlink loop"),
    paths_case("out_is_input_folder", _out_is_input_folder, OK, None, check=_check_out_is_input_folder),
    paths_case("out_folder_symlink_outside", _out_folder_symlink_outside, FAILED,
               r"^error: \S+anna\.json: output \S+ resolves to \S+, outside the output folder",
               check=_check_nothing_elsewhere),
    paths_case("same_names", _same_names, OK, None, check=_check_same_names),
    paths_case("fifo", _fifo, USAGE, r"^error: \S+pipe\.json: not a regular file or folder"),
    paths_case("photo_without_detect", _photo_without_detect, USAGE,
               r"^error: \S+photo\.png: is a photo; add --detect"),
    paths_case("hidden_and_outputs_skipped", _hidden_and_outputs_skipped, OK, None, check=_check_hidden),
]


# ---------------------------------------------------------------------------------------------------------------
# A photo where an output would go: refused before anything is written for that file, the photo unchanged


def _photo_named(photo: str, formats: str = "json,overlay,mask"):
    def build(folder: Path) -> list[str]:
        write(folder / "in" / "anna" / "keypoints.json", no_people(path=photo))
        write(folder / "in" / "anna" / photo, b"\x89PNG the photo")
        write(folder / "in" / "ben.json", no_people())
        return ["run", str(folder / "in"), "--out", str(folder / "in"), "--formats", formats]
    return build


def _check_ben_written(folder: Path) -> None:
    assert _complete(folder / "in" / "ben")
    assert not (folder / "in" / "anna" / ".resihmr-done.json").exists()


def _photo_of_another_file(folder: Path) -> list[str]:
    write(folder / "in" / "anna.json", no_people(path="ben/overlay.png"))
    write(folder / "in" / "ben" / "keypoints.json", no_people())
    write(folder / "in" / "ben" / "overlay.png", b"\x89PNG anna's photo")
    return ["run", str(folder / "in"), "--out", str(folder / "in")]


PHOTO_CASES = [
    Case("photo_overlay", "photo", _photo_named("overlay.png"), FAILED,
         r"^error: \S+keypoints\.json: output \S+overlay\.png would overwrite the photo", check=_check_ben_written),
    Case("photo_mask", "photo", _photo_named("mask.png"), FAILED,
         r"^error: \S+keypoints\.json: output \S+mask\.png would overwrite the photo", check=_check_ben_written),
    Case("photo_result_json", "photo", _photo_named("result.json"), FAILED,
         r"^error: \S+keypoints\.json: output \S+result\.json would overwrite the photo", check=_check_ben_written),
    Case("photo_avatar_glb", "photo", _photo_named("avatar.glb", "json,glb"), FAILED,
         r"^error: \S+keypoints\.json: output \S+avatar\.glb would overwrite the photo", check=_check_ben_written),
    Case("photo_not_an_output_format", "photo", _photo_named("overlay.png", "json"), OK, None,
         complete=("in/anna", "in/ben")),
    Case("photo_of_another_file", "photo", _photo_of_another_file, FAILED,
         r"^error: \S+keypoints\.json: output \S+overlay\.png would overwrite the input \S+overlay\.png"),
]

CASES: list[Case] = KEYPOINT_CASES + MODEL_CASES + FLAG_CASES + PATH_CASES + PHOTO_CASES


def input_files(folder: Path, out: Path | None = None) -> dict[str, bytes]:
    """Every file under `folder` (not following symlinks) with its bytes, except those under `out`."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if out is not None and (path == out or out in path.parents):
            continue
        if path.is_symlink() or not path.is_file() or (path.name.startswith(".") and ".resihmr-tmp" in path.name):
            continue  # links, folders, and temp files a killed run left (not inputs: removed at the start)
        files[str(path.relative_to(folder))] = path.read_bytes()
    return files


def good_inputs(folder: Path) -> list[Path]:
    """Two real people (the example, and the example moved 7 px right and 3.5 px down): for runs that fit."""
    doc = example()
    doc["image"].pop("path", None)  # no photo beside the copies
    a = write(folder / "a.json", doc)
    moved = json.loads(json.dumps(doc))
    for field in (POSE, RES):
        values = moved["people"][0][field]
        for i in range(0, len(values), 3):
            if values[i + 2] > 0:
                values[i] += 7.0
                values[i + 1] += 3.5
    b = write(folder / "b.json", moved)
    return [a, b]
