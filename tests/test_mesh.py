"""The live Blender avatar and the bmesh cut, on real bpy objects (headless, bpy wheel)."""
from __future__ import annotations

import json
import math

import bpy  # noqa: I001  (bpy before mathutils/bmesh)
import numpy as np
import pytest
import torch
import trimesh

from resihmr_blender.core.body_model import JOINT_INDEX, JOINT_NAMES, load_body_model
from resihmr_blender.core.residuals import RESIDUALS
from resihmr_blender.core.stump import limb_parts
from resihmr_blender.mesh.build import apply_pose, build_avatar, evaluated_vertices
from resihmr_blender.mesh.cut import MASK_NAME, CutError, cut_residual, cut_state
from resihmr_blender.mesh.frames import camera_to_world


@pytest.fixture(scope="module")
def model():
    return load_body_model(dtype=torch.float64)


@pytest.fixture()
def scene():
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene


def random_params(seed: int, scale: float = 0.3) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"betas": torch.randn(10, generator=g, dtype=torch.float64).numpy(),
            "global_orient": np.array([math.pi * 0.95, 0.3, 0.05]),
            "body_pose": (torch.randn(63, generator=g, dtype=torch.float64) * scale).numpy(),
            "transl": np.array([0.1, 0.2, 3.0])}


