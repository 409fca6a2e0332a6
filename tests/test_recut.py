"""The live λ: recut() on real bpy objects — re-cut from the stored uncut mesh, never stacked, all or nothing."""
from __future__ import annotations

import json
import math
import struct
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
import torch
import trimesh

from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import JOINT_INDEX, JOINT_NAMES, load_body_model
from resihmr_blender.core.measure import measure_limb
from resihmr_blender.core.residuals import residual_by_name
from resihmr_blender.core.stump import StumpError, cut_limb, limb_parts
from resihmr_blender.mesh import cut as cut_module
from resihmr_blender.mesh.build import UNCUT_PROP, build_avatar, evaluated_vertices, remove_avatar
from resihmr_blender.mesh.cut import MASK_NAME, RED_MATERIAL, CutError, cut_residual, cut_state, recut
from resihmr_blender.mesh.export import export_avatar
from resihmr_blender.mesh.frames import blender_to_body

THREE = [("left_transtibial", 0.4), ("right_transhumeral", 0.55), ("right_transfemoral", 0.3)]
ATTRIBUTE_FIELD = {"FLOAT": "value", "INT": "value", "BOOLEAN": "value", "INT8": "value", "FLOAT_VECTOR": "vector",
                   "FLOAT2": "vector", "FLOAT_COLOR": "color", "BYTE_COLOR": "color"}


@pytest.fixture(scope="module")
def model():
    return load_body_model(dtype=torch.float64)


@pytest.fixture()
def scene():
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene


def params(seed: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"betas": torch.randn(10, generator=g, dtype=torch.float64).numpy(),
            "global_orient": np.array([math.pi * 0.95, 0.3, 0.05]),
            "body_pose": (torch.randn(63, generator=g, dtype=torch.float64) * 0.3).numpy(),
            "transl": np.array([0.1, 0.2, 3.0])}


