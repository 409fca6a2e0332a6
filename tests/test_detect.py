"""The optional detector: BODY_25 mapping, limb-loss hints on the synthetic example, failures, batch and UI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from resihmr_blender.core.layouts import BODY25_INDEX  # noqa: E402
from resihmr_blender.detect import DetectError, detect, limb_loss_hints, read_image, to_body25  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "demo" / "photo_synthetic.png"


def test_mapping_to_body25_derives_neck_and_mid_hip():
    lms = np.zeros((33, 3))
    lms[:, 0], lms[:, 1], lms[:, 2] = np.arange(33) * 10 + 5, 100.0, 0.9
    lms[11, 2], lms[12, 2] = 0.8, 0.6
    person = to_body25(lms, 400, 400)
    kp = person.body25
    assert kp[BODY25_INDEX["LShoulder"], 0] == 115 and kp[BODY25_INDEX["RShoulder"], 0] == 125
    assert kp[BODY25_INDEX["Neck"], 0] == 120 and kp[BODY25_INDEX["Neck"], 2] == 0.6  # the weaker of the two
    assert kp[BODY25_INDEX["MidHip"], 0] == 0.5 * (235 + 245)
    assert kp[BODY25_INDEX["LSmallToe"], 2] == 0.0 and kp[BODY25_INDEX["RBigToe"], 0] == 325
    lms[32, 0] = 900.0  # extrapolated outside the frame: not an observation
    assert to_body25(lms, 400, 400).body25[BODY25_INDEX["RBigToe"], 2] == 0.0


def test_hints_find_the_examples_amputations():
    found = detect(read_image(PHOTO))
    kinds = {s.kind for s in found.suggestions}
    assert kinds == {"left_transtibial", "right_transradial"}
    truth = json.loads((PHOTO.parent / "ground_truth.json").read_text())["residuals"]
    for s in found.suggestions:
        # a starting point for the user's click, not a measurement: within a few centimetres of the true end
        assert np.linalg.norm(np.array(s.endpoint) - truth[s.kind]["endpoint_2d"]) < 80 and s.reasons


def test_no_hint_on_a_whole_body():
    lms = np.zeros((33, 3))
    mask = np.zeros((200, 200), np.float32)
    # two straight arms and two straight legs of equal lengths, fully on the body outline
    chain_x = {11: 120, 13: 120, 15: 120, 12: 80, 14: 80, 16: 80, 23: 110, 25: 110, 27: 110, 24: 90, 26: 90, 28: 90}
    chain_y = {11: 40, 13: 70, 15: 100, 12: 40, 14: 70, 16: 100, 23: 100, 25: 140, 27: 180, 24: 100, 26: 140, 28: 180}
    for i in chain_x:
        lms[i] = [chain_x[i], chain_y[i], 0.95]
    mask[30:190, 70:130] = 1.0
    assert limb_loss_hints(lms, mask) == []


def test_no_person_is_a_clear_error():
    with pytest.raises(DetectError, match="no person found"):
        detect(np.full((200, 200, 3), 128, np.uint8), source="empty.png")
    with pytest.raises(DetectError, match="not an image"):
        read_image(ROOT / "README.md")


def test_missing_extra_is_explained(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mediapipe(name, *args, **kwargs):
        if name == "mediapipe":
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mediapipe)
    with pytest.raises(DetectError, match=r"pip install 'resihmr-blender\[detect\]'"):
        detect(np.zeros((10, 10, 3), np.uint8))


def test_batch_detect_writes_keypoints_and_keeps_suggestions_apart(tmp_path):
    from resihmr_blender.cli import main

    assert main(["run", str(PHOTO), "--detect", "--out", str(tmp_path), "--formats", "json"]) == 0
    written = json.loads((tmp_path / "photo_synthetic" / "keypoints.json").read_text())
    assert {s["kind"] for s in written["resihmr_suggestions"]} == {"left_transtibial", "right_transradial"}
    assert not any(written["people"][0]["residual_keypoints_2d"])  # suggestions are not applied silently
    assert main(["run", str(PHOTO), "--detect", "--accept-suggestions", "--out", str(tmp_path / "b"),
                 "--formats", "json"]) == 0
    result = json.loads((tmp_path / "b" / "photo_synthetic" / "result.json").read_text())
    assert {r["kind"] for r in result["people"][0]["residuals"]} == {"left_transtibial", "right_transradial"}


def test_detect_operator_suggests_and_the_user_confirms():
    import bpy

    import resihmr_blender

    bpy.ops.wm.read_homefile(use_empty=True)
    resihmr_blender.register()
    try:
        bpy.ops.resihmr.load_photo(filepath=str(PHOTO))
        assert bpy.ops.resihmr.detect() == {"FINISHED"}
        state = bpy.context.scene.resihmr
        suggested = [i for i, e in enumerate(state.residuals) if e.suggested]
        assert {state.residuals[i].kind for i in suggested} == {"left_transtibial", "right_transradial"}
        assert not any(e.enabled for e in state.residuals)  # nothing applied until confirmed
        bpy.ops.resihmr.accept_suggestion(index=suggested[0])
        assert state.residuals[suggested[0]].enabled
    finally:
        resihmr_blender.unregister()


def test_several_people_use_the_largest_and_report_the_others():
    import math

    from resihmr_blender.core.avatar_mesh import build_mesh
    from resihmr_blender.core.body_model import load_body_model
    from resihmr_blender.core.camera import Camera
    from resihmr_blender.core.raster import shaded

    model = load_body_model()
    camera = Camera(1600, 1200, 1500.0)
    image = np.full((1200, 1600, 3), 230.0)
    pose = np.zeros(63)
    pose[15 * 3 + 2], pose[16 * 3 + 2] = -1.2, 1.2  # arms down
    for x, depth in ((-0.6, 3.0), (0.8, 4.5)):  # the nearer person is the larger one, on the left
        params = {"betas": np.zeros(10), "global_orient": np.array([math.pi, 0, 0]), "body_pose": pose,
                  "transl": np.array([x, 0.1, depth])}
        mesh = build_mesh(model, params, [], pose=True)
        image = shaded(mesh.posed_vertices, mesh.faces, camera, background=image, alpha=1.0).astype(float)
    found = detect(image.astype(np.uint8))
    assert found.others == 1
    assert found.person.body25[BODY25_INDEX["Nose"], 0] < 800  # the larger, left person
