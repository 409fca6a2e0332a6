"""Prostheses fitted to the embedded body's stumps: closed parts, clear of the skin, sized by the body's own
skeleton and intact side (core/prosthesis.py); rigged on the avatar and following motions (mesh/prosthesis.py);
exported and re-imported."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import JOINT_INDEX, load_body_model
from resihmr_blender.core.prosthesis import (
    GAP,
    ProsthesisError,
    cylinder,
    fit_prosthesis,
    signed_distance,
)
from resihmr_blender.core.residuals import RESIDUALS, residual_by_name


@pytest.fixture(scope="module")
def body():
    model = load_body_model(dtype=torch.float64)
    betas = np.linspace(-0.8, 0.8, 10)
    with torch.no_grad():
        out = model.forward(betas=torch.tensor(betas[None]))
    return {"model": model, "betas": betas, "joints": out.rest_joints[0].numpy(),
            "verts": out.vertices[0].numpy(), "weights": model.weights.double().numpy()}


def fitted(body, kind, lam, terminal=None, with_cover=False):
    mesh = build_mesh(body["model"], {"betas": body["betas"]}, [(kind, lam)], pose=False)
    device = fit_prosthesis(kind, mesh.rest_vertices, mesh.faces, mesh.weights, body["joints"], body["verts"],
                            body["weights"], terminal, with_cover=with_cover)
    return mesh, device


def face_points(part):
    """Vertices and face centres: an intersection between vertices shows at the centres."""
    return np.concatenate([part.vertices, part.vertices[part.faces].mean(axis=1)])


def test_signed_distance_matches_a_cylinder():
    verts, faces = cylinder([0, 0, 0], [0, 0, 1], 0.1)
    points = np.array([[0.0, 0.0, 0.5], [0.2, 0.0, 0.5], [0.0, 0.0, 1.3], [0.05, 0.0, 0.5]])
    d = signed_distance(points, verts, faces, neighbours=60)
    assert d[0] == pytest.approx(-0.1, abs=0.002) and d[1] == pytest.approx(0.1, abs=0.002)
    assert d[2] == pytest.approx(0.3, abs=1e-9) and d[3] == pytest.approx(-0.05, abs=0.002)


@pytest.mark.parametrize("kind", [k.name for k in RESIDUALS])
def test_every_part_closed_and_clear_of_the_body(body, kind):
    mesh, device = fitted(body, kind, 0.45, with_cover=True)
    names = [p.name for p in device.parts]
    assert names[0] == "socket" and names[-1] == ("foot" if "leg" in device.kind.limb else "hand")
    assert "cover" in names
    if kind.endswith(("transfemoral", "transhumeral")):
        assert ("knee" if "leg" in device.kind.limb else "elbow") in names and "lower_cover" in names
    for part in device.parts:
        closed = trimesh.Trimesh(part.vertices, part.faces, process=False)
        assert closed.is_watertight and closed.is_winding_consistent and closed.volume > 0, part.name
        assert np.allclose(part.weights.sum(axis=1), 1.0)
        # no part touches the rest body: every vertex and face centre at least 1 mm outside the skin
        clearance = signed_distance(face_points(part), mesh.rest_vertices, mesh.faces)
        assert clearance.min() >= 0.001, (part.name, clearance.min())
    socket = device.part("socket")
    inner = signed_distance(socket.vertices[device.inner_vertices], mesh.rest_vertices, mesh.faces)
    assert inner.min() >= 0.001 and inner.max() <= 3 * GAP, inner.max()
    # it hugs the stump at the gap: only over folds in the skin does it stand further off
    assert np.median(inner) == pytest.approx(GAP, abs=0.0005) and (inner > 2 * GAP).mean() < 0.05
    # the socket covers the stump's distal end and is trimmed below the upstream joint
    assert 0.0 < device.dimensions["socket_trim_m"] < device.dimensions["stump_length_m"]


def test_short_thigh_socket_clears_the_other_thigh(body):
    mesh, device = fitted(body, "left_transfemoral", 0.7)
    right_thigh = mesh.weights.argmax(axis=1) == JOINT_INDEX["right_hip"]
    socket = device.part("socket")
    gap = np.linalg.norm(socket.vertices[:, None] - mesh.rest_vertices[right_thigh][None], axis=2).min()
    assert gap >= 0.01
    assert device.dimensions["socket_trim_m"] > 0.32 * 0.1  # moved down from the crotch


def test_very_short_shank_still_gets_a_socket(body):
    mesh, device = fitted(body, "right_transtibial", 0.85)  # a stump of ~6 cm below the knee
    socket = device.part("socket")
    assert trimesh.Trimesh(socket.vertices, socket.faces, process=False).is_watertight
    assert signed_distance(face_points(socket), mesh.rest_vertices, mesh.faces).min() >= 0.001
    assert device.dimensions["socket_trim_m"] < device.dimensions["stump_length_m"] < 0.1


def test_leg_lands_on_the_ankle_with_the_intact_foot(body):
    joints, verts = body["joints"], body["verts"]
    for kind in ("left_transtibial", "right_transfemoral"):
        _, device = fitted(body, kind, 0.4)
        side, other = kind.split("_")[0], "right" if kind.startswith("left") else "left"
        ankle = joints[JOINT_INDEX[f"{side}_ankle"]]
        pylon = device.part("lower_pylon" if "femoral" in kind else "pylon")
        assert np.linalg.norm(pylon.vertices - ankle, axis=1).min() < PYLON_TOL  # the pylon ends at the ankle
        intact = np.isin(body["weights"].argmax(1), [JOINT_INDEX[f"{other}_ankle"], JOINT_INDEX[f"{other}_foot"]])
        sole, toe, heel = verts[intact, 1].min(), verts[intact, 2].max(), verts[intact, 2].min()
        foot = device.part("foot").vertices
        # the same sole level (the avatar stands level), length and ankle height as the other foot
        assert foot[:, 1].min() == pytest.approx(sole, abs=0.002)
        assert np.ptp(foot[:, 2]) == pytest.approx(toe - heel, abs=0.003)
        assert device.dimensions["ankle_height_m"] == pytest.approx(joints[JOINT_INDEX[f"{other}_ankle"], 1] - sole,
                                                                     abs=1e-6)
        if "femoral" in kind:  # the knee unit sits on the body's own knee joint
            knee = device.part("knee").vertices.mean(axis=0)
            assert np.linalg.norm(knee - joints[JOINT_INDEX[f"{side}_knee"]]) < 0.002


PYLON_TOL = 0.02  # the pylon's end ring is its radius (16 mm) around the joint


def test_arm_hand_and_hook_on_the_wrist(body):
    joints, verts = body["joints"], body["verts"]
    _, device = fitted(body, "right_transradial", 0.5, "hand")
    wrist = joints[JOINT_INDEX["right_wrist"]]
    hand = device.part("hand")
    assert set(hand.bones) == {JOINT_INDEX["right_wrist"]}
    # as long as the other hand: its furthest point from the wrist along the arm
    left = np.isin(body["weights"].argmax(1), [JOINT_INDEX["left_wrist"]] +
                   [i for n, i in JOINT_INDEX.items() if n.startswith("left_") and n[5:-1] in
                    ("index", "middle", "pinky", "ring", "thumb")])
    axis = joints[JOINT_INDEX["left_wrist"]] - joints[JOINT_INDEX["left_elbow"]]
    axis /= np.linalg.norm(axis)
    intact_length = ((verts[left] - joints[JOINT_INDEX["left_wrist"]]) @ axis).max()
    own_axis = wrist - joints[JOINT_INDEX["right_elbow"]]
    own_axis /= np.linalg.norm(own_axis)
    assert ((hand.vertices - wrist) @ own_axis).max() == pytest.approx(intact_length, abs=0.003)
    _, hooked = fitted(body, "right_transradial", 0.5, "hook")
    assert hooked.part("hook").vertices.shape[0] > 0 and hooked.dimensions["hook_length_m"] < intact_length
    with pytest.raises(ProsthesisError, match="terminal device 'foot' unknown for the right arm"):
        fitted(body, "right_transradial", 0.5, "foot")


# ---------------------------------------------------------------------------------------------------------------
# On the live avatar (Blender)

FRAMES = 10
LIMBS = ("left_transtibial", "right_transfemoral", "right_transradial", "left_transhumeral")


def swinging_motion(frames=FRAMES):
    """AMASS-layout poses: hips, knees, shoulders and elbows swing through large angles."""
    t = np.linspace(0, 2 * np.pi, frames)
    poses = np.zeros((frames, 55, 3))
    poses[:, 0, 0] = np.pi / 2  # AMASS root: body y-up -> world z-up
    poses[:, JOINT_INDEX["left_hip"], 0] = -0.6 * np.sin(t)
    poses[:, JOINT_INDEX["right_hip"], 0] = 0.6 * np.sin(t)
    poses[:, JOINT_INDEX["left_knee"], 0] = 1.0 * np.clip(np.sin(t), 0, None)
    poses[:, JOINT_INDEX["right_knee"], 0] = 1.0 * np.clip(-np.sin(t), 0, None)
    poses[:, JOINT_INDEX["left_shoulder"], 2] = 0.8 * np.sin(t)
    poses[:, JOINT_INDEX["right_shoulder"], 1] = 0.6 * np.sin(t)
    poses[:, JOINT_INDEX["left_elbow"], 1] = -1.2 * np.clip(np.sin(t), 0, None)
    poses[:, JOINT_INDEX["right_elbow"], 1] = 1.2 * np.clip(np.sin(t), 0, None)
    trans = np.stack([np.zeros(frames), np.linspace(0, 0.6, frames), np.full(frames, 0.9)], axis=1)
    return poses, trans


@pytest.fixture()  # each test its own: the export tests re-import into a fresh scene
def rigged():
    import bpy

    from resihmr_blender.mesh.build import build_avatar
    from resihmr_blender.mesh.cut import cut_residual
    from resihmr_blender.mesh.prosthesis import add_prosthesis

    bpy.ops.wm.read_homefile(use_empty=True)
    model = load_body_model()
    arm, obj = build_avatar(model, {"betas": np.linspace(-0.5, 0.5, 10), "global_orient": np.array([np.pi, 0, 0]),
                                    "body_pose": np.zeros(63), "transl": np.zeros(3)})
    for kind, lam in zip(LIMBS, (0.4, 0.5, 0.5, 0.45)):
        cut_residual(obj, kind, lam)
    devices = {kind: add_prosthesis(obj, kind, terminal="hook" if kind == "left_transhumeral" else None,
                                    cover=kind == "right_transfemoral") for kind in LIMBS}
    return arm, obj, devices


def socket_inner(device) -> np.ndarray:
    """Vertex indices of the socket's inner surface: the socket is material 0, outer surface then inner."""
    index = np.empty(len(device.data.polygons), np.int32)
    device.data.polygons.foreach_get("material_index", index)
    socket = np.unique([v for p, m in zip(device.data.polygons, index) if m == 0 for v in p.vertices])
    return socket[len(socket) // 2:]


def body_faces(obj) -> np.ndarray:
    faces = np.empty(len(obj.data.loops), np.int32)
    obj.data.polygons.foreach_get("vertices", faces)
    return faces.reshape(-1, 3)


def distal_bone(kind: str) -> str:
    limb = residual_by_name(kind).limb
    return limb.replace("_leg", "_ankle").replace("_arm", "_wrist")


def on_bone(device, bone: str) -> np.ndarray:
    """Vertices weighted fully to `bone`."""
    group = device.vertex_groups[bone].index
    return np.array([v.index for v in device.data.vertices
                     if len(v.groups) == 1 and v.groups[0].group == group and v.groups[0].weight == 1.0])


def test_devices_are_rigged_on_the_limbs_bones(rigged):
    arm, obj, devices = rigged
    for kind, device in devices.items():
        assert device.parent == arm and device.modifiers["Armature"].object == arm
        groups = {g.name for g in device.vertex_groups}
        side = kind.split("_")[0]
        upstream = residual_by_name(kind).upstream_joint
        distal = f"{side}_ankle" if "leg" in residual_by_name(kind).limb else f"{side}_wrist"
        assert {upstream, distal} <= groups, groups
        if kind.endswith(("femoral", "humeral")):
            assert residual_by_name(kind).anchor_joint in groups  # the knee / elbow unit's bone


def test_motion_keeps_the_socket_on_the_stump_and_moves_the_device(rigged):
    import bpy

    from resihmr_blender.mesh.animation import apply_motion
    from resihmr_blender.mesh.build import evaluated_vertices

    arm, obj, devices = rigged
    faces = body_faces(obj)
    inner = {kind: socket_inner(d) for kind, d in devices.items()}
    arm.data.pose_position = "REST"
    bpy.context.view_layer.update()
    body = evaluated_vertices(obj)
    rest_gap = {k: signed_distance(evaluated_vertices(d)[inner[k]], body, faces) for k, d in devices.items()}
    arm.data.pose_position = "POSE"
    poses, trans = swinging_motion()
    apply_motion(arm, poses, trans)
    worst = {k: [0.0, 0.0] for k in devices}
    distal_local = {}
    for frame in range(FRAMES):
        bpy.context.scene.frame_set(frame)
        body = evaluated_vertices(obj)
        evaluated = arm.evaluated_get(bpy.context.evaluated_depsgraph_get())
        for kind, device in devices.items():
            verts = evaluated_vertices(device)
            gap = signed_distance(verts[inner[kind]], body, faces)
            worst[kind][0] = min(worst[kind][0], gap.min())  # penetration: negative
            # separation: the gap never opens beyond 5 mm, nor grows by more than 5 mm over its rest value
            worst[kind][1] = max(worst[kind][1], gap.max(), (gap - rest_gap[kind]).max())
            bone = distal_bone(kind)
            matrix = np.array(evaluated.matrix_world) @ np.array(evaluated.pose.bones[bone].matrix)
            tail = verts[on_bone(device, bone)]  # the foot (but its toes) / hand / hook: rigid on the ankle / wrist
            local = (np.linalg.inv(matrix) @ np.c_[tail, np.ones(len(tail))].T).T[:, :3]
            distal_local.setdefault(kind, []).append(local)
    for kind, (penetration, separation) in worst.items():
        assert penetration >= -0.002, (kind, penetration)
        assert separation <= 0.005, (kind, separation)
        moved = np.ptp(np.stack(distal_local[kind]), axis=0).max()
        assert moved < 1e-4, (kind, moved)  # the foot / hand / hook rides its bone exactly
    # and the motion really moved them: the same vertices in the world differ between frames by decimetres
    bpy.context.scene.frame_set(0)
    first = evaluated_vertices(devices["right_transfemoral"])
    bpy.context.scene.frame_set(FRAMES // 4)
    assert np.linalg.norm(evaluated_vertices(devices["right_transfemoral"]) - first, axis=1).max() > 0.1


def imported_devices(path):
    """(armatures, {skinned mesh name: (its rig's name, sorted names of the bones weighting it, face count)})."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    if path.suffix == ".glb":
        bpy.ops.import_scene.gltf(filepath=str(path))
    else:
        bpy.ops.import_scene.fbx(filepath=str(path))
    arms = [o.name for o in bpy.data.objects if o.type == "ARMATURE"]
    meshes = {o.name: (o.find_armature().name if o.find_armature() else None,
                       sorted({o.vertex_groups[g.group].name for v in o.data.vertices for g in v.groups
                               if g.weight > 0}), len(o.data.polygons))
              for o in bpy.data.objects if o.type == "MESH" and o.find_armature() is not None}
    return arms, meshes


def socket_gaps(body_name: str = "ResiHMR") -> dict[str, tuple[float, float]]:
    """In the imported scene: per device, the (min, max) distance of its socket (material 0) from the body."""
    import bpy

    from resihmr_blender.mesh.build import evaluated_vertices

    body = bpy.data.objects[body_name]
    body_verts, body_tris = evaluated_vertices(body), np.array([list(p.vertices) for p in body.data.polygons])
    gaps = {}
    for o in bpy.data.objects:
        if o.type == "MESH" and o.name.startswith(f"{body_name} prosthesis"):
            socket = np.unique([v for p in o.data.polygons if p.material_index == 0 for v in p.vertices])
            gap = signed_distance(evaluated_vertices(o)[socket], body_verts, body_tris)
            gaps[o.name] = (gap.min(), gap.max())
    return gaps


def test_devices_exported_on_the_same_bones(rigged, tmp_path):
    import json
    import shutil
    import subprocess
    from pathlib import Path

    import bpy

    from resihmr_blender.mesh.export import export_avatar

    arm, obj, devices = rigged
    expected = {d.name: (sorted({d.vertex_groups[g.group].name for v in d.data.vertices for g in v.groups
                                 if g.weight > 0}), len(d.data.polygons)) for d in devices.values()}
    names_before = sorted(o.name for o in bpy.data.objects)
    glb = export_avatar(arm, obj, tmp_path / "with.glb")
    fbx = export_avatar(arm, obj, tmp_path / "with.fbx")
    photo = export_avatar(arm, obj, tmp_path / "photo.glb", pose="photo", photo_params={
        "betas": np.zeros(10), "global_orient": np.array([np.pi, 0.3, 0.0]), "transl": np.array([0.2, 0.1, 3.0]),
        "body_pose": np.r_[np.zeros(12), 0.6, 0.0, 0.0, np.zeros(48)]})  # the right knee bent
    assert sorted(o.name for o in bpy.data.objects) == names_before  # the scene's devices keep their names
    node = shutil.which("node")
    assert node, "node is needed for the glTF validator"
    validator = Path(__file__).resolve().parents[1] / "tools" / "gltf_validate.cjs"
    report = json.loads(subprocess.run([node, str(validator), str(glb)], capture_output=True, text=True,
                                       timeout=120, check=False).stdout)
    assert report["numErrors"] == 0 and report["numWarnings"] == 0, report
    document = json.loads(glb.read_bytes()[20:20 + int.from_bytes(glb.read_bytes()[12:16], "little")])
    assert len(document["skins"]) == 1  # one skeleton for the body and every device
    assert {m["name"] for m in document["materials"]} >= {f"{d.name} socket" for d in devices.values()}
    for path in (glb, fbx):
        arms, meshes = imported_devices(path)
        assert len(arms) == 1 and len(meshes) == 1 + len(expected), (path.suffix, sorted(meshes))
        for name, (groups, polygons) in expected.items():
            rig, got_groups, got_polygons = meshes[name]
            assert rig == arms[0] and got_groups == groups and got_polygons == polygons, (path.suffix, name)
        # placed with the body (both moved onto the ground): the sockets still sit on their stumps
        for name, (near, far) in socket_gaps().items():
            assert 0.001 <= near and far <= GAP + 0.02, (path.name, name, near, far)
    imported_devices(photo)
    gaps = socket_gaps()
    assert len(gaps) == len(expected) and all(0.001 <= near <= GAP + 0.001 for near, _ in gaps.values()), gaps


def test_devices_off_are_left_out(tmp_path):
    import bpy

    from resihmr_blender.mesh.build import build_avatar
    from resihmr_blender.mesh.cut import cut_residual
    from resihmr_blender.mesh.export import export_avatar
    from resihmr_blender.mesh.prosthesis import add_prosthesis, devices, remove_prosthesis

    bpy.ops.wm.read_homefile(use_empty=True)
    arm, obj = build_avatar(load_body_model(), {"betas": np.zeros(10)})
    cut_residual(obj, "left_transtibial", 0.5)
    cut_residual(obj, "right_transradial", 0.5)
    add_prosthesis(obj, "left_transtibial")
    add_prosthesis(obj, "right_transradial", terminal="hook")
    assert remove_prosthesis(obj, "right_transradial") and not remove_prosthesis(obj, "right_transradial")
    assert [d.get("resihmr_prosthesis") for d in devices(obj)] == ["left_transtibial"]
    _, meshes = imported_devices(export_avatar(arm, obj, tmp_path / "one.glb"))
    assert sorted(meshes) == sorted(["ResiHMR", "ResiHMR prosthesis left_transtibial"])
    with pytest.raises(ProsthesisError, match="left_transfemoral is not cut on this avatar"):
        bpy.ops.wm.read_homefile(use_empty=True)
        arm, obj = build_avatar(load_body_model(), {"betas": np.zeros(10)})
        add_prosthesis(obj, "left_transfemoral")


def test_cli_run_with_prostheses(tmp_path, capsys):
    import json
    from pathlib import Path

    import bpy

    from resihmr_blender.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "demo" / "keypoints.json"
    out = tmp_path / "out"
    assert main(["run", str(example), "--out", str(out), "--formats", "json,glb,blend", "--prosthesis", "hook",
                 "--prosthesis-cover"]) == 0
    folder = next(out.iterdir())
    person = json.loads((folder / "result.json").read_text())["people"][0]
    cut = {r["kind"] for r in person["residuals"] if r["accepted"]}
    devices = {d["kind"]: d for d in person["prostheses"]}
    assert cut and set(devices) == cut
    for kind, device in devices.items():
        assert device["socket_length_m"] > 0.02 and device["pylon_length_m"] > 0.0 and "cover" in device["parts"]
        if "leg" in residual_by_name(kind).limb:
            assert 0.2 < device["foot_length_m"] < 0.32 and 0.05 < device["ankle_height_m"] < 0.11
        else:
            assert device["terminal"] == "hook" and device["hook_length_m"] > 0.08
    _, meshes = imported_devices(folder / "avatar.glb")
    assert sorted(meshes) == sorted(["ResiHMR", *(f"ResiHMR prosthesis {k}" for k in cut)])
    bpy.ops.wm.open_mainfile(filepath=str(folder / "avatar.blend"))
    saved = {o.get("resihmr_prosthesis"): o.parent.name for o in bpy.data.objects if o.get("resihmr_prosthesis")}
    assert saved == {k: "ResiHMR_rig" for k in cut}
    limbs = bpy.data.objects["ResiHMR"].resihmr.limbs  # the sidebar shows what the file holds
    assert {x.kind for x in limbs if x.prosthesis and x.cover} == cut
    assert all(x.terminal == "hook" for x in limbs if "leg" not in residual_by_name(x.kind).limb)


def test_sidebar_operators_one_undo_step_each():
    """The Prosthesis panel's operators on a fitted avatar: on, terminal device, socket colour, a λ drag refits,
    undo takes the device off again, off removes it."""
    from pathlib import Path

    import bpy

    import resihmr_blender
    from resihmr_blender.mesh.prosthesis import device_for, dimensions

    example = Path(__file__).resolve().parents[1] / "examples" / "demo"
    bpy.ops.wm.read_homefile(use_empty=True)
    resihmr_blender.register()
    try:
        bpy.ops.resihmr.load_photo(filepath=str(example / "photo_synthetic.png"))
        bpy.ops.resihmr.load_keypoints(filepath=str(example / "keypoints.json"))
        bpy.ops.resihmr.fit()
        avatar = next(o for o in bpy.context.scene.objects if o.get("resihmr_avatar") and o.type == "MESH")
        bpy.context.view_layer.objects.active = avatar
        limb = next(x for x in avatar.resihmr.limbs if x.kind == "right_transradial")
        bpy.ops.ed.undo_push(message="before")
        assert bpy.ops.resihmr.toggle_prosthesis(kind="right_transradial") == {"FINISHED"}
        assert limb.prosthesis and dimensions(avatar)["right_transradial"]["terminal"] == "hand"
        assert bpy.ops.resihmr.set_terminal(kind="right_transradial", terminal="hook") == {"FINISHED"}
        assert limb.terminal == "hook" and dimensions(avatar)["right_transradial"]["terminal"] == "hook"
        bpy.context.view_layer.objects.active = device_for(avatar, "right_transradial")  # clicked in the viewport
        assert bpy.ops.resihmr.toggle_cover(kind="right_transradial") == {"FINISHED"}
        # the sidebar shows the device's avatar, so its other buttons act on that avatar too (selection.py)
        assert bpy.ops.resihmr.export_result.poll() and bpy.ops.resihmr.toggle_pose.poll()
        bpy.context.view_layer.objects.active = None
        assert not bpy.ops.resihmr.export_result.poll() and not bpy.ops.resihmr.toggle_pose.poll()
        bpy.context.view_layer.objects.active = avatar
        assert limb.cover and "cover" in dimensions(avatar)["right_transradial"]["parts"]
        assert dimensions(avatar)["right_transradial"]["terminal"] == "hook"  # the other settings kept
        limb.socket_colour = (0.9, 0.1, 0.1, 1.0)
        socket = device_for(avatar, "right_transradial").data.materials[0]
        assert tuple(socket.diffuse_color) == pytest.approx((0.9, 0.1, 0.1, 1.0))
        limb.socket_finish = "gloss"
        assert socket.roughness == pytest.approx(0.12) and socket.diffuse_color[0] == pytest.approx(0.9)
        before = dimensions(avatar)["right_transradial"]["stump_length_m"]
        limb.lam = min(0.9, limb.lam + 0.2)  # the live λ re-cuts: the socket follows the shorter stump
        assert dimensions(avatar)["right_transradial"]["stump_length_m"] < before - 0.01
        name = avatar.name
        bpy.ops.ed.undo_push(message="after")
        bpy.ops.ed.undo()
        avatar = bpy.data.objects[name]
        assert device_for(avatar, "right_transradial") is None
        assert not next(x for x in avatar.resihmr.limbs if x.kind == "right_transradial").prosthesis
        bpy.context.view_layer.objects.active = avatar
        limb = next(x for x in avatar.resihmr.limbs if x.kind == "right_transradial")
        bpy.ops.resihmr.toggle_prosthesis(kind="right_transradial")
        assert device_for(avatar, "right_transradial") is not None
        bpy.ops.resihmr.restore_limbs()  # no stump, no prosthesis
        assert device_for(avatar, "right_transradial") is None and not limb.prosthesis
        bpy.ops.resihmr.cut_residual()
        bpy.ops.resihmr.toggle_prosthesis(kind="right_transradial")
        bpy.ops.resihmr.cut_residual()  # cut again: the device is refitted, not duplicated
        assert len([d for d in bpy.data.objects if d.get("resihmr_prosthesis")]) == 1 and limb.prosthesis
        bpy.ops.resihmr.toggle_prosthesis(kind="right_transradial")
        assert device_for(avatar, "right_transradial") is None
        assert not any(m.name.endswith("right_transradial socket") for m in bpy.data.materials)
    finally:
        resihmr_blender.unregister()


def test_animated_glb_keeps_the_sockets_on_the_stumps(rigged, tmp_path):
    """The motion exported with the devices (GLB) and re-imported: frame by frame, every socket stays on its stump
    in the importer's own skinning."""
    import bpy

    from resihmr_blender.mesh.animation import apply_motion
    from resihmr_blender.mesh.export import export_avatar

    arm, obj, devices = rigged
    poses, trans = swinging_motion()
    apply_motion(arm, poses, trans, 30.0)
    path = export_avatar(arm, obj, tmp_path / "walk.glb", animation=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.context.scene.render.fps = 30  # glTF keys by time
    bpy.ops.import_scene.gltf(filepath=str(path))
    new_arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    new_arm.animation_data.action = next(a for a in bpy.data.actions if a.name.endswith("ResiHMR motion"))
    moved = {}
    for frame in (0, FRAMES // 4, FRAMES // 2, 3 * FRAMES // 4):
        bpy.context.scene.frame_set(frame)
        gaps = socket_gaps()
        assert len(gaps) == len(devices)
        for name, (near, far) in gaps.items():
            assert near >= -0.002 and far <= GAP + 0.02, (frame, name, near, far)
        moved[frame] = evaluated_device_centres()
    assert max(np.linalg.norm(moved[f] - moved[0], axis=1).max() for f in moved) > 0.1  # it really moved


def evaluated_device_centres() -> np.ndarray:
    import bpy

    from resihmr_blender.mesh.build import evaluated_vertices

    return np.array([evaluated_vertices(o).mean(axis=0) for o in sorted(bpy.data.objects, key=lambda o: o.name)
                     if o.type == "MESH" and o.name.startswith("ResiHMR prosthesis")])


def test_removing_the_avatar_removes_its_devices(rigged):
    """Re-running Fit replaces an avatar (mesh/build.remove_avatar): its prostheses go with it, meshes included."""
    import bpy

    from resihmr_blender.mesh.build import remove_avatar

    arm, obj, devices = rigged
    names = [d.name for d in devices.values()]
    datas = [d.data.name for d in devices.values()]
    remove_avatar(obj)
    assert not [n for n in names if n in bpy.data.objects]
    assert not [n for n in datas if n in bpy.data.meshes]
    assert not [o for o in bpy.data.objects if o.get("resihmr_prosthesis")]
