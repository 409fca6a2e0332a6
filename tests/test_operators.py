"""Every operator through bpy.ops, headless, on the bundled example: the happy path and the error paths."""
from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
import pytest
import trimesh

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo"


pytestmark = pytest.mark.usefixtures("registered_addon")


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


def avatar_of(scene):
    found = [o for o in scene.objects if o.get("resihmr_avatar") and o.type == "MESH"]
    assert len(found) == 1
    return found[0]


def mesh_arrays(obj):
    verts = np.array([v.co[:] for v in obj.data.vertices])
    faces = np.array([p.vertices[:] for p in obj.data.polygons])
    return verts, faces


def test_fit_cut_measure_export_end_to_end(scene, tmp_path):
    loaded(scene)
    assert bpy.ops.resihmr.fit() == {"FINISHED"}
    avatar = avatar_of(scene)
    assert bpy.context.view_layer.objects.active == avatar  # the new avatar is the one the panels show
    truth = json.loads((EXAMPLE / "ground_truth.json").read_text())["residuals"]
    limbs = {limb.kind: limb for limb in avatar.resihmr.limbs}
    assert set(limbs) == {"right_transradial", "left_transtibial"}
    for kind, limb in limbs.items():
        assert limb.accepted and not limb.by_hand and abs(limb.lam - truth[kind]["lambda"]) < 0.15
        assert limb.volume_l > 0 and limb.length_m > 0
        # the panel's λ of a low and a steep tilt, inside the interval (steeper: a longer stump, a smaller λ)
        low, steep = limb.lam_hypotheses
        assert limb.lam_interval[0] <= steep < low <= limb.lam_interval[1]
    # Fit builds, cuts and seals in one step (workflow.apply): closed, every stump marked
    verts, faces = mesh_arrays(avatar)
    assert trimesh.Trimesh(verts, faces, process=False).is_watertight
    assert len(avatar.data.vertices) < 13000
    assert bpy.ops.resihmr.cut_residual() == {"FINISHED"}  # again: the same cuts, not stacked
    assert np.array_equal(mesh_arrays(avatar)[1], faces)
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
    assert avatar_of(scene).name == "ResiHMR"


def test_load_motion_plays_on_the_avatar_and_exports(scene, tmp_path):
    """Sidebar: Load motion (a frame range of an AMASS file) keys the avatar from frame 0, the timeline covers it,
    the stump moves with it, the animated GLB carries it; a bad file is one line and changes nothing."""
    from test_animation import walking_motion
    from test_export import glb_json

    loaded(scene)
    bpy.ops.resihmr.fit()
    avatar = avatar_of(scene)
    walk = walking_motion(tmp_path / "walk.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("no motion here")
    with pytest.raises(RuntimeError, match="bad.npz"):
        bpy.ops.resihmr.load_motion(filepath=str(bad))
    with pytest.raises(RuntimeError, match=r"frames 5\.\.40 not in"):
        bpy.ops.resihmr.load_motion(filepath=str(walk), first=5, last=40)
    assert avatar.parent.animation_data is None or avatar.parent.animation_data.action is None
    assert bpy.ops.resihmr.load_motion(filepath=str(walk), first=2, last=9) == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end) == (0, 7)
    from resihmr_blender.mesh.build import evaluated_vertices

    scene.frame_set(0)
    first = evaluated_vertices(avatar)
    scene.frame_set(7)
    assert np.abs(evaluated_vertices(avatar) - first).max() > 0.05  # the body walks
    bpy.ops.resihmr.export(filepath=str(tmp_path / "walk.glb"), preset="web", animation=True)
    clips = {a["name"] for a in glb_json(tmp_path / "walk.glb")["animations"]}
    assert clips == {"photo_pose", "ResiHMR motion"}


def strip_timings(document):
    for person in document["people"]:
        person.pop("timings_s", None)
    return document


def test_sidebar_result_json_equals_the_command_lines(scene, tmp_path):
    from resihmr_blender.cli import main

    assert main(["run", str(EXAMPLE / "keypoints.json"), "--out", str(tmp_path / "cli"), "--formats", "json"]) == 0
    cli = json.loads((tmp_path / "cli" / "demo" / "result.json").read_text())
    loaded(scene)
    bpy.ops.resihmr.fit()
    bpy.ops.resihmr.export_result(filepath=str(tmp_path / "sidebar.json"))
    sidebar = json.loads((tmp_path / "sidebar.json").read_text())
    assert json.dumps(strip_timings(sidebar), sort_keys=True) == json.dumps(strip_timings(cli), sort_keys=True)


