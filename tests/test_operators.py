"""Every operator through bpy.ops, headless, on the bundled example: the happy path and the error paths."""
from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
import pytest
import trimesh

import resihmr_blender

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo"


@pytest.fixture(scope="module", autouse=True)
def registered():
    bpy.ops.wm.read_homefile(use_empty=True)
    resihmr_blender.register()
    yield
    resihmr_blender.unregister()


@pytest.fixture()
def scene():
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene


def loaded(scene):
    bpy.ops.resihmr.load_photo(filepath=str(EXAMPLE / "photo_synthetic.png"))
    bpy.ops.resihmr.load_keypoints(filepath=str(EXAMPLE / "keypoints.json"))
    return scene.resihmr


def test_load_photo_and_keypoints_sets_up_the_scene(scene):
    state = loaded(scene)
    assert scene.camera is not None and scene.camera.name == "ResiHMR camera"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1080, 1920)
    assert scene.camera.data.background_images[0].image.size[0] == 1080
    assert [e.kind for e in state.residuals if e.enabled] == ["right_transradial", "left_transtibial"]
    points = bpy.data.objects["ResiHMR keypoints"]
    assert len(points.data.vertices) == 27  # 25 detected body keypoints (5 hallucinated) + 2 residual endpoints
    # the drawn keypoints project onto their pixels through the camera
    from bpy_extras.object_utils import world_to_camera_view
    kp = json.loads((EXAMPLE / "keypoints.json").read_text())["people"][0]["pose_keypoints_2d"]
    first = world_to_camera_view(scene, scene.camera, points.data.vertices[0].co)
    assert abs(first.x * 1080 - kp[0]) < 1.0 and abs((1 - first.y) * 1920 - kp[1]) < 1.0