def faces_of(mesh) -> np.ndarray:
    faces = np.empty(len(mesh.polygons) * 3, np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    return faces.reshape(-1, 3)


def snapshot(obj) -> dict:
    mesh = obj.data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    keys = {k.name: np.array([d.co[:] for d in k.data]) for k in mesh.shape_keys.key_blocks}
    groups = sorted(g.name for g in obj.vertex_groups)
    weights = [sorted((g.group, round(g.weight, 6)) for g in v.groups) for v in mesh.vertices]
    return {"co": co, "keys": keys, "groups": groups, "weights": weights, "faces": faces_of(mesh).copy(),
            "cut": obj["resihmr_cut"]}


@pytest.mark.parametrize("seed", [0, 1])
def test_live_object_matches_core_forward(model, scene, seed):
    params = random_params(seed)
    arm, obj = build_avatar(model, params)
    assert len(arm.data.bones) == 55 and obj.parent == arm
    assert {g.name for g in obj.vertex_groups} == set(JOINT_NAMES)
    assert [k.name for k in obj.data.shape_keys.key_blocks][1:] == [f"beta_{k:02d}" for k in range(10)]
    assert np.allclose([k.value for k in obj.data.shape_keys.key_blocks[1:]], params["betas"], atol=1e-6)
    ref = model.forward(**{k: torch.tensor(v)[None] for k, v in params.items()}).vertices[0].numpy()
    assert np.abs(evaluated_vertices(obj) - camera_to_world(ref)).max() < 1e-3
    # rest position is the T-pose of the same shape
    arm.data.pose_position = "REST"
    rest = model.forward(betas=torch.tensor(params["betas"])[None]).vertices[0].numpy()
    from resihmr_blender.mesh.frames import body_to_blender
    assert np.abs(evaluated_vertices(obj) - body_to_blender(rest)).max() < 1e-3


def test_pose_correctives_are_baked_for_the_fitted_pose(tmp_path, scene):
    raw = dict(np.load(load_body_model().source_path))
    raw["posedirs"] = (np.random.default_rng(0).standard_normal(raw["posedirs"].shape) * 1e-3).astype(np.float32)
    path = tmp_path / "with_correctives.npz"
    np.savez(path, **raw)
    model = load_body_model(path, dtype=torch.float64, use_cache=False)
    params = random_params(2)
    _, obj = build_avatar(model, params)
    assert "pose_correctives_fitted" in obj.data.shape_keys.key_blocks
    ref = model.forward(**{k: torch.tensor(v)[None] for k, v in params.items()}).vertices[0].numpy()
    assert np.abs(evaluated_vertices(obj) - camera_to_world(ref)).max() < 1e-3


@pytest.mark.parametrize("kind", [k.name for k in RESIDUALS])
def test_cut_every_kind_keeps_the_rig_and_stays_closed(model, scene, kind):
    params = random_params(3)
    arm, obj = build_avatar(model, params)
    groups_before = {g.name for g in obj.vertex_groups}
    keys_before = [k.name for k in obj.data.shape_keys.key_blocks]
    for lam in (0.05, 0.95):
        bpy.ops.wm.read_homefile(use_empty=True)
        arm, obj = build_avatar(model, params)
        cut_residual(obj, kind, lam)
        mesh = obj.data
        faces = faces_of(mesh)
        rest = np.array([v.co[:] for v in mesh.vertices])
        closed = trimesh.Trimesh(rest, faces, process=False)
        assert closed.is_watertight and closed.is_winding_consistent and closed.volume > 0
        assert groups_before <= {g.name for g in obj.vertex_groups} and MASK_NAME in obj.vertex_groups
        assert [k.name for k in mesh.shape_keys.key_blocks] == keys_before
        assert len(arm.data.bones) == 55  # the full skeleton stays by default
        _, distal = limb_parts(kind)
        distal_names = {JOINT_NAMES[j] for j in distal}
        for v in mesh.vertices:
            for g in v.groups:
                assert not (obj.vertex_groups[g.group].name in distal_names and g.weight > 0)
        mask = np.empty(len(mesh.vertices), np.float32)
        mesh.attributes[MASK_NAME].data.foreach_get("value", mask)
        assert mask.sum() > 10
        red = [i for i, m in enumerate(mesh.materials) if m.name.startswith("ResiHMR residual")]
        assert red and any(p.material_index == red[0] for p in mesh.polygons)
        posed = trimesh.Trimesh(evaluated_vertices(obj), faces, process=False)
        assert posed.is_watertight


def test_stump_follows_its_limb_without_stretching(model, scene):
    arm, obj = build_avatar(model, random_params(4, scale=0.0))
    cut_residual(obj, "right_transtibial", 0.4)
    sealed = cut_residual(obj, "left_transhumeral", 0.5)
    faces = faces_of(obj.data)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    arm.data.pose_position = "REST"
    rest = evaluated_vertices(obj)
    rest_len = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    arm.data.pose_position = "POSE"
    n_verts = len(obj.data.vertices)
    cap = np.arange(n_verts - len(sealed.new_vertices), n_verts)  # the last cut's cap vertices
    for seed in range(3):
        apply_pose(arm, random_params(10 + seed, scale=0.4))
        posed = evaluated_vertices(obj)
        ratio = np.linalg.norm(posed[edges[:, 0]] - posed[edges[:, 1]], axis=1) / rest_len
        intact_edges = ~np.isin(edges, cap).any(axis=1)
        lo, hi = np.percentile(ratio[intact_edges], [0.1, 99.9])
        cap_edges = np.isin(edges, cap).all(axis=1)
        assert ratio[cap_edges].min() >= min(lo, 0.9) and ratio[cap_edges].max() <= max(hi, 1.1)


@pytest.mark.parametrize("case", ["lambda", "already_cut", "not_ours", "unknown_kind"])
def test_refused_cuts_leave_the_object_unchanged(model, scene, case):
    arm, obj = build_avatar(model, random_params(5))
    cut_residual(obj, "left_transradial", 0.5)
    target = obj
    if case == "not_ours":
        bpy.ops.mesh.primitive_cube_add()
        target = bpy.context.active_object
    before = snapshot(obj)
    with pytest.raises(CutError):
        if case == "lambda":
            cut_residual(target, "right_transfemoral", 1.5)
        elif case == "already_cut":
            cut_residual(target, "left_transhumeral", 0.3)  # same limb as the transradial cut
        elif case == "not_ours":
            cut_residual(target, "right_transfemoral", 0.5)
        else:
            cut_residual(target, "left_foot_off", 0.5)
    after = snapshot(obj)
    assert np.array_equal(before["co"], after["co"]) and np.array_equal(before["faces"], after["faces"])
    assert before["groups"] == after["groups"] and before["weights"] == after["weights"]
    assert all(np.array_equal(before["keys"][k], after["keys"][k]) for k in before["keys"])
    assert json.loads(after["cut"]) == [{"kind": "left_transradial", "lambda": 0.5}]
    assert len(cut_state(obj)) == 1


def test_optional_distal_bone_deletion(model, scene):
    arm, obj = build_avatar(model, random_params(6))
    cut_residual(obj, "left_transfemoral", 0.5, delete_distal_bones=True)
    names = {b.name for b in arm.data.bones}
    assert "left_knee" not in names and "left_ankle" not in names and "left_hip" in names
    assert len(names) == 55 - 3 and JOINT_INDEX["left_foot"] == 10 and "left_foot" not in names
