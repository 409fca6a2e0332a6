"""Texture coordinates: from the body model (`vt`/`ft`) onto the avatar, through the cut and seal, into GLB and FBX."""
from __future__ import annotations

import json
import math
import struct

import bpy
import numpy as np
import pytest
import torch

from resihmr_blender.core.body_model import DEFAULT_MODEL_PATH, BodyModelError, load_body_model, read_model_arrays
from resihmr_blender.core.residuals import LIMBS
from resihmr_blender.core.stump import CAP_ISLAND_RADIUS
from resihmr_blender.mesh.build import build_avatar
from resihmr_blender.mesh.cut import cut_residual, cut_state, recut
from resihmr_blender.mesh.export import export_avatar

TWO = [("left_transtibial", 0.45), ("right_transhumeral", 0.5)]


@pytest.fixture(scope="module")
def model():
    return load_body_model(dtype=torch.float64)


@pytest.fixture(scope="module")
def arrays():
    with np.load(DEFAULT_MODEL_PATH, allow_pickle=False) as raw:
        return {k: raw[k] for k in raw.files}


def params() -> dict:
    return {"betas": np.linspace(-1, 1, 10), "global_orient": np.array([math.pi, 0.2, 0.0]),
            "body_pose": np.zeros(63), "transl": np.array([0.0, 0.1, 3.0])}


def new_avatar(model):
    bpy.ops.wm.read_homefile(use_empty=True)
    return build_avatar(model, params())


def mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(basis positions (V, 3), faces (F, 3), corner UVs (F, 3, 2) of the active layer or None)."""
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    faces = np.empty(len(mesh.loops), np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    uv = None
    if mesh.uv_layers.active is not None:
        uv = np.empty(len(mesh.loops) * 2, np.float32)
        mesh.uv_layers.active.uv.foreach_get("vector", uv)
        uv = uv.reshape(-1, 3, 2)
    return co.reshape(-1, 3), faces.reshape(-1, 3), uv


def quadrant_centre(limb: str) -> np.ndarray:
    i = LIMBS.index(limb)
    return np.array([1.25 + 0.5 * (i % 2), 0.75 - 0.5 * (i // 2)])


# ---- the model file ---------------------------------------------------------------------------------------------


def test_embedded_body_has_per_corner_uvs(model):
    corner = model.corner_uvs()
    assert corner.shape == (len(model.faces), 3, 2)
    assert 0.0 <= corner.min() and corner.max() <= 1.0
    area = np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0])
    assert (area > 0).all()  # MakeHuman's layout: every triangle counter-clockwise, none degenerate
    # seams: some vertices have several UVs, so they are per corner, not per vertex
    pairs = np.unique(np.stack([model.faces.ravel(), model.uv_faces.ravel()], axis=1), axis=0)
    assert len(pairs) > model.num_vertices + 1000


@pytest.mark.parametrize("changes,expected", [
    ({"ft": None}, r"has key 'vt' but not 'ft'"),
    ({"vt": None}, r"has key 'ft' but not 'vt'"),
    ({"vt": np.zeros((10, 3), np.float32)}, r"key 'vt' has shape \(10, 3\), expected \(\*, 2\)"),
    ({"ft": np.zeros((5, 3), np.int32)}, r"key 'ft' has shape \(5, 3\), expected \(27420, 3\)"),
    ({"ft": np.zeros((27420, 3), np.float32)}, r"key 'ft' holds float32 values, expected integers"),
    ({"ft": np.full((27420, 3), 14898)}, r"key 'ft' face 0 uses UV 14898, but 'vt' has UVs numbered 0\.\.14897"),
    ({"ft": np.full((27420, 3), -1)}, r"key 'ft' face 0 uses UV -1"),
    ({"vt": np.full((14898, 2), np.inf, np.float32)}, r"key 'vt' contains NaN or infinite values"),
])
def test_bad_uvs_are_named(tmp_path, arrays, changes, expected):
    data = {k: v for k, v in arrays.items() if changes.get(k, 0) is not None}
    data.update({k: v for k, v in changes.items() if v is not None})
    np.savez(tmp_path / "model.npz", **data)
    with pytest.raises(BodyModelError, match=rf"model\.npz: {expected}") as info:
        read_model_arrays(tmp_path / "model.npz")
    assert "\n" not in str(info.value)


# ---- the live avatar -----------------------------------------------------------------------------------------------


def test_built_avatar_uv_layer_is_the_models(model):
    _, obj = new_avatar(model)
    _, faces, uv = mesh_arrays(obj.data)
    assert len(obj.data.uv_layers) == 1 and obj.data.uv_layers.active.name == "UVMap"
    assert np.array_equal(faces, model.faces)
    assert np.array_equal(uv, model.corner_uvs().astype(np.float32))


def check_cut_uvs(obj, uncut, limbs: list[str]) -> None:
    """Faces that survived the cut keep their UVs exactly; every other face is a cap in its limb's island."""
    uncut_co, uncut_faces, uncut_uv = uncut
    co, faces, uv = mesh_arrays(obj.data)
    # kept vertices keep their basis positions bit for bit: that identifies them (the template has no duplicates)
    index = {p.tobytes(): i for i, p in enumerate(uncut_co)}
    assert len(index) == len(uncut_co)
    origin = np.array([index.get(p.tobytes(), -1) for p in co])
    corner_of = {}
    for f, tri in enumerate(uncut_faces.tolist()):
        for r in range(3):
            corner_of[tuple(tri[r:] + tri[:r])] = (f, r)
    kept, cap = [], []
    for f, tri in enumerate(origin[faces].tolist()):
        hit = corner_of.get(tuple(tri))
        if hit is None:
            cap.append(f)
        else:
            g, r = hit
            kept.append(f)
            assert np.array_equal(uv[f], np.roll(uncut_uv[g], -r, axis=0)), f"face {f} changed its UVs"
    assert len(kept) > 0.6 * len(uncut_faces) and len(cap) >= 30 * len(limbs)
    cap_uv = uv[cap]
    area = np.cross(cap_uv[:, 1] - cap_uv[:, 0], cap_uv[:, 2] - cap_uv[:, 0])
    assert area.min() > 1e-5  # none flipped or degenerate: counter-clockwise like the body's
    assert (uv[kept][..., 0] <= 1.0).all() and (cap_uv[..., 0] > 1.0).all()  # the caps' tile is free of the body
    # each cap in its own limb's quadrant; the caps found by their 3D position (the lowest is the leg's)
    centre3d = co[faces[cap]].mean(axis=1)
    for limb in limbs:
        island = np.linalg.norm(cap_uv.mean(axis=1) - quadrant_centre(limb), axis=1) < 0.25
        assert island.any(), limb
        assert (np.linalg.norm(cap_uv[island] - quadrant_centre(limb), axis=2) <= CAP_ISLAND_RADIUS + 1e-6).all()
        side = 1.0 if limb.startswith("left") else -1.0  # Blender x: the subject's left is +x
        assert (np.sign(centre3d[island, 0]) == side).all()
        if limb.endswith("leg"):
            assert centre3d[island, 2].max() < centre3d[~island, 2].min()
    assert sum((np.linalg.norm(cap_uv.mean(axis=1) - quadrant_centre(limb), axis=1) < 0.25).sum()
               for limb in limbs) == len(cap)


def test_cut_keeps_surviving_uvs_and_gives_each_cap_an_island(model):
    _, obj = new_avatar(model)
    uncut = mesh_arrays(obj.data)
    for kind, lam in TWO:
        cut_residual(obj, kind, lam)
    check_cut_uvs(obj, uncut, ["left_leg", "right_arm"])
    recut(obj, [("left_transtibial", 0.3), ("right_transhumeral", 0.7), ("left_transradial", 0.5)])  # the live λ
    check_cut_uvs(obj, uncut, ["left_leg", "right_arm", "left_arm"])
    recut(obj, [])
    assert np.array_equal(mesh_arrays(obj.data)[2], uncut[2])