def test_live_lambda_recuts_the_stump_and_marks_it_set_by_hand(scene, tmp_path):
    loaded(scene)
    bpy.ops.resihmr.fit()
    avatar = avatar_of(scene)
    limb = next(limb for limb in avatar.resihmr.limbs if limb.kind == "left_transtibial")
    rafo_lambda, volume = limb.lam, limb.volume_l
    first_verts, first_faces = mesh_arrays(avatar)

    def stump_tip():  # lowest residual-limb vertex of the left leg in the rest pose (Blender z up)
        verts, _ = mesh_arrays(avatar)
        mask = np.zeros(len(verts), np.float32)
        avatar.data.attributes["residual_mask"].data.foreach_get("value", mask)
        left_leg = (mask > 0.5) & (verts[:, 0] > 0.02) & (verts[:, 2] < 0.6)
        return verts[left_leg, 2].min()

    tip = stump_tip()
    limb.lam = 0.9  # what dragging the slider does
    assert not avatar.resihmr.last_error
    assert stump_tip() > tip + 0.1  # λ 0.9: the stump ends near the knee, 10+ cm higher
    assert limb.by_hand and limb.volume_l < volume
    entry = next(r for r in json.loads(avatar.resihmr.result_json)["people"][0]["residuals"]
                 if r["kind"] == "left_transtibial")
    assert entry["lambda"] == 0.9 and entry["lambda_source"] == "hand"
    assert entry["stump_volume_l"] == pytest.approx(limb.volume_l, abs=1e-6)
    limb.lam = rafo_lambda  # back: the same mesh as the first cut, nothing stacked
    verts, faces = mesh_arrays(avatar)
    assert np.array_equal(faces, first_faces) and np.allclose(verts, first_verts, atol=1e-6)
    bpy.ops.resihmr.export_result(filepath=str(tmp_path / "result.json"))
    exported = json.loads((tmp_path / "result.json").read_text())["people"][0]["residuals"]
    assert {r["kind"]: r["lambda_source"] for r in exported} == {"right_transradial": "rafo",
                                                                "left_transtibial": "hand"}


def test_cut_over_several_limbs_is_all_or_nothing(scene):
    loaded(scene)
    bpy.ops.resihmr.fit()
    avatar = avatar_of(scene)
    bpy.ops.resihmr.restore_limbs()
    uncut_verts, uncut_faces = mesh_arrays(avatar)
    assert "residual_mask" not in avatar.data.attributes or not any(
        d.value for d in avatar.data.attributes["residual_mask"].data)
    document = json.loads(avatar.resihmr.result_json)
    document["people"][0]["residuals"][1]["lambda"] = 1.7  # the second limb cannot be cut
    avatar.resihmr.result_json = json.dumps(document)
    with pytest.raises(RuntimeError, match="λ"):
        bpy.ops.resihmr.cut_residual()
    verts, faces = mesh_arrays(avatar)
    assert np.array_equal(faces, uncut_faces) and np.array_equal(verts, uncut_verts)  # not even the first


def test_highlight_toggle_hides_and_brings_back_the_red(scene):
    from resihmr_blender.core.colours import RESIDUAL_RGBA, SKIN_RGBA
    from resihmr_blender.mesh.cut import RED_MATERIAL

    loaded(scene)
    bpy.ops.resihmr.fit()
    material = bpy.data.materials[RED_MATERIAL]
    assert np.allclose(material.diffuse_color, RESIDUAL_RGBA)
    scene.resihmr.show_residual_highlight = False
    assert np.allclose(material.diffuse_color, SKIN_RGBA)
    scene.resihmr.show_residual_highlight = True
    assert np.allclose(material.diffuse_color, RESIDUAL_RGBA)  # the colour came back


def test_operators_act_on_the_active_avatar_only(scene):
    loaded(scene)
    bpy.ops.resihmr.fit()
    bpy.ops.mesh.primitive_cube_add()
    assert bpy.context.active_object.name == "Cube"
    assert not bpy.ops.resihmr.cut_residual.poll() and not bpy.ops.resihmr.export_result.poll()


