"""GLB and FBX exports re-imported into a fresh scene, and the Khronos validator on the GLB."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import bpy
import numpy as np
import pytest
import trimesh

from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.mesh.build import build_avatar
from resihmr_blender.mesh.cut import cut_residual
from resihmr_blender.mesh.export import ExportError, export_avatar

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    bpy.ops.wm.read_homefile(use_empty=True)
    model = load_body_model()
    params = {"betas": np.linspace(-1, 1, 10), "global_orient": np.array([math.pi, 0.2, 0.0]),
              "body_pose": np.zeros(63), "transl": np.array([0.0, 0.1, 3.0])}
    arm, obj = build_avatar(model, params)
    cut_residual(obj, "left_transtibial", 0.4)
    cut_residual(obj, "right_transradial", 0.6)
    cut_residual(obj, "left_transhumeral", 0.5)  # three limbs: every one must be marked in every format
    before = (sorted((o.name, o.type) for o in bpy.data.objects), sorted(m.name for m in bpy.data.meshes),
              sorted(k.name for k in bpy.data.shape_keys), sorted(m.name for m in bpy.data.materials))
    glb = export_avatar(arm, obj, out / "avatar.glb")
    fbx = export_avatar(arm, obj, out / "avatar.fbx", preset="unity")
    morphs = export_avatar(arm, obj, out / "avatar_morphs.glb", shape_keys=True)
    mask = np.zeros(len(obj.data.vertices), np.float32)
    obj.data.attributes["residual_mask"].data.foreach_get("value", mask)
    keys = obj.data.shape_keys.key_blocks
    basis = np.array([v.co[:] for v in keys[0].data])
    shaped = basis + sum(k.value * (np.array([v.co[:] for v in k.data]) - basis) for k in keys[1:])  # rest shape
    pelvis = np.array(arm.data.bones["pelvis"].head_local)
    shaped = shaped - [pelvis[0], pelvis[1], shaped[:, 2].min()]  # exports stand on the ground at the origin
    after = (sorted((o.name, o.type) for o in bpy.data.objects), sorted(m.name for m in bpy.data.meshes),
             sorted(k.name for k in bpy.data.shape_keys), sorted(m.name for m in bpy.data.materials))
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "after_export.blend"), copy=True)  # no orphan Blender refuses
    weights = {v.index: {obj.vertex_groups[g.group].name: g.weight for g in v.groups} for v in obj.data.vertices}
    return {"glb": glb, "fbx": fbx, "morphs": morphs, "before": before, "after": after,
            "n_verts": len(obj.data.vertices), "n_bones": len(arm.data.bones), "weights": weights, "folder": out,
            "mask": mask > 0.5, "shaped": shaped}


def imported(path: Path):
    bpy.ops.wm.read_homefile(use_empty=True)
    if path.suffix == ".glb":
        bpy.ops.import_scene.gltf(filepath=str(path))
    else:
        bpy.ops.import_scene.fbx(filepath=str(path))
    arms = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and o.find_armature() is not None]
    assert len(arms) == 1 and len(meshes) == 1
    return arms[0], meshes[0]


def welded(mesh_obj) -> tuple[np.ndarray, np.ndarray]:
    import bmesh  # after bpy

    bm = bmesh.new()
    bm.from_mesh(mesh_obj.data)
    bmesh.ops.remove_doubles(bm, verts=bm.verts, dist=1e-6)
    verts = np.array([v.co[:] for v in bm.verts])
    faces = np.array([[v.index for v in f.verts] for f in bm.faces])
    bm.free()
    return verts, faces


def test_export_leaves_the_scene_as_it_was(exported):
    assert exported["before"] == exported["after"]
    assert not list(exported["folder"].glob(".*"))  # no temp files left


def test_glb_passes_the_khronos_validator(exported):
    node = shutil.which("node")
    assert node, "node is needed for the glTF validator (make test installs gltf-validator with npm)"
    proc = subprocess.run([node, str(ROOT / "tools" / "gltf_validate.cjs"), str(exported["glb"])],
                          capture_output=True, text=True, timeout=120, check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["numErrors"] == 0 and report["numWarnings"] == 0, report


def test_glb_reimports_with_skin_mask_and_closed_stumps(exported):
    arm, mesh_obj = imported(exported["glb"])
    assert len(arm.data.bones) == exported["n_bones"] == 55
    verts, faces = welded(mesh_obj)
    assert len(verts) == exported["n_verts"]
    closed = trimesh.Trimesh(verts, faces, process=False)
    assert closed.is_watertight and closed.is_winding_consistent
    colors = mesh_obj.data.color_attributes
    assert len(colors) == 1
    values = np.empty(len(colors[0].data) * 4, np.float32)
    colors[0].data.foreach_get("color", values)
    rgba = values.reshape(-1, 4)
    red = (rgba[:, 0] > 0.5) & (rgba[:, 1] < 0.3)
    assert 50 < red.sum() < len(rgba) / 2
    assert mesh_obj.data.shape_keys is None  # the fitted shape is baked into the base mesh by default


def glb_json(path: Path) -> dict:
    data = path.read_bytes()
    length = int.from_bytes(data[12:16], "little")
    return json.loads(data[20:20 + length])


def nearest(points: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """Index of the nearest cloud point for each point, and the distance."""
    index, dist = np.empty(len(points), int), np.empty(len(points))
    for start in range(0, len(points), 512):
        d = np.linalg.norm(points[start:start + 512, None] - cloud[None], axis=2)
        index[start:start + 512], dist[start:start + 512] = d.argmin(1), d.min(1)
    return index, dist


def test_trimesh_sees_the_persons_shape_and_every_residual_limb_red(exported):
    """An independent client (trimesh, which ignores default morph weights): the GLB's base mesh is the fitted
    rest shape to 1 mm, and COLOR_0 is red on every vertex of all three residual limbs."""
    scene = trimesh.load(exported["glb"], force="scene", process=False)
    parts = list(scene.geometry.values())  # one primitive per material: skin, residual limb
    assert len(parts) == 2
    vertices = np.concatenate([np.asarray(g.vertices) for g in parts])
    shaped_yup = exported["shaped"] @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]).T  # Blender z-up -> glTF y-up
    index, dist = nearest(shaped_yup, vertices)
    assert dist.max() < 1e-3
    colours = np.concatenate([np.asarray(g.visual.vertex_attributes["color"]) for g in parts])[index]  # COLOR_0
    colours = colours / float(np.iinfo(colours.dtype).max) if colours.dtype.kind == "u" else colours
    residual = exported["mask"]
    assert residual.sum() > 300  # three limbs' segments and caps
    assert (colours[residual, 0] > 0.7).all() and (colours[residual, 1] < 0.3).all()
    assert (colours[~residual, 1] > 0.6).all()  # skin is grey, not red
    materials = {m["name"]: m["pbrMetallicRoughness"]["baseColorFactor"]
                 for m in glb_json(exported["glb"])["materials"]}
    red = materials["ResiHMR residual limb"]
    assert red[0] > 0.8 and red[1] < 0.1 and red[2] < 0.1  # red in the material too, not the default grey


def test_shape_keys_kept_on_request(exported):
    doc = glb_json(exported["morphs"])
    targets = doc["meshes"][0]["primitives"][0].get("targets", [])
    assert len(targets) == 10  # one morph target per shape coefficient


def test_fbx_reimports_with_the_same_bones_vertices_and_weights(exported):
    arm, mesh_obj = imported(exported["fbx"])
    assert len(arm.data.bones) == 55 and len(mesh_obj.data.vertices) == exported["n_verts"]
    for v in list(mesh_obj.data.vertices)[::97]:
        got = {mesh_obj.vertex_groups[g.group].name: g.weight for g in v.groups if g.weight > 1e-6}
        # skin weights round-trip; the residual_mask group is not a bone, FBX keeps only skin clusters
        want = {k: w for k, w in exported["weights"][v.index].items() if w > 1e-6 and k != "residual_mask"}
        assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-4 for k in want)
    verts = np.array([v.co[:] for v in mesh_obj.data.vertices])
    faces = np.array([p.vertices[:] for p in mesh_obj.data.polygons])
    assert trimesh.Trimesh(verts, faces, process=False).is_watertight
    # the residual limbs are red in FBX too: the vertex colour layer and the material's base colour
    colors = mesh_obj.data.color_attributes
    assert len(colors) == 1
    values = np.empty(len(colors[0].data) * 4, np.float32)
    colors[0].data.foreach_get("color", values)
    rgba = values.reshape(-1, 4)
    if colors[0].domain == "CORNER":
        per_vertex = np.zeros((len(mesh_obj.data.vertices), 4))
        loops = np.array([loop.vertex_index for loop in mesh_obj.data.loops])
        per_vertex[loops] = rgba
        rgba = per_vertex
    assert ((rgba[:, 0] > 0.5) & (rgba[:, 1] < 0.3)).sum() == exported["mask"].sum()
    red = next(m for m in mesh_obj.data.materials if m.name.startswith("ResiHMR residual limb"))
    bsdf = next(n for n in red.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    base = bsdf.inputs["Base Color"].default_value
    assert base[0] > 0.5 and base[1] < 0.2


def test_unknown_format_is_refused(exported):
    with pytest.raises(ExportError, match="unknown export format"):
        export_avatar(None, None, exported["folder"] / "avatar.obj")
