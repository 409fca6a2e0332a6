"""Tests for resihmr_blender.core.keypoints: formats, mapping, distal sets, validation errors."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from resihmr_blender.core import keypoints as kp
from resihmr_blender.core.keypoints import KeypointsError, KeypointsFile, Person
from resihmr_blender.core.keypoints_check import validate_person
from resihmr_blender.core.keypoints_io import read_keypoints, read_keypoints_all, write_keypoints
from resihmr_blender.core.layouts import (
    BODY25_NAMES,
    COCO17_NAMES,
    COCO17_TO_BODY25,
    COCO18_TO_BODY25,
    LDPOSE_COCO_RESIDUAL_ORDER,
    OPENPOSE_COCO18_NAMES,
)
from resihmr_blender.core.residuals import (
    LDPOSE_NAMES,
    RESIDUAL_KINDS,
    RESIDUALS,
    distal_mask,
    ignored_hands,
    residual_by_name,
)

W, H = 1080, 1920


def b25(*names: str) -> set[int]:
    return {BODY25_NAMES.index(n) for n in names}


def body25_points(rng: np.random.Generator | None = None) -> np.ndarray:
    rng = rng or np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(0, W, 25), rng.uniform(0, H, 25), rng.uniform(0.1, 1.0, 25)])
    return pts


def openpose_doc(**person_overrides: object) -> dict:
    person: dict = {"pose_keypoints_2d": body25_points().reshape(-1).tolist(),
                    "residual_keypoints_2d": [0.0] * 24}
    person.update(person_overrides)
    return {"version": 1.3, "image": {"path": "photo.jpg", "width": W, "height": H},
            "camera": {"focal_length_px": 2100.0}, "people": [person]}


def write_json(tmp_path, doc: object, name: str = "photo_keypoints.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


def assert_names(err: KeypointsError, *, person: int | None, field: str, index: int | None) -> None:
    msg = str(err)
    assert "photo_keypoints.json" in msg
    assert err.path is not None and err.path.endswith("photo_keypoints.json")
    assert err.person == person and err.field == field and err.index == index
    if person is not None:
        assert f"person {person}" in msg
    assert f"field '{field}'" in msg
    if index is not None:
        assert f"index {index}" in msg


# ------------------------------------------------------------------ tables


def test_body25_names_in_openpose_order():
    assert len(BODY25_NAMES) == 25
    assert BODY25_NAMES[:9] == ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
                                "MidHip")
    assert BODY25_NAMES[13] == "LKnee" and BODY25_NAMES[24] == "RHeel" and BODY25_NAMES[19] == "LBigToe"


def test_residual_table_matches_design():
    assert RESIDUAL_KINDS == ("right_transhumeral", "right_transradial", "left_transhumeral", "left_transradial",
                              "right_transfemoral", "right_transtibial", "left_transfemoral", "left_transtibial")
    assert LDPOSE_NAMES == ("above_right_elbow_end", "below_right_elbow_end", "above_left_elbow_end",
                            "below_left_elbow_end", "above_right_knee_end", "below_right_knee_end",
                            "above_left_knee_end", "below_left_knee_end")
    k = residual_by_name("right_transhumeral")
    assert (k.anchor_joint, k.upstream_joint, k.limb) == ("right_elbow", "right_shoulder", "right_arm")
    assert (k.anchor_body25, k.upstream_body25) == (3, 2)
    k = residual_by_name("left_transtibial")
    assert (k.anchor_joint, k.upstream_joint, k.limb) == ("left_ankle", "left_knee", "left_leg")
    assert (k.anchor_body25, k.upstream_body25) == (14, 13)
    assert [r.name for r in RESIDUALS] == list(RESIDUAL_KINDS)
    assert {r.limb for r in RESIDUALS} == {"right_arm", "left_arm", "right_leg", "left_leg"}
    assert residual_by_name("above_left_knee_end").name == "left_transfemoral"
    with pytest.raises(KeyError):
        residual_by_name("left_hand")
    with pytest.raises(AttributeError):
        k.name = "x"  # frozen


@pytest.mark.parametrize("kind, distal", [
    ("right_transhumeral", ("RElbow", "RWrist")),
    ("right_transradial", ("RWrist",)),
    ("left_transhumeral", ("LElbow", "LWrist")),
    ("left_transradial", ("LWrist",)),
    ("right_transfemoral", ("RKnee", "RAnkle", "RBigToe", "RSmallToe", "RHeel")),
    ("right_transtibial", ("RAnkle", "RBigToe", "RSmallToe", "RHeel")),
    ("left_transfemoral", ("LKnee", "LAnkle", "LBigToe", "LSmallToe", "LHeel")),
    ("left_transtibial", ("LAnkle", "LBigToe", "LSmallToe", "LHeel")),
])
def test_distal_sets_exact(kind, distal):
    assert set(residual_by_name(kind).distal_body25) == b25(*distal)
    flags = [name == kind for name in RESIDUAL_KINDS]
    mask = distal_mask(flags)
    assert mask.dtype == bool and mask.shape == (25,)
    assert set(np.flatnonzero(mask).tolist()) == b25(*distal)


def test_distal_mask_inputs():
    assert not distal_mask([False] * 8).any()
    assert not distal_mask([]).any()
    residual = np.zeros((8, 3))
    residual[RESIDUAL_KINDS.index("left_transtibial")] = [10, 20, 0.9]
    residual[RESIDUAL_KINDS.index("right_transradial")] = [10, 20, 0.0]  # conf 0 = absent
    assert set(np.flatnonzero(distal_mask(residual)).tolist()) == b25("LAnkle", "LBigToe", "LSmallToe", "LHeel")
    names = ["right_transhumeral", "left_transfemoral"]
    assert set(np.flatnonzero(distal_mask(names)).tolist()) == b25(
        "RElbow", "RWrist", "LKnee", "LAnkle", "LBigToe", "LSmallToe", "LHeel")
    with pytest.raises(ValueError):
        distal_mask([True] * 7)


def test_ignored_hands():
    assert ignored_hands(["left_transradial"]) == (True, False)
    assert ignored_hands(["right_transhumeral", "left_transtibial"]) == (False, True)
    assert ignored_hands([0] * 8) == (False, False)


def test_coco_mapping_table():
    assert len(COCO17_NAMES) == 17 and len(set(COCO17_TO_BODY25)) == 17
    for coco_name, i in zip(COCO17_NAMES, COCO17_TO_BODY25):
        side, part = coco_name.split("_") if "_" in coco_name else ("", coco_name)
        expected = (side[:1].upper() + part.capitalize()) if side else part.capitalize()
        assert BODY25_NAMES[i] == expected
    for missing in ("Neck", "MidHip", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"):
        assert BODY25_NAMES.index(missing) not in COCO17_TO_BODY25


# ------------------------------------------------------------------ reading and writing


def full_person(seed: int = 1) -> Person:
    rng = np.random.default_rng(seed)
    residual = np.zeros((8, 3))
    residual[RESIDUAL_KINDS.index("left_transtibial")] = [400.25, 1500.125, 0.8]
    residual[RESIDUAL_KINDS.index("right_transhumeral")] = [300.0, 600.0, 1.0]
    hand = np.column_stack([rng.uniform(0, W, 21), rng.uniform(0, H, 21), rng.uniform(0, 1, 21)])
    face = np.column_stack([rng.uniform(0, W, 70), rng.uniform(0, H, 70), rng.uniform(0, 1, 70)])
    return Person(body25=body25_points(rng), residual=residual, hand_left=hand, face=face)


def test_round_trip(tmp_path):
    coco_like = Person(body25=np.zeros((25, 3)), body25_available=np.arange(25) % 2 == 0, source_format="coco-ldpose")
    coco_like.body25[0] = [10.5, 20.25, 1.0]
    kf = KeypointsFile(path=None, people=[full_person(1), full_person(2), coco_like], image_path="photo.jpg",
                       image_width=W, image_height=H, focal_length_px=2100.5)
    out = tmp_path / "out.json"
    write_keypoints(out, kf)
    back = read_keypoints(out)
    assert back.path == str(out)
    assert (back.image_path, back.image_width, back.image_height, back.focal_length_px) == ("photo.jpg", W, H, 2100.5)
    assert back.image_size == (W, H)
    assert len(back.people) == 3
    for a, b in zip(kf.people, back.people):
        np.testing.assert_array_equal(a.body25, b.body25)  # exact: JSON floats round-trip via repr
        np.testing.assert_array_equal(a.residual, b.residual)
        np.testing.assert_array_equal(a.body25_available, b.body25_available)
        assert a.source_format == b.source_format
        for attr in ("hand_left", "hand_right", "face"):
            x, y = getattr(a, attr), getattr(b, attr)
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)
    assert back.people[0].residual_kinds() == ["right_transhumeral", "left_transtibial"]
    # The written file is the documented OpenPose-extended layout.
    doc = json.loads(out.read_text())
    assert doc["version"] == 1.3 and doc["camera"] == {"focal_length_px": 2100.5}
    assert doc["image"] == {"path": "photo.jpg", "width": W, "height": H}
    assert len(doc["people"][0]["pose_keypoints_2d"]) == 75 and len(doc["people"][0]["residual_keypoints_2d"]) == 24
    assert "hand_right_keypoints_2d" not in doc["people"][0] and "body25_available" not in doc["people"][0]


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "k.json"
    out.write_text("old content")
    write_keypoints(out, KeypointsFile(path=None, people=[full_person()]))
    assert read_keypoints(out).people[0].residual_kinds() == ["right_transhumeral", "left_transtibial"]
    assert os.listdir(tmp_path) == ["k.json"]
    if sys.platform != "win32":
        assert stat.S_IMODE(out.stat().st_mode) & 0o044  # readable by others like a plain open() file


def test_write_refuses_invalid_and_keeps_old_file(tmp_path):
    out = tmp_path / "k.json"
    out.write_text("old content")
    bad = full_person()
    bad.body25[3, 2] = np.nan
    with pytest.raises(KeypointsError) as e:
        write_keypoints(out, KeypointsFile(path=None, people=[bad]))
    assert e.value.field == "pose_keypoints_2d" and e.value.index == 3
    assert out.read_text() == "old content"
    assert os.listdir(tmp_path) == ["k.json"]


def test_plain_openpose_without_residuals(tmp_path):
    # What OpenPose itself writes: no image/camera/residual keys, empty hands/face, extra keys.
    pose = body25_points().reshape(-1).tolist()
    doc = {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": pose, "face_keypoints_2d": [],
                                       "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
                                       "pose_keypoints_3d": [], "face_keypoints_3d": []}]}
    kf = read_keypoints(write_json(tmp_path, doc))
    assert (kf.image_width, kf.image_height, kf.focal_length_px, kf.image_path) == (None, None, None, None)
    p = kf.people[0]
    np.testing.assert_array_equal(p.body25.reshape(-1), pose)
    assert p.residual.shape == (8, 3) and not p.residual.any()
    assert p.residual_kinds() == []
    assert p.hand_left is None and p.hand_right is None and p.face is None
    assert p.body25_available.all() and p.source_format == "openpose"


def test_image_size_argument_fills_and_overrides(tmp_path):
    doc = openpose_doc()
    del doc["image"]
    path = write_json(tmp_path, doc)
    kf = read_keypoints(path, image_size=(1000, 1500))
    assert kf.image_size == (1000, 1500)
    doc = openpose_doc()
    path = write_json(tmp_path, doc, "b.json")
    assert read_keypoints(path, image_size=(2000, 3000)).image_size == (2000, 3000)
    with pytest.raises(KeypointsError, match="image_size"):
        read_keypoints(path, image_size=(0, 3000))


def coco_doc(keypoints: list[float], **extra: object) -> dict:
    doc = {"images": [{"id": 7, "file_name": "amputee.jpg", "width": 640, "height": 480}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "keypoints": keypoints, "num_keypoints": 3}],
           "categories": [{"id": 1, "name": "person"}]}
    doc.update(extra)
    return doc


def coco_points() -> np.ndarray:
    pts = np.zeros((25, 3))
    for i in range(17):
        pts[i] = [100 + 10 * i, 50 + 20 * i, 2]
    pts[COCO17_NAMES.index("left_ankle")] = [0, 0, 0]  # not labelled
    pts[COCO17_NAMES.index("right_wrist")] = [333, 222, 1]  # labelled, occluded
    pts[17 + LDPOSE_COCO_RESIDUAL_ORDER.index("above_left_knee_end")] = [321, 400, 2]
    pts[17 + LDPOSE_COCO_RESIDUAL_ORDER.index("below_right_elbow_end")] = [250, 300, 1]
    return pts


def test_ldpose_coco_maps_to_body25_and_kinds(tmp_path):
    pts = coco_points()
    kf = read_keypoints(write_json(tmp_path, coco_doc(pts.reshape(-1).tolist())))
    assert (kf.image_path, kf.image_size, kf.focal_length_px) == ("amputee.jpg", (640, 480), None)
    (p,) = kf.people
    assert p.source_format == "coco-ldpose"
    lknee = COCO17_NAMES.index("left_knee")
    assert BODY25_NAMES.index("LKnee") == 13
    np.testing.assert_array_equal(p.body25[13], [pts[lknee, 0], pts[lknee, 1], 1.0])
    np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("RShoulder")],
                                  [*pts[COCO17_NAMES.index("right_shoulder"), :2], 1.0])
    np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("LEye")], [*pts[COCO17_NAMES.index("left_eye"), :2], 1])
    # v=1 (occluded but labelled) counts; v=0 gives confidence 0.
    np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("RWrist")], [333, 222, 1.0])
    assert p.body25[BODY25_NAMES.index("LAnkle"), 2] == 0 and p.body25_available[BODY25_NAMES.index("LAnkle")]
    # Residuals land by name: above_left_knee_end -> left_transfemoral (index 6).
    assert RESIDUAL_KINDS.index("left_transfemoral") == 6
    np.testing.assert_array_equal(p.residual[6], [321, 400, 1.0])
    np.testing.assert_array_equal(p.residual[1], [250, 300, 1.0])  # below_right_elbow_end -> right_transradial
    assert p.residual_kinds() == ["right_transradial", "left_transfemoral"]
    # No synthesised neck, mid-hip, toes or heels.
    unavailable = b25("Neck", "MidHip", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
    assert set(np.flatnonzero(~p.body25_available).tolist()) == unavailable
    assert not p.body25[sorted(unavailable)].any()


def test_plain_coco_17_points_and_crowd_and_empty_skipped(tmp_path):
    pts = coco_points()[:17]
    doc = coco_doc(pts.reshape(-1).tolist())
    doc["annotations"].append({"image_id": 7, "iscrowd": 1, "keypoints": [0] * 51})
    doc["annotations"].append({"image_id": 7, "keypoints": [0] * 75})
    kf = read_keypoints(write_json(tmp_path, doc))
    assert len(kf.people) == 1 and kf.people[0].residual_kinds() == []


def test_coco_multi_image(tmp_path):
    doc = coco_doc(coco_points().reshape(-1).tolist())
    doc["images"].append({"id": 8, "file_name": "b.jpg", "width": 800, "height": 600})
    doc["annotations"].append({"image_id": 8, "keypoints": coco_points().reshape(-1).tolist()})
    path = write_json(tmp_path, doc)
    with pytest.raises(KeypointsError, match="2 images"):
        read_keypoints(path)
    files = read_keypoints_all(path)
    assert [(f.image_path, f.image_size, len(f.people)) for f in files] == [
        ("amputee.jpg", (640, 480), 1), ("b.jpg", (800, 600), 1)]


def test_coco_bad_visibility(tmp_path):
    pts = coco_points()
    pts[4, 2] = 3
    with pytest.raises(KeypointsError) as e:
        read_keypoints(write_json(tmp_path, coco_doc(pts.reshape(-1).tolist())))
    assert_names(e.value, person=0, field="keypoints", index=4)
    assert "visibility 3" in str(e.value)


def test_coco_two_kinds_one_limb(tmp_path):
    pts = coco_points()
    pts[17 + LDPOSE_COCO_RESIDUAL_ORDER.index("below_left_knee_end")] = [300, 420, 2]
    with pytest.raises(KeypointsError) as e:
        read_keypoints(write_json(tmp_path, coco_doc(pts.reshape(-1).tolist())))
    assert_names(e.value, person=0, field="keypoints", index=17 + 6)
    assert "left_transfemoral" in str(e.value) and "left_transtibial" in str(e.value)


# ------------------------------------------------------------------ one test per error


def read_error(tmp_path, doc: object, **kwargs: object) -> KeypointsError:
    with pytest.raises(KeypointsError) as e:
        read_keypoints(write_json(tmp_path, doc), **kwargs)
    assert isinstance(e.value, ValueError)
    return e.value


def test_error_not_json(tmp_path):
    err = read_error(tmp_path, '{"people": [\n  {"pose_keypoints_2d": [1, 2,, 3]}]}')
    msg = str(err)
    assert "photo_keypoints.json" in msg and "not valid JSON" in msg
    assert "line 2" in msg and "column" in msg


def test_error_not_an_object(tmp_path):
    err = read_error(tmp_path, "[1, 2, 3]")
    assert "photo_keypoints.json" in str(err) and "object" in str(err)


def test_error_people_missing_or_not_list(tmp_path):
    err = read_error(tmp_path, {"version": 1.3})
    assert err.field == "people" and "photo_keypoints.json" in str(err)
    err = read_error(tmp_path, {"people": {"0": []}})
    assert err.field == "people" and "list" in str(err)


@pytest.mark.parametrize("field, length", [("pose_keypoints_2d", 74), ("pose_keypoints_2d", 45),
                                           ("pose_keypoints_2d", 78), ("residual_keypoints_2d", 21)])
def test_error_wrong_array_length(tmp_path, field, length):
    doc = openpose_doc(**{field: [0.5] * length})
    err = read_error(tmp_path, doc)
    assert_names(err, person=0, field=field, index=None)
    assert str(length) in str(err)


def test_error_unknown_layout_names_what_we_read(tmp_path):
    err = read_error(tmp_path, openpose_doc(pose_keypoints_2d=[10.0] * 45))
    assert "MPI" in str(err) and "75 numbers (BODY_25)" in str(err) and "54 (OpenPose COCO-18)" in str(err)
    assert "got 45" in str(err)
    err = read_error(tmp_path, openpose_doc(pose_keypoints_2d=[10.0] * 78))
    assert "HALPE-26" in str(err)
    err = read_error(tmp_path, openpose_doc(pose_keypoints_2d=[10.0] * 31 * 3))
    assert "31 points" in str(err)


@pytest.mark.parametrize("field, length", [("hand_left_keypoints_2d", 60), ("face_keypoints_2d", 204)])
def test_malformed_hand_or_face_is_dropped_with_a_warning(tmp_path, field, length):
    kf = read_keypoints(write_json(tmp_path, openpose_doc(**{field: [0.5] * length})))
    (p,) = kf.people
    assert getattr(p, field.replace("_keypoints_2d", "")) is None
    (warning,) = kf.warnings
    assert "photo_keypoints.json" in warning and "person 0" in warning and f"'{field}'" in warning
    assert str(length) in warning and "dropped" in warning


def test_error_wrong_length_names_the_right_person(tmp_path):
    doc = openpose_doc()
    doc["people"].append({"pose_keypoints_2d": [0.0] * 72})
    assert_names(read_error(tmp_path, doc), person=1, field="pose_keypoints_2d", index=None)


@pytest.mark.parametrize("bad", ["12", None, True, [1]])
def test_error_non_numeric(tmp_path, bad):
    pose = body25_points().reshape(-1).tolist()
    pose[3 * 9 + 1] = bad
    err = read_error(tmp_path, openpose_doc(pose_keypoints_2d=pose))
    assert_names(err, person=0, field="pose_keypoints_2d", index=9)
    assert "not a number" in str(err)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_error_nan_and_inf(tmp_path, literal):
    # Python's json writes and reads these non-standard literals; some tools emit them.
    residual = [0.0] * 24
    residual[3 * 5] = 1.0e300  # placeholder replaced below with the literal
    text = json.dumps(openpose_doc(residual_keypoints_2d=residual)).replace("1e+300", literal)
    err = read_error(tmp_path, text)
    assert_names(err, person=0, field="residual_keypoints_2d", index=5)
    assert "not finite" in str(err)


@pytest.mark.parametrize("conf", [-0.1, 1.4])
def test_error_confidence_out_of_range(tmp_path, conf):
    pose = body25_points().reshape(-1).tolist()
    pose[3 * 7 + 2] = conf
    err = read_error(tmp_path, openpose_doc(pose_keypoints_2d=pose))
    assert_names(err, person=0, field="pose_keypoints_2d", index=7)
    assert f"confidence {conf:g} is outside [0, 1]" in str(err)


def test_hand_confidence_far_outside_drops_the_hand(tmp_path):
    hand = [0.5] * 63
    hand[3 * 20 + 2] = 2.0
    kf = read_keypoints(write_json(tmp_path, openpose_doc(hand_right_keypoints_2d=hand)))
    assert kf.people[0].hand_right is None
    (warning,) = kf.warnings
    assert "'hand_right_keypoints_2d'" in warning and "index 20" in warning and "confidence 2" in warning


def test_hand_far_outside_the_image_drops_the_hand(tmp_path):
    hand = [100.0, 100.0, 0.5] * 21
    hand[0] = 50 * W
    kf = read_keypoints(write_json(tmp_path, openpose_doc(hand_left_keypoints_2d=hand)))
    assert kf.people[0].hand_left is None and "far outside" in kf.warnings[0]


@pytest.mark.parametrize("field, index, conf", [("pose_keypoints_2d", 4, -0.004), ("pose_keypoints_2d", 4, 1.03),
                                                ("face_keypoints_2d", 69, -1e-4), ("hand_left_keypoints_2d", 3, 1.006),
                                                ("residual_keypoints_2d", 7, 1.01)])
def test_confidence_within_tolerance_is_clamped_with_a_warning(tmp_path, field, index, conf):
    n = {"pose_keypoints_2d": 25, "face_keypoints_2d": 70, "hand_left_keypoints_2d": 21,
         "residual_keypoints_2d": 8}[field]
    values = (body25_points() if n == 25 else np.column_stack([np.full(n, 50.0), np.full(n, 60.0),
                                                               np.zeros(n)])).copy()
    values[index, 2] = conf
    kf = read_keypoints(write_json(tmp_path, openpose_doc(**{field: values.reshape(-1).tolist()})))
    attr = {"pose_keypoints_2d": "body25", "face_keypoints_2d": "face", "hand_left_keypoints_2d": "hand_left",
            "residual_keypoints_2d": "residual"}[field]
    assert getattr(kf.people[0], attr)[index, 2] == min(max(conf, 0.0), 1.0)
    (warning,) = kf.warnings
    assert warning.startswith(str(tmp_path / "photo_keypoints.json")) and "person 0" in warning
    assert f"'{field}'" in warning and "1 confidence slightly outside [0, 1]" in warning and f"{conf:g}" in warning


def test_tolerance_edges(tmp_path):
    pose = body25_points()
    pose[[2, 3], 2] = [-0.01, 1.05]  # exactly at the tolerance: clamped
    kf = read_keypoints(write_json(tmp_path, openpose_doc(pose_keypoints_2d=pose.reshape(-1).tolist())))
    assert "2 confidences slightly outside" in kf.warnings[0]
    pose[3, 2] = 1.0501
    err = read_error(tmp_path, openpose_doc(pose_keypoints_2d=pose.reshape(-1).tolist()))
    assert_names(err, person=0, field="pose_keypoints_2d", index=3)


def test_no_warnings_on_a_clean_file(tmp_path):
    assert read_keypoints(write_json(tmp_path, openpose_doc())).warnings == []


def test_error_two_kinds_on_one_limb(tmp_path):
    residual = np.zeros((8, 3))
    residual[RESIDUAL_KINDS.index("left_transhumeral")] = [100, 200, 0.9]
    residual[RESIDUAL_KINDS.index("left_transradial")] = [120, 260, 0.5]
    residual[RESIDUAL_KINDS.index("right_transtibial")] = [120, 260, 0.5]  # another limb: fine
    err = read_error(tmp_path, openpose_doc(residual_keypoints_2d=residual.reshape(-1).tolist()))
    assert_names(err, person=0, field="residual_keypoints_2d", index=3)
    assert "left_transhumeral" in str(err) and "left_transradial" in str(err) and "left arm" in str(err)
    # A zero-confidence second kind is "none", not a conflict.
    residual[RESIDUAL_KINDS.index("left_transradial"), 2] = 0
    path = write_json(tmp_path, openpose_doc(residual_keypoints_2d=residual.reshape(-1).tolist()), "ok.json")
    assert read_keypoints(path).people[0].residual_kinds() == ["left_transhumeral", "right_transtibial"]


def test_error_point_far_outside_image(tmp_path):
    pose = body25_points().reshape(-1).tolist()
    pose[3 * 11] = W * 1.5 + 1  # RAnkle x: more than half the width beyond the right border
    err = read_error(tmp_path, openpose_doc(pose_keypoints_2d=pose))
    assert_names(err, person=0, field="pose_keypoints_2d", index=11)
    assert "far outside" in str(err)


def test_far_outside_limits(tmp_path):
    pose = body25_points()
    pose[11] = [W * 1.5 - 1, -0.5 * H + 1, 0.9]  # just inside the allowed margin
    pose[12] = [W * 10, H * 10, 0.0]  # far, but confidence 0: OpenPose's "not detected"
    doc = openpose_doc(pose_keypoints_2d=pose.reshape(-1).tolist())
    assert len(read_keypoints(write_json(tmp_path, doc)).people) == 1
    # Without a known image size there is nothing to compare against.
    pose[11] = [W * 10, 5, 0.9]
    doc = openpose_doc(pose_keypoints_2d=pose.reshape(-1).tolist())
    del doc["image"]
    assert len(read_keypoints(write_json(tmp_path, doc, "nosize.json")).people) == 1
    # ...until the command line gives one.
    with pytest.raises(KeypointsError, match="far outside"):
        read_keypoints(tmp_path / "nosize.json", image_size=(W, H))


def test_error_residual_far_outside(tmp_path):
    residual = [0.0] * 24
    residual[3 * 2: 3 * 3] = [50, -H, 0.7]
    err = read_error(tmp_path, openpose_doc(residual_keypoints_2d=residual))
    assert_names(err, person=0, field="residual_keypoints_2d", index=2)


@pytest.mark.parametrize("key, value", [("width", 0), ("height", -5), ("width", 1080.5), ("height", "1920"),
                                        ("width", True)])
def test_error_bad_image_size(tmp_path, key, value):
    doc = openpose_doc()
    doc["image"][key] = value
    err = read_error(tmp_path, doc)
    assert err.field == f"image.{key}" and err.person is None
    assert "photo_keypoints.json" in str(err) and f"field 'image.{key}'" in str(err)
    assert "positive integer" in str(err)


def test_image_size_float_integral_is_accepted(tmp_path):
    doc = openpose_doc()
    doc["image"]["width"] = 1080.0
    assert read_keypoints(write_json(tmp_path, doc)).image_width == 1080


def test_error_coco_bad_image_size(tmp_path):
    doc = coco_doc(coco_points().reshape(-1).tolist())
    doc["images"][0]["height"] = 0
    err = read_error(tmp_path, doc)
    assert err.field == "images[0].height" and "photo_keypoints.json" in str(err)


@pytest.mark.parametrize("value", [0, -100.0, "2100", True])
def test_error_bad_focal_length(tmp_path, value):
    doc = openpose_doc()
    doc["camera"]["focal_length_px"] = value
    err = read_error(tmp_path, doc)
    assert err.field == "camera.focal_length_px" and "photo_keypoints.json" in str(err)
    assert "field 'camera.focal_length_px'" in str(err) and "positive finite" in str(err)


def test_error_focal_length_infinite(tmp_path):
    text = json.dumps(openpose_doc()).replace("2100.0", "Infinity")
    err = read_error(tmp_path, text)
    assert err.field == "camera.focal_length_px"


def test_error_message_format():
    err = KeypointsError("confidence 1.4 is outside [0, 1]", path="photo_keypoints.json", person=0,
                         field="pose_keypoints_2d", index=7)
    assert str(err) == ("photo_keypoints.json: person 0, field 'pose_keypoints_2d', index 7: "
                        "confidence 1.4 is outside [0, 1]")
    assert str(KeypointsError("bad", path="a.json")) == "a.json: bad"


# ------------------------------------------------------------------ in-memory people


def test_person_shapes_and_validate():
    with pytest.raises(KeypointsError, match=r"\(25, 3\)"):
        Person(body25=np.zeros((24, 3)))
    p = Person(body25=np.zeros((25, 3)))
    assert p.body25.dtype == np.float64 and p.residual.shape == (8, 3) and p.body25_available.all()
    validate_person(p, (W, H))
    p.body25_available[1] = False
    p.body25[1] = [5, 5, 0.5]
    with pytest.raises(KeypointsError, match="Neck") as e:
        validate_person(p, path="x.json", person_index=2)
    assert e.value.person == 2 and e.value.index == 1 and str(e.value).startswith("x.json: person 2")


def test_module_has_no_blender_or_torch_import():
    with open(kp.__file__, encoding="utf-8") as f:
        source = f.read()
    assert "import bpy" not in source and "import torch" not in source


# ------------------------------------------------------------------ OpenPose variants (old keys, COCO-18, scale)


def coco18_points() -> np.ndarray:
    pts = np.column_stack([100 + 10 * np.arange(18), 200 + 20 * np.arange(18), np.linspace(0.3, 0.9, 18)])
    pts[OPENPOSE_COCO18_NAMES.index("LEar")] = [0, 0, 0]  # not detected
    return pts


def test_coco18_table():
    assert len(OPENPOSE_COCO18_NAMES) == 18 and len(set(COCO18_TO_BODY25)) == 18
    for i, name in enumerate(OPENPOSE_COCO18_NAMES):
        assert BODY25_NAMES[COCO18_TO_BODY25[i]] == name
    assert COCO18_TO_BODY25[OPENPOSE_COCO18_NAMES.index("RHip")] == BODY25_NAMES.index("RHip") == 9


@pytest.mark.parametrize("key", ["pose_keypoints", "pose_keypoints_2d"])
def test_coco18_maps_to_body25(tmp_path, key):
    pts = coco18_points()
    doc = {"version": 1.0, "people": [{key: pts.reshape(-1).tolist(), "face_keypoints": [],
                                       "hand_left_keypoints": [], "hand_right_keypoints": []}]}
    kf = read_keypoints(write_json(tmp_path, doc))
    (p,) = kf.people
    assert p.source_format == "openpose-coco18"
    rhip = OPENPOSE_COCO18_NAMES.index("RHip")  # 8 in COCO-18, 9 in BODY_25
    np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("RHip")], pts[rhip])
    np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("LAnkle")], pts[OPENPOSE_COCO18_NAMES.index("LAnkle")])
    np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("Neck")], pts[1])
    unavailable = b25("MidHip", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
    assert set(np.flatnonzero(~p.body25_available).tolist()) == unavailable
    assert not p.body25[sorted(unavailable)].any()
    assert p.hand_left is None and p.face is None and kf.warnings == []
    # written back as BODY_25 with the availability, read back the same
    write_keypoints(tmp_path / "back.json", kf)
    back = read_keypoints(tmp_path / "back.json").people[0]
    np.testing.assert_array_equal(back.body25, p.body25)
    np.testing.assert_array_equal(back.body25_available, p.body25_available)
    assert back.source_format == "openpose-coco18"


def test_coco18_error_names_the_file_index(tmp_path):
    pts = coco18_points()
    pts[OPENPOSE_COCO18_NAMES.index("RKnee")] = [W * 3, 10, 0.8]  # COCO-18 index 9, BODY_25 index 10
    err = read_error(tmp_path, openpose_doc(pose_keypoints=pts.reshape(-1).tolist(), pose_keypoints_2d=None))
    assert_names(err, person=0, field="pose_keypoints", index=9)
    assert "RKnee" in str(err)


def test_old_hand_and_face_keys(tmp_path):
    hand = np.column_stack([np.full(21, 300.0), np.full(21, 400.0), np.full(21, 0.5)])
    doc = openpose_doc(hand_left_keypoints=hand.reshape(-1).tolist())
    assert read_keypoints(write_json(tmp_path, doc)).people[0].hand_left.shape == (21, 3)


def test_coco17_in_an_openpose_file(tmp_path):
    pts = coco_points()[:17].copy()
    pts[:, 2] = 0.7
    (p,) = read_keypoints(write_json(tmp_path, openpose_doc(pose_keypoints_2d=pts.reshape(-1).tolist()))).people
    assert p.source_format == "coco-ldpose" and p.body25_available.sum() == 17
    np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("LKnee")], pts[COCO17_NAMES.index("left_knee")])


def normalised_doc(**image) -> dict:
    pose = body25_points()
    pose[:, 0] /= W
    pose[:, 1] /= H
    doc = {"version": 1.3, "people": [{"pose_keypoints_2d": pose.reshape(-1).tolist()}]}
    if image:
        doc["image"] = image
    return doc


def test_normalised_scaled_by_the_file_image_size(tmp_path):
    kf = read_keypoints(write_json(tmp_path, normalised_doc(width=W, height=H)))
    np.testing.assert_allclose(kf.people[0].body25, body25_points(), rtol=1e-12)
    (warning,) = kf.warnings
    assert "normalised" in warning and f"{W}x{H}" in warning and "photo_keypoints.json" in warning


def test_normalised_scaled_by_the_callers_size_or_controlnet_canvas(tmp_path):
    path = write_json(tmp_path, normalised_doc())
    kf = read_keypoints(path, image_size=(W, H))
    np.testing.assert_allclose(kf.people[0].body25, body25_points(), rtol=1e-12)
    doc = normalised_doc()
    doc["canvas_width"], doc["canvas_height"] = W, H
    kf = read_keypoints(write_json(tmp_path, doc, "canvas.json"))
    assert kf.image_size == (W, H) and "canvas" in kf.warnings[0]
    np.testing.assert_allclose(kf.people[0].body25, body25_points(), rtol=1e-12)


def test_normalised_without_size_is_refused(tmp_path):
    err = read_error(tmp_path, normalised_doc())
    assert "normalised" in str(err) and "image size" in str(err) and "--image-size" in str(err)
    assert err.field == "pose_keypoints_2d" and "photo_keypoints.json" in str(err)


def test_normalised_sized_by_the_photo_beside(tmp_path):
    from PIL import Image

    Image.new("RGB", (W // 4, H // 4)).save(tmp_path / "photo.jpg")
    kf = read_keypoints(write_json(tmp_path, normalised_doc()))
    assert kf.image_size == (W // 4, H // 4) and "photo.jpg" in kf.warnings[0]
    np.testing.assert_allclose(kf.people[0].body25[:, :2], body25_points()[:, :2] / 4, rtol=1e-12)


def test_centred_coordinates_are_refused(tmp_path):
    doc = normalised_doc(width=W, height=H)
    pose = np.array(doc["people"][0]["pose_keypoints_2d"]).reshape(-1, 3)
    pose[:, :2] = pose[:, :2] * 2 - 1
    doc["people"][0]["pose_keypoints_2d"] = pose.reshape(-1).tolist()
    err = read_error(tmp_path, doc)
    assert "[-1, 1]" in str(err) and "keypoint_scale" in str(err)


def test_few_points_in_the_unit_square_are_pixels(tmp_path):
    # three labelled points near the corner of a big image are read as pixels, not scaled
    pose = np.zeros((25, 3))
    pose[[0, 1, 2]] = [[0.5, 0.5, 0.9], [1.0, 0.25, 0.8], [0.0, 1.0, 0.7]]
    kf = read_keypoints(write_json(tmp_path, openpose_doc(pose_keypoints_2d=pose.reshape(-1).tolist())))
    np.testing.assert_array_equal(kf.people[0].body25, pose)
    assert kf.warnings == []
    # a pixel-coordinate person of a tiny image is still pixels: its points are not all inside one pixel
    pose = np.column_stack([np.linspace(0, 7, 25), np.linspace(0, 5, 25), np.full(25, 0.5)])
    kf = read_keypoints(write_json(tmp_path, openpose_doc(pose_keypoints_2d=pose.reshape(-1).tolist()), "tiny.json"),
                        image_size=(8, 6))
    np.testing.assert_array_equal(kf.people[0].body25, pose)


def test_nested_pose_lists_are_named(tmp_path):
    err = read_error(tmp_path, openpose_doc(pose_keypoints_2d=body25_points().tolist()))
    assert_names(err, person=0, field="pose_keypoints_2d", index=None)
    assert "list of lists" in str(err)


def test_empty_pose_is_a_person_without_body(tmp_path):
    kf = read_keypoints(write_json(tmp_path, openpose_doc(pose_keypoints_2d=[])))
    assert not kf.people[0].body25.any() and "no body keypoints" in kf.warnings[0]


# ------------------------------------------------------------------ the real-input corpus (tests/data/real_openpose)

CORPUS = Path(__file__).parent / "data" / "real_openpose"
# file -> (people, source formats, image size after reading, fields with a clamping warning)
CORPUS_EXPECTED = {
    "hmr_random_keypoints.json": (2, "openpose-coco18", None, ["pose_keypoints"]),
    "spin_im1010_openpose.json": (1, "openpose", None, []),
    "prohmr_pexels-anete-lusina-4793258_keypoints.json": (1, "openpose", None, []),
    "slp_video_000000000000_keypoints.json": (1, "openpose", None, []),
    "openpose-editor_pose.json": (1, "openpose-coco18", (768, 512), []),
    "openpose-editor_pose_hand_fixed.json": (1, "openpose-coco18", (768, 512), []),
    "derived_slp_confidence_drift_keypoints.json": (1, "openpose", None,
                                                    ["hand_right_keypoints_2d", "face_keypoints_2d"]),
    "derived_prohmr_427x640_keypoints.json": (1, "openpose", None, []),  # beside its photo: test_from_openpose
}
NEEDS_SIZE = {"derived_prohmr_normalised_keypoints.json": (4016, 6016)}


def test_corpus_is_complete_and_documented():
    files = sorted(p.name for p in CORPUS.glob("*.json"))
    assert files == sorted([*CORPUS_EXPECTED, *NEEDS_SIZE])
    sources = (CORPUS / "SOURCES.md").read_text()
    for name in files + ["made_here_exif_rotated.jpg"]:
        assert name in sources


@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTED))
def test_corpus_file_reads_without_flags(name):
    n_people, source, size, clamped = CORPUS_EXPECTED[name]
    kf = read_keypoints(CORPUS / name)
    assert len(kf.people) == n_people
    assert {p.source_format for p in kf.people} == {source}
    assert kf.image_size == size
    clamp_warnings = [w for w in kf.warnings if "slightly outside [0, 1]" in w]
    assert [w.split("field '")[1].split("'")[0] for w in clamp_warnings] == clamped
    for w in kf.warnings:
        assert w.startswith(str(CORPUS / name))
    for p in kf.people:
        validate_person(p, kf.image_size)  # what was read is what the fit and the writer accept
        assert (p.body25[:, 2] >= 0).all() and (p.body25[:, 2] <= 1).all()


def test_corpus_old_coco18_two_people_mapped_to_body25():
    kf = read_keypoints(CORPUS / "hmr_random_keypoints.json")
    raw = json.loads((CORPUS / "hmr_random_keypoints.json").read_text())["people"]
    for p, entry in zip(kf.people, raw):
        coco = np.array(entry["pose_keypoints"]).reshape(18, 3)
        rhip = OPENPOSE_COCO18_NAMES.index("RHip")
        np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("RHip")], coco[rhip])
        np.testing.assert_array_equal(p.body25[BODY25_NAMES.index("LEar")], np.minimum(coco[17], [np.inf, np.inf, 1]))
        assert not p.body25_available[BODY25_NAMES.index("MidHip")] and not p.body25[8].any()
        assert not p.body25_available[19:].any()
    # OpenPose wrote LEar's confidence as 1.00587 for the first person: clamped to 1, with a warning saying so
    assert kf.people[0].body25[BODY25_NAMES.index("LEar"), 2] == 1.0
    assert "1.00587" in kf.warnings[0] and "person 0" in kf.warnings[0]


def test_corpus_face_and_hands_kept():
    p = read_keypoints(CORPUS / "slp_video_000000000000_keypoints.json").people[0]
    assert p.face.shape == (70, 3) and p.hand_left.shape == (21, 3) and p.hand_right.shape == (21, 3)
    drift = read_keypoints(CORPUS / "derived_slp_confidence_drift_keypoints.json")
    assert drift.people[0].face[[10, 40, 69], 2].tolist() == [0.0, 0.0, 0.0]
    assert drift.people[0].hand_right[4, 2] == 1.0
    np.testing.assert_array_equal(drift.people[0].body25, p.body25)


def test_corpus_normalised_controlnet_file_scaled_by_its_canvas():
    kf = read_keypoints(CORPUS / "openpose-editor_pose.json")
    raw = np.array(json.loads((CORPUS / "openpose-editor_pose.json").read_text())["people"][0]["pose_keypoints_2d"])
    coco = raw.reshape(18, 3)
    nose = kf.people[0].body25[BODY25_NAMES.index("Nose")]
    np.testing.assert_allclose(nose, [coco[0, 0] * 768, coco[0, 1] * 512, 1.0])
    assert any("normalised" in w and "768x512" in w for w in kf.warnings)
    assert kf.people[0].hand_left is not None  # its slightly negative hand points are inside the margin


def test_corpus_normalised_without_size_refused_then_scaled():
    path = CORPUS / "derived_prohmr_normalised_keypoints.json"
    with pytest.raises(KeypointsError, match="normalised.*image size.*--image-size"):
        read_keypoints(path)
    kf = read_keypoints(path, image_size=NEEDS_SIZE[path.name])
    original = read_keypoints(CORPUS / "prohmr_pexels-anete-lusina-4793258_keypoints.json")
    np.testing.assert_allclose(kf.people[0].body25, original.people[0].body25, atol=1e-3)