def faces_of(mesh) -> np.ndarray:
    faces = np.empty(len(mesh.polygons) * 3, np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    return faces.reshape(-1, 3)


def attribute_values(attribute) -> np.ndarray:
    field = ATTRIBUTE_FIELD[attribute.data_type]
    width = {"FLOAT_VECTOR": 3, "FLOAT2": 2, "FLOAT_COLOR": 4, "BYTE_COLOR": 4}.get(attribute.data_type, 1)
    dtype = {"INT": np.int32, "BOOLEAN": bool, "INT8": np.int8}.get(attribute.data_type, np.float32)
    values = np.empty(len(attribute.data) * width, dtype)
    attribute.data.foreach_get(field, values)
    return values


def state(obj) -> dict:
    """Everything recut may touch, exactly (bytes, not rounded)."""
    mesh = obj.data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    keys = {}
    for key in mesh.shape_keys.key_blocks:
        data = np.empty(len(key.data) * 3, np.float32)
        key.data.foreach_get("co", data)
        keys[key.name] = (data.tobytes(), key.value, key.mute, key.slider_min, key.slider_max)
    return {"co": co.tobytes(), "faces": faces_of(mesh).tobytes(), "keys": keys,
            "groups": [g.name for g in obj.vertex_groups],
            "weights": [[(g.group, struct.pack("f", g.weight)) for g in v.groups] for v in mesh.vertices],
            "attributes": {a.name: (a.domain, a.data_type, attribute_values(a).tobytes())
                           for a in mesh.attributes if not a.name.startswith(".")},
            "materials": [m.name if m else None for m in mesh.materials], "mesh": mesh.name,
            "cut": obj["resihmr_cut"], "uncut": obj[UNCUT_PROP].name, "data": mesh.as_pointer()}


def same_geometry(a: dict, b: dict) -> bool:
    ignore = {"mesh", "data", "uncut"}  # two avatars: different datablocks
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def rest_vertices(arm, obj) -> np.ndarray:
    """The mixed rest shape in the SMPL-X body frame (what recut cuts and measures)."""
    arm.data.pose_position = "REST"
    try:
        return blender_to_body(evaluated_vertices(obj))
    finally:
        arm.data.pose_position = "POSE"


def joint(arm, name: str) -> np.ndarray:
    return blender_to_body(np.array(arm.data.bones[name].head_local, dtype=np.float64))


def mask_of(obj) -> np.ndarray:
    values = np.empty(len(obj.data.vertices), np.float32)
    obj.data.attributes[MASK_NAME].data.foreach_get("value", values)
    return values > 0.5


def test_the_stump_tip_follows_lambda(model, scene):
    arm, obj = build_avatar(model, params())
    kind = residual_by_name("left_transtibial")
    jt, ja = joint(arm, kind.upstream_joint), joint(arm, kind.anchor_joint)
    axis = (ja - jt) / np.linalg.norm(ja - jt)
    segment, _ = limb_parts(kind)
    tips = []
    for lam in (0.2, 0.5, 0.8):
        measured = recut(obj, [(kind.name, lam)])[kind.name]
        rest = rest_vertices(arm, obj)
        tip = float(((rest[mask_of(obj)] - jt) @ axis).max())  # farthest residual-segment vertex along the limb
        assert (1 - lam) * np.linalg.norm(ja - jt) - 0.01 < tip < (1 - lam) * np.linalg.norm(ja - jt) + 0.06
        assert tip == pytest.approx(measured.residual_length_m, abs=1e-6)
        tips.append(tip)
    assert tips[0] > tips[1] + 0.05 and tips[1] > tips[2] + 0.05


def test_dragging_lambda_gives_the_same_mesh_as_one_cut(model, scene):
    p = params()
    _, dragged = build_avatar(model, p, name="Dragged")
    for lam in (0.3, 0.6, 0.4):
        recut(dragged, [("right_transhumeral", 0.5), ("left_transtibial", lam)])
    _, once = build_avatar(model, p, name="Once")
    recut(once, [("right_transhumeral", 0.5), ("left_transtibial", 0.4)])
    _, stacked = build_avatar(model, p, name="Stacked")  # the old way: one cut_residual per limb
    cut_residual(stacked, "right_transhumeral", 0.5)
    cut_residual(stacked, "left_transtibial", 0.4)
    assert same_geometry(state(dragged), state(once)) and same_geometry(state(once), state(stacked))
    assert cut_state(dragged) == [{"kind": "right_transhumeral", "lambda": 0.5},
                                  {"kind": "left_transtibial", "lambda": 0.4}]


def test_small_lambda_steps_reuse_the_cut_and_equal_a_fresh_one(model, scene):
    """A step that crosses no vertex reuses the previous cut (recut's memo): it must be what a fresh cut gives."""
    p = params()
    _, dragged = build_avatar(model, p, name="Dragged")
    steps = [0.4, 0.401, 0.402, 0.403]
    for lam in steps:
        measured = recut(dragged, [("left_transtibial", lam)])
    _, fresh = build_avatar(model, p, name="Fresh")
    assert recut(fresh, [("left_transtibial", steps[-1])]) == measured
    assert same_geometry(state(dragged), state(fresh))


def test_recut_nothing_restores_the_uncut_body(model, scene):
    arm, obj = build_avatar(model, params())
    original = state(obj)
    recut(obj, THREE)
    assert len(obj.data.vertices) < 13000
    recut(obj, [])
    restored = state(obj)
    assert restored == original  # vertices, faces, keys, weights, groups, attributes, record
    assert MASK_NAME not in obj.vertex_groups and MASK_NAME not in obj.data.attributes


@pytest.mark.parametrize("case", ["lambda", "nan", "same_limb", "unknown_kind", "not_pairs", "unsealable",
                                  "bmesh_failure", "edit_mode", "group_added"])
def test_a_refused_recut_changes_nothing(model, scene, monkeypatch, case):
    arm, obj = build_avatar(model, params())
    recut(obj, [("left_transradial", 0.5), ("right_transtibial", 0.35)])
    before, n_meshes = state(obj), len(bpy.data.meshes)
    if case == "unsealable":  # the second limb's numpy cut fails after the first one succeeded
        def failing(verts, faces, weights, kind, *args):
            if kind.name == "right_transfemoral":
                raise StumpError("the cut left 2 holes instead of one")
            return cut_limb(verts, faces, weights, kind, *args)
        monkeypatch.setattr(cut_module, "cut_limb", failing)
    if case == "bmesh_failure":  # the last stage: the cut bmesh is ready, writing it to the mesh fails
        import bmesh  # after bpy

        class Failing:
            def __init__(self):
                self.bm = bmesh.new()

            def __getattr__(self, name):
                return getattr(self.bm, name)

            def to_mesh(self, mesh):
                raise RuntimeError("simulated bmesh failure")
        monkeypatch.setattr(cut_module, "bmesh", SimpleNamespace(new=Failing))
    if case == "group_added":
        obj.vertex_groups.new(name="socket_fit")
        before = state(obj)
    if case == "edit_mode":
        bpy.context.view_layer.objects.active = obj
        bpy.ops.object.mode_set(mode="EDIT")
    cuts = {"lambda": [("left_transradial", 1.5)], "nan": [("left_transradial", float("nan"))],
            "same_limb": [("left_transradial", 0.5), ("left_transhumeral", 0.5)],
            "unknown_kind": [("left_foot_off", 0.5)], "not_pairs": ["left_transradial"],
            "unsealable": [("left_transradial", 0.6), ("right_transfemoral", 0.5)],
            "bmesh_failure": [("left_transradial", 0.6)], "edit_mode": [("left_transradial", 0.6)],
            "group_added": [("left_transradial", 0.6)]}[case]
    with pytest.raises(RuntimeError if case == "bmesh_failure" else CutError):
        recut(obj, cuts)
    if case == "edit_mode":
        bpy.ops.object.mode_set(mode="OBJECT")
    assert state(obj) == before and len(bpy.data.meshes) == n_meshes
    assert json.loads(obj["resihmr_cut"])[1] == {"kind": "right_transtibial", "lambda": 0.35}


@pytest.mark.parametrize("cuts", [THREE[:2], THREE], ids=["two_limbs", "three_limbs"])
def test_one_mask_group_and_red_material_over_every_limb(model, scene, cuts):
    arm, obj = build_avatar(model, params())
    for lam in (0.3, 0.5):  # re-cut twice: the second must not add ".001" anything
        recut(obj, [(k, lam) for k, _ in cuts])
    mesh = obj.data
    assert [a.name for a in mesh.attributes if a.name.startswith(MASK_NAME)] == [MASK_NAME]
    assert [g.name for g in obj.vertex_groups if g.name.startswith(MASK_NAME)] == [MASK_NAME]
    assert [m.name for m in mesh.materials if m.name.startswith(RED_MATERIAL)] == [RED_MATERIAL]
    mask = mask_of(obj)
    group = obj.vertex_groups[MASK_NAME].index
    in_group = np.array([any(g.group == group and g.weight == 1.0 for g in v.groups) for v in mesh.vertices])
    assert np.array_equal(in_group, mask)
    faces = faces_of(mesh)
    material = np.array([p.material_index for p in mesh.polygons])
    red = [m.name for m in mesh.materials].index(RED_MATERIAL)
    assert np.array_equal(material == red, mask[faces].all(axis=1))
    rest = rest_vertices(arm, obj)
    dominant = np.array([max(v.groups, key=lambda g: g.weight).group for v in mesh.vertices])
    for kind_name, _ in cuts:  # every limb has its red segment, beyond its upstream joint
        kind = residual_by_name(kind_name)
        jt, ja = joint(arm, kind.upstream_joint), joint(arm, kind.anchor_joint)
        on_limb = (dominant == JOINT_INDEX[kind.upstream_joint]) & ((rest - jt) @ (ja - jt) > 0)
        assert mask[on_limb].mean() > 0.95 and (material[np.isin(faces, np.nonzero(on_limb)[0]).all(axis=1)]
                                                == red).mean() > 0.9


def test_measurements_are_the_core_numbers(model, scene):
    p = params()
    arm, obj = build_avatar(model, p)
    measured = recut(obj, THREE)
    # the core pipeline (core/avatar_mesh.build_mesh's steps) on the rest shape the Blender mesh stores: the
    # same numbers to 1e-9 (in fact bit for bit)
    uncut = obj[UNCUT_PROP]
    n = len(uncut.vertices)
    co = np.empty(n * 3, np.float32)
    keys = uncut.shape_keys.key_blocks
    keys[0].data.foreach_get("co", co)
    basis, mixed = co.reshape(-1, 3).astype(np.float64), co.reshape(-1, 3).astype(np.float64)
    for key in keys[1:]:
        key.data.foreach_get("co", co)
        mixed = mixed + obj.data.shape_keys.key_blocks[key.name].value * (co.reshape(-1, 3) - basis)
    verts, faces = blender_to_body(mixed), faces_of(uncut).astype(np.int64)
    weights = np.zeros((n, 55))
    for v in uncut.vertices:
        for g in v.groups:
            weights[v.index, g.group] = g.weight
    surfaces = {}
    for kind_name, lam in THREE:
        kind = residual_by_name(kind_name)
        cut = cut_limb(verts, faces, weights, kind, joint(arm, kind.anchor_joint), joint(arm, kind.upstream_joint),
                       lam)
        keep, n_new = cut.sealed.keep, len(cut.sealed.new_vertices)
        surfaces = {k: np.concatenate([s[keep], np.zeros(n_new, bool)]) for k, s in surfaces.items()}
        surfaces[kind_name] = cut.limb_surface
        verts, faces, weights = cut.sealed.vertices(verts), cut.sealed.faces, cut.weights
    for kind_name, _ in THREE:
        kind = residual_by_name(kind_name)
        jt, ja = joint(arm, kind.upstream_joint), joint(arm, kind.anchor_joint)
        core = measure_limb(verts, faces, surfaces[kind_name][faces].all(axis=1), jt, ja - jt)
        got = measured[kind_name]
        assert abs(got.residual_length_m - core.residual_length_m) < 1e-9
        assert abs(got.stump_volume_l - core.stump_volume_l) < 1e-9
        assert np.abs(np.subtract(got.circumferences_m, core.circumferences_m)).max() < 1e-9
    # and build_mesh itself (float64 body model): same mesh and mask; the numbers differ by the float32 rounding
    # of the positions Blender stores (~3e-7 m), so within 2e-6
    reference = build_mesh(model, p, THREE, pose=False)
    assert np.array_equal(faces_of(obj.data), reference.faces) and np.array_equal(mask_of(obj),
                                                                                 reference.residual_mask)
    assert np.abs(rest_vertices(arm, obj) - reference.rest_vertices).max() < 1e-6
    for kind_name, _ in THREE:
        got, ref = measured[kind_name], reference.measurements[kind_name]
        assert got.residual_length_m == pytest.approx(ref.residual_length_m, abs=2e-6)
        assert got.stump_volume_l == pytest.approx(ref.stump_volume_l, abs=2e-6)
        assert np.allclose(got.circumferences_m, ref.circumferences_m, atol=2e-6)


def test_the_rig_survives_a_recut(model, scene):
    arm, obj = build_avatar(model, params())
    uncut = obj[UNCUT_PROP]
    recut(obj, [(k, 0.7) for k, _ in THREE])
    recut(obj, THREE)
    mesh = obj.data
    assert [g.name for g in obj.vertex_groups] == [*JOINT_NAMES, MASK_NAME]
    assert [k.name for k in mesh.shape_keys.key_blocks] == [k.name for k in uncut.shape_keys.key_blocks]
    assert len(arm.data.bones) == 55
    distal = {j for k, _ in THREE for j in limb_parts(k)[1]}
    totals = np.zeros(len(mesh.vertices))
    for v in mesh.vertices:
        for g in v.groups:
            assert not (g.group in distal and g.weight > 0)
            if g.group < 55:
                totals[v.index] += g.weight
    assert np.allclose(totals, 1.0, atol=1e-5)  # the caps' interpolated weights too
    # kept vertices: every shape key exactly as in the uncut mesh; cap vertices: offsets from their ring
    origin = np.full(len(mesh.vertices), -1)
    uncut_co = np.array([v.co[:] for v in uncut.vertices], np.float32)
    lookup = {c.tobytes(): i for i, c in enumerate(uncut_co)}
    co = np.array([v.co[:] for v in mesh.vertices], np.float32)
    origin = np.array([lookup.get(c.tobytes(), -1) for c in co])
    n_kept = int((origin >= 0).sum())
    assert (origin[:n_kept] >= 0).all() and (origin[n_kept:] < 0).all()  # originals first, caps last
    for key in mesh.shape_keys.key_blocks[1:]:
        live = np.array([d.co[:] for d in key.data], np.float32)
        ref = np.array([d.co[:] for d in uncut.shape_keys.key_blocks[key.name].data], np.float32)
        assert np.array_equal(live[:n_kept], ref[origin[:n_kept]])
        offset = live[n_kept:] - co[n_kept:]
        ring = ref - uncut_co
        assert np.abs(offset).max() <= np.abs(ring).max() + 1e-6  # interpolated, not invented
    faces = faces_of(mesh)
    assert 2 * len(mesh.edges) == 3 * len(faces)  # no loose edge left by the removal
    for verts in (np.array([v.co[:] for v in mesh.vertices]), evaluated_vertices(obj)):
        closed = trimesh.Trimesh(verts, faces, process=False)
        assert closed.is_watertight and closed.is_winding_consistent


def test_cut_residual_adds_a_limb_and_returns_its_cap(model, scene):
    _, obj = build_avatar(model, params())
    cut_residual(obj, "left_transtibial", 0.4)
    n_before = len(obj.data.vertices)
    sealed = cut_residual(obj, "right_transradial", 0.6)
    assert len(sealed.keep) == n_before  # relative to the mesh with the first cut
    assert len(obj.data.vertices) == int(sealed.keep.sum()) + len(sealed.new_vertices)
    with pytest.raises(CutError, match="already cut"):
        cut_residual(obj, "right_transhumeral", 0.5)


def glb_document(path) -> dict:
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + length])