def test_undo_brings_back_the_state_before_an_operator(scene):
    """Headless, operators called from Python push no undo step of their own (Blender does that for UI calls
    of operators with UNDO in bl_options); the steps are pushed by hand around them. What this checks is that
    everything an operator changes lives in undoable data: one undo restores the mesh, its result and λ."""
    loaded(scene)
    bpy.ops.resihmr.fit()
    avatar = avatar_of(scene)
    cut_count, document = len(avatar.data.vertices), avatar.resihmr.result_json
    bpy.ops.ed.undo_push(message="before")
    avatar.resihmr.limbs[1].lam = 0.9  # live λ re-cut
    bpy.ops.resihmr.restore_limbs()
    bpy.ops.ed.undo_push(message="after")
    restored = bpy.data.objects["ResiHMR"]
    assert len(restored.data.vertices) > cut_count and restored.resihmr.result_json != document
    bpy.ops.ed.undo()
    avatar = bpy.data.objects["ResiHMR"]
    assert len(avatar.data.vertices) == cut_count and avatar.resihmr.result_json == document
    assert not avatar.resihmr.limbs[1].by_hand
    bpy.ops.resihmr.restore_limbs()  # the uncut mesh the live cut starts from survived the undo too
    assert len(avatar.data.vertices) > cut_count


def test_load_validates_before_it_changes_anything(scene, tmp_path):
    no_size = tmp_path / "no_size.json"
    doc = json.loads((EXAMPLE / "keypoints.json").read_text())
    doc.pop("image", None)
    no_size.write_text(json.dumps(doc))
    with pytest.raises(RuntimeError, match="image size unknown"):
        bpy.ops.resihmr.load_keypoints(filepath=str(no_size))
    state = scene.resihmr
    assert not state.keypoints_path and len(state.residuals) == 0 and scene.camera is None
    assert "ResiHMR keypoints" not in bpy.data.objects
    text = tmp_path / "photo.png"
    text.write_text("not a picture")
    with pytest.raises(RuntimeError, match="photo.png"):
        bpy.ops.resihmr.load_photo(filepath=str(text))
    assert not state.photo_path and not bpy.data.images  # no datablock left behind


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


def test_fit_worker_progress_escape_and_errors_through_one_path(scene):
    from resihmr_blender.operators.fit import RESIHMR_OT_Fit, Worker

    loaded(scene)
    op = FakeOperator(RESIHMR_OT_Fit, _timer=None, _worker=None)
    # a worker run to the end went through the pipeline's real stages
    worker = Worker(*op._prepare(bpy.context))
    worker.thread.start()
    worker.thread.join()
    assert (worker.stage, worker.fraction) == ("done", 1.0) and worker.error is None
    # Esc while the worker runs: it is stopped (not left running) and the scene never sees a result
    op._worker = Worker(*op._prepare(bpy.context))
    op._worker.thread.start()
    assert op.modal(bpy.context, FakeEvent("ESC")) == {"CANCELLED"}
    assert not op._worker.thread.is_alive() and op._worker.result is None
    assert not [o for o in scene.objects if o.get("resihmr_avatar")]
    assert op.reports[-1][0] == "WARNING" and "nothing changed" in op.reports[-1][1]
    # a timer tick after a finished worker builds the avatar
    op._worker = worker
    assert op.modal(bpy.context, FakeEvent("TIMER")) == {"FINISHED"}
    assert avatar_of(scene)
    # a worker error is reported on one line through the same path as execute, nothing is built
    bpy.ops.wm.read_homefile(use_empty=True)
    loaded(bpy.context.scene)
    from resihmr_blender.core.fit import FitError

    worker.error = FitError("all keypoint confidences are zero\n  (second line)")
    assert op.modal(bpy.context, FakeEvent("TIMER")) == {"CANCELLED"}
    assert op.reports[-1] == ("ERROR", "all keypoint confidences are zero (second line)")
    assert not [o for o in bpy.context.scene.objects if o.get("resihmr_avatar")]
    # invoke with a bad request: refused through the same path, before any thread starts
    bpy.context.scene.resihmr.residuals[0].enabled = True  # a second kind on the right arm
    assert op.invoke(bpy.context, FakeEvent("LEFTMOUSE")) == {"CANCELLED"}
    assert "two residual kinds on the right arm" in op.reports[-1][1]