def test_model_without_uvs_still_builds_and_cuts(tmp_path, arrays):
    """A user's SMPL-X file without `vt`/`ft`: no UV layer, everything else as usual."""
    np.savez(tmp_path / "no_uv.npz", **{k: v for k, v in arrays.items() if k not in ("vt", "ft")})
    plain = load_body_model(tmp_path / "no_uv.npz", dtype=torch.float64, use_cache=False)
    assert plain.corner_uvs() is None
    _, obj = new_avatar(plain)
    assert len(obj.data.uv_layers) == 0
    for kind, lam in TWO:
        cut_residual(obj, kind, lam)
    assert len(obj.data.uv_layers) == 0 and [c["kind"] for c in cut_state(obj)] == [k for k, _ in TWO]
    assert len(obj.data.polygons) < len(plain.faces)


# ---- the exported files -----------------------------------------------------------------------------------------

_COMPONENTS = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_glb(path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + json_length])
    bin_start = 20 + json_length
    bin_length = struct.unpack_from("<I", data, bin_start)[0]
    return doc, data[bin_start + 8:bin_start + 8 + bin_length]


def accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype, width = np.dtype(_COMPONENTS[acc["componentType"]]), _WIDTH[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride", dtype.itemsize * width)
    rows = [np.frombuffer(blob, dtype, width, start + i * stride) for i in range(acc["count"])]
    return np.array(rows).reshape(acc["count"], width)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("uv_export")
    arm, obj = new_avatar(model)
    for kind, lam in TWO:
        cut_residual(obj, kind, lam)
    _, faces, uv = mesh_arrays(obj.data)
    glb = export_avatar(arm, obj, out / "avatar.glb")
    fbx = export_avatar(arm, obj, out / "avatar.fbx")
    return {"glb": glb, "fbx": fbx, "faces": faces, "uv": uv}


def farthest_gap(points: np.ndarray, cloud: np.ndarray) -> float:
    """The largest distance from a point to its nearest cloud point (2D, in blocks)."""
    points, cloud = np.unique(points.reshape(-1, 2), axis=0), np.unique(cloud.reshape(-1, 2), axis=0)
    gap = 0.0
    for start in range(0, len(points), 256):
        d = np.linalg.norm(points[start:start + 256, None] - cloud[None], axis=2)
        gap = max(gap, float(d.min(axis=1).max()))
    return gap


def test_glb_has_texcoord_0_for_every_vertex(exported):
    """Raw glTF read: each primitive has TEXCOORD_0 with one entry per vertex, and the UVs are the avatar's
    (glTF's v points down: v_gltf = 1 - v_blender), the caps' islands included."""
    doc, blob = read_glb(exported["glb"])
    uvs = []
    for mesh in doc["meshes"]:
        for primitive in mesh["primitives"]:
            attributes = primitive["attributes"]
            assert "TEXCOORD_0" in attributes
            assert doc["accessors"][attributes["TEXCOORD_0"]]["count"] == \
                doc["accessors"][attributes["POSITION"]]["count"]
            uvs.append(accessor(doc, blob, attributes["TEXCOORD_0"]))
    uvs = np.concatenate(uvs)
    blender = np.concatenate([uvs[:, :1], 1.0 - uvs[:, 1:]], axis=1)
    assert farthest_gap(blender, exported["uv"]) < 1e-6 and farthest_gap(exported["uv"], blender) < 1e-6
    assert (blender[:, 0] > 1.0).sum() > 2 * 24


def test_fbx_reimported_has_the_uv_layer(exported):
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(exported["fbx"]))
    obj = next(o for o in bpy.data.objects if o.type == "MESH")
    assert len(obj.data.uv_layers) == 1
    _, faces, uv = mesh_arrays(obj.data)
    # vertex order survives the FBX round trip: every (vertex, corner UV) pair is the avatar's
    ours = {(v, u) for v, u in zip(exported["faces"].ravel().tolist(),
                                   map(tuple, np.round(exported["uv"].reshape(-1, 2), 5).tolist()))}
    theirs = {(v, u) for v, u in zip(faces.ravel().tolist(), map(tuple, np.round(uv.reshape(-1, 2), 5).tolist()))}
    assert theirs == ours