def test_glb_export_after_a_recut(model, scene, tmp_path):
    arm, obj = build_avatar(model, params())
    recut(obj, [("left_transtibial", 0.7)])
    recut(obj, THREE[:2])
    n_verts = len(obj.data.vertices)
    for shape_keys in (False, True):  # the fitted shape baked (the default), or kept as morph targets
        document = glb_document(export_avatar(arm, obj, tmp_path / f"avatar_{shape_keys}.glb", shape_keys=shape_keys))
        primitives = document["meshes"][0]["primitives"]
        for primitive in primitives:
            assert {"COLOR_0", "JOINTS_0", "WEIGHTS_0"} <= set(primitive["attributes"])
            assert len(primitive.get("targets", [])) == (10 if shape_keys else 0)
        assert sum(document["accessors"][p["attributes"]["POSITION"]]["count"] for p in primitives) >= n_verts
    assert state(obj)["cut"] == json.dumps([{"kind": k, "lambda": lam} for k, lam in THREE[:2]])


def test_the_uncut_mesh_survives_rename_save_reload_and_undo(model, scene, tmp_path):
    _, obj = build_avatar(model, params())
    bpy.ops.ed.undo_push(message="built")
    recut(obj, [("left_transtibial", 0.4)])
    bpy.ops.ed.undo_push(message="cut")
    cut_state_before = state(obj)
    bpy.ops.ed.undo()
    obj = bpy.data.objects["ResiHMR"]
    assert len(obj.data.vertices) == 13718 and cut_state(obj) == []
    assert isinstance(obj[UNCUT_PROP], bpy.types.Mesh)
    recut(obj, [("left_transtibial", 0.4)])
    assert same_geometry(state(obj), cut_state_before)
    obj[UNCUT_PROP].name, obj.data.name = "something else", "renamed body"
    path = tmp_path / "avatar.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    obj = bpy.data.objects["ResiHMR"]
    assert obj[UNCUT_PROP].name == "something else" and obj[UNCUT_PROP].users == 1
    recut(obj, [("left_transtibial", 0.6)])
    recut(obj, [("left_transtibial", 0.4)])
    assert same_geometry(state(obj), cut_state_before)