def test_import_menu_entry_is_registered():
    names = [f.__name__ for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    assert "menu_import" in names


def test_two_kinds_on_one_limb_are_refused(scene):
    state = loaded(scene)
    with pytest.raises(RuntimeError, match="already has right_transradial"):
        bpy.ops.resihmr.toggle_residual(index=0)  # right_transhumeral on the right arm
    assert not state.residuals[0].enabled


def test_place_endpoint_sets_the_pixel(scene):
    state = loaded(scene)
    bpy.ops.resihmr.place_endpoint(index=5, pixel=(640.0, 1500.0))  # right_transtibial
    assert state.residuals[5].enabled and tuple(state.residuals[5].endpoint) == (640.0, 1500.0)
    with pytest.raises(RuntimeError, match="already has"):
        bpy.ops.resihmr.place_endpoint(index=4, pixel=(600.0, 1300.0))  # right_transfemoral: same leg


def test_fit_cut_measure_export_end_to_end(scene, tmp_path):
    state = loaded(scene)
    assert bpy.ops.resihmr.fit() == {"FINISHED"}
    avatar = next(o for o in scene.objects if o.get("resihmr_avatar") and o.type == "MESH")
    truth = json.loads((EXAMPLE / "ground_truth.json").read_text())["residuals"]
    for entry in state.residuals:
        if entry.enabled:
            assert entry.accepted and abs(entry.lam - truth[entry.kind]["lambda"]) < 0.15
    bpy.context.view_layer.objects.active = avatar
    assert bpy.ops.resihmr.cut_residual() == {"FINISHED"}
    verts = np.array([v.co[:] for v in avatar.data.vertices])
    faces = np.array([p.vertices[:] for p in avatar.data.polygons])
    assert trimesh.Trimesh(verts, faces, process=False).is_watertight
    with pytest.raises(RuntimeError, match="nothing to cut"):
        bpy.ops.resihmr.cut_residual()
    assert bpy.ops.resihmr.copy_measurements(csv=True) == {"FINISHED"}  # headless: no clipboard to read back
    from resihmr_blender.workflow import measurements_text
    text = measurements_text(avatar, csv=True)
    assert text.startswith("kind,lambda") and "left_transtibial" in text and "stump_volume_l" in text
    bpy.ops.resihmr.toggle_pose()
    assert avatar.parent.data.pose_position == "REST"
    bpy.ops.resihmr.toggle_pose()
    bpy.ops.resihmr.export(filepath=str(tmp_path / "avatar.glb"), preset="web")
    bpy.ops.resihmr.export(filepath=str(tmp_path / "avatar.fbx"), preset="unity")
    bpy.ops.resihmr.export_result(filepath=str(tmp_path / "result.json"))
    assert (tmp_path / "avatar.glb").stat().st_size > 1e5 and (tmp_path / "avatar.fbx").stat().st_size > 1e5
    result = json.loads((tmp_path / "result.json").read_text())
    assert {r["kind"] for r in result["people"][0]["residuals"]} == {"right_transradial", "left_transtibial"}
    # re-running the fit replaces the avatar instead of piling up copies
    bpy.ops.resihmr.fit()
    assert len([o for o in scene.objects if o.get("resihmr_avatar") and o.type == "MESH"]) == 1


def test_error_paths_report_clearly(scene, tmp_path):
    with pytest.raises(RuntimeError, match="poll"):
        bpy.ops.resihmr.fit()  # nothing loaded
    bad = tmp_path / "bad.json"
    bad.write_text('{"people": [{"pose_keypoints_2d": [1, 2]}]}')
    with pytest.raises(RuntimeError, match=r"bad\.json.*person 0.*pose_keypoints_2d"):
        bpy.ops.resihmr.load_keypoints(filepath=str(bad))
    assert not scene.resihmr.keypoints_path
    with pytest.raises(RuntimeError, match="poll"):
        bpy.ops.resihmr.cut_residual()
    state = loaded(scene)
    for entry in state.residuals:
        entry.enabled = False
    state.residuals[7].enabled = True
    state.residuals[7].endpoint = (20.0, 30.0)  # far from the left leg: contradicts the limb
    with pytest.raises(RuntimeError, match="contradicts its limb"):
        bpy.ops.resihmr.fit()
    assert not [o for o in scene.objects if o.get("resihmr_avatar")]  # nothing half-built


def test_missing_body_model_points_at_the_preference(scene, tmp_path, monkeypatch):
    from resihmr_blender import preferences

    loaded(scene)
    monkeypatch.setattr(preferences, "body_model_path", lambda context=None: str(tmp_path / "SMPLX_NEUTRAL.npz"))
    with pytest.raises(RuntimeError, match="SMPLX_NEUTRAL.npz.*not found.*preferences"):
        bpy.ops.resihmr.fit()


def test_operators_that_change_the_scene_support_undo():
    """Undo itself needs a window (ed.undo's poll fails headless); every changing operator registers an undo
    step, and a refused step leaves the object unchanged (tests/test_mesh.py checks that)."""
    from resihmr_blender import operators

    changing = {"resihmr.load_keypoints", "resihmr.load_photo", "resihmr.toggle_residual",
                "resihmr.place_endpoint", "resihmr.fit", "resihmr.cut_residual", "resihmr.toggle_pose",
                "resihmr.toggle_highlight"}
    for cls in operators.classes:
        if cls.bl_idname in changing:
            assert "UNDO" in cls.bl_options, cls.bl_idname


class FakeEvent:
    def __init__(self, type_, value="PRESS", x=0, y=0):
        self.type, self.value, self.mouse_region_x, self.mouse_region_y = type_, value, x, y


class FakeOperator:
    """Stands in for the operator instance so the modal handlers can be driven with simulated events headless
    (Blender only creates real operator instances through its event loop)."""

    def __init__(self, cls, **props):
        self.cls, self.reports = cls, []
        self.__dict__.update(props)

    def report(self, kind, message):
        self.reports.append((next(iter(kind)), message))

    def __getattr__(self, name):  # methods of the real class, bound to this stand-in
        return getattr(self.cls, name).__get__(self)


def test_fit_modal_finishes_or_cancels_on_escape(scene):
    import threading

    from resihmr_blender.operators.fit import RESIHMR_OT_Fit, compute

    loaded(scene)
    op = FakeOperator(RESIHMR_OT_Fit, _timer=None, _ticks=0)
    model, person, camera, fit_config, rafo_config = op._prepare(bpy.context)
    op._model, op._outcome = model, {"result": compute(model, person, camera, fit_config, rafo_config)}
    # Esc while the worker runs: cancelled, and the scene never saw the result
    op._thread = threading.Thread(target=lambda: None)
    op._thread.start()
    op._thread.join()
    assert op.modal(bpy.context, FakeEvent("ESC")) == {"CANCELLED"}
    assert not [o for o in scene.objects if o.get("resihmr_avatar")]
    assert op.reports[-1][0] == "WARNING" and "nothing changed" in op.reports[-1][1]
    # a timer tick after the worker finished: the avatar is built
    assert op.modal(bpy.context, FakeEvent("TIMER")) == {"FINISHED"}
    assert [o for o in scene.objects if o.get("resihmr_avatar") and o.type == "MESH"]
    # a worker error is reported, nothing is built
    bpy.ops.wm.read_homefile(use_empty=True)
    loaded(bpy.context.scene)
    op._outcome = {"error": ValueError("cannot fit this person: all keypoint confidences are zero")}
    assert op.modal(bpy.context, FakeEvent("TIMER")) == {"CANCELLED"}
    assert "confidences are zero" in op.reports[-1][1]
    assert not [o for o in bpy.context.scene.objects if o.get("resihmr_avatar")]


def test_place_endpoint_modal_with_simulated_clicks(scene, monkeypatch):
    from resihmr_blender.operators import residuals

    state = loaded(scene)
    monkeypatch.setattr(residuals, "image_pixel_from_view", lambda context, xy: (xy[0] * 2.0, xy[1] * 3.0))
    op = FakeOperator(residuals.RESIHMR_OT_PlaceEndpoint, index=7, pixel=(0.0, 0.0))
    context = type("Ctx", (), {"scene": scene, "workspace": None, "region": None, "region_data": None})()
    assert op.modal(context, FakeEvent("MOUSEMOVE")) == {"RUNNING_MODAL"}
    assert op.modal(context, FakeEvent("ESC")) == {"CANCELLED"}
    before = tuple(state.residuals[7].endpoint)
    assert tuple(state.residuals[7].endpoint) == before  # Esc changed nothing
    assert op.modal(context, FakeEvent("LEFTMOUSE", x=100, y=200)) == {"FINISHED"}
    assert tuple(state.residuals[7].endpoint) == (200.0, 600.0) and state.residuals[7].enabled