def test_place_endpoint_modal_with_simulated_clicks(scene, monkeypatch):
    from resihmr_blender.operators import residuals

    state = loaded(scene)
    monkeypatch.setattr(residuals, "image_pixel_from_view", lambda context, xy: (xy[0] * 2.0, xy[1] * 3.0))
    op = FakeOperator(residuals.RESIHMR_OT_PlaceEndpoint, index=7, pixel=(0.0, 0.0), _avatar=None, _before=None,
                      _dragging=False, _started=True)
    context = type("Ctx", (), {"scene": scene, "workspace": None, "region": None, "region_data": None})()
    before = tuple(state.residuals[7].endpoint)
    assert op.modal(context, FakeEvent("MOUSEMOVE")) == {"RUNNING_MODAL"}
    assert op.modal(context, FakeEvent("LEFTMOUSE", value="RELEASE", x=5, y=5)) == {"RUNNING_MODAL"}
    assert op.modal(context, FakeEvent("ESC")) == {"CANCELLED"}
    assert before != (200.0, 600.0) and tuple(state.residuals[7].endpoint) == before  # Esc changed nothing
    assert op.modal(context, FakeEvent("LEFTMOUSE", x=100, y=200)) == {"FINISHED"}
    assert tuple(state.residuals[7].endpoint) == (200.0, 600.0) and state.residuals[7].enabled


def test_endpoint_tool_resolves_the_limb_and_recuts_live(scene, monkeypatch):
    from resihmr_blender.operators import residuals

    state = loaded(scene)
    bpy.ops.resihmr.fit()
    avatar = avatar_of(scene)
    before_doc = avatar.resihmr.result_json
    before_verts, before_faces = mesh_arrays(avatar)
    person = json.loads(before_doc)["people"][0]
    entry = next(r for r in person["residuals"] if r["kind"] == "left_transtibial")
    # a new endpoint halfway between the clicked one and the knee: the stump gets shorter, λ larger
    knee_px = np.array(person["joints_2d_body25"][13])  # LKnee
    target = 0.5 * (np.array(entry["target_2d"]) + knee_px)
    assert bpy.ops.resihmr.place_endpoint(index=7, pixel=tuple(target)) == {"FINISHED"}
    after = next(r for r in json.loads(avatar.resihmr.result_json)["people"][0]["residuals"]
                 if r["kind"] == "left_transtibial")
    assert after["endpoint_source"] == "hand" and after["accepted"] and after["reproj_error_px"] < 1.0
    assert after["lambda"] > entry["lambda"] + 0.2 and after["stump_volume_l"] < entry["stump_volume_l"]
    limb = next(limb for limb in avatar.resihmr.limbs if limb.kind == "left_transtibial")
    assert limb.lam == pytest.approx(after["lambda"], abs=1e-6)
    assert len(avatar.data.vertices) != len(before_verts)  # re-cut from the uncut body, not stacked on the cut
    assert tuple(state.residuals[7].endpoint) == pytest.approx(tuple(target))
    # the same endpoint again gives the same result (RAFO is deterministic, the cut is not stacked)
    recut_verts = mesh_arrays(avatar)[0]
    bpy.ops.resihmr.place_endpoint(index=7, pixel=tuple(target))
    assert np.array_equal(mesh_arrays(avatar)[0], recut_verts)
    # back to the file's endpoint: the avatar of the original fit, vertex for vertex
    bpy.ops.resihmr.place_endpoint(index=7, pixel=tuple(entry["target_2d"]))
    verts, faces = mesh_arrays(avatar)
    assert np.array_equal(faces, before_faces) and np.allclose(verts, before_verts, atol=1e-6)

    # dragging with the modal tool: the stump follows the mouse; Esc puts everything back
    monkeypatch.setattr(residuals, "image_pixel_from_view", lambda context, xy: (float(xy[0]), float(xy[1])))
    op = FakeOperator(residuals.RESIHMR_OT_PlaceEndpoint, index=7, pixel=(0.0, 0.0), _avatar=avatar,
                      _before=json.loads(avatar.resihmr.result_json), _dragging=False, _started=True)
    first = json.loads(avatar.resihmr.result_json)
    assert op.modal(bpy.context, FakeEvent("LEFTMOUSE", x=int(target[0]), y=int(target[1]))) == {"RUNNING_MODAL"}
    dragged = json.loads(avatar.resihmr.result_json)["people"][0]["residuals"][1]
    assert dragged["lambda"] > entry["lambda"] + 0.2  # live: the avatar already follows
    assert op.modal(bpy.context, FakeEvent("MOUSEMOVE", x=int(knee_px[0]), y=int(knee_px[1]))) == {"RUNNING_MODAL"}
    assert op.modal(bpy.context, FakeEvent("ESC")) == {"CANCELLED"}
    assert json.loads(avatar.resihmr.result_json) == first
    verts, faces = mesh_arrays(avatar)
    assert np.array_equal(faces, before_faces) and np.allclose(verts, before_verts, atol=1e-6)