def test_remove_avatar_leaves_no_datablocks(model, scene):
    arm, obj = build_avatar(model, params())
    recut(obj, THREE[:1])
    _, other = build_avatar(model, params(), name="Other")
    remove_avatar(obj)
    assert sorted(o.name for o in bpy.data.objects) == ["Other", "Other_rig"]
    assert sorted(m.name for m in bpy.data.meshes) == ["Other_body", "Other_body_uncut"]
    assert len(bpy.data.armatures) == 1 and len(bpy.data.shape_keys) == 2
    remove_avatar(other.parent)  # the armature works too
    assert not bpy.data.objects and not bpy.data.meshes and not bpy.data.armatures and not bpy.data.shape_keys


def test_an_avatar_without_a_stored_uncut_mesh(model, scene):
    _, obj = build_avatar(model, params())
    bpy.data.meshes.remove(obj[UNCUT_PROP])
    del obj[UNCUT_PROP]
    recut(obj, [("left_transtibial", 0.4)])  # uncut: the present mesh is kept as the uncut one
    assert isinstance(obj[UNCUT_PROP], bpy.types.Mesh) and len(obj[UNCUT_PROP].vertices) == 13718
    del obj[UNCUT_PROP]
    with pytest.raises(CutError, match="keeps no uncut mesh"):
        recut(obj, [])
