"""Clients nobody here wrote open an animated export of a three-limb avatar and agree with Blender.

three.js (GLTFLoader, AnimationMixer) inside headless Chromium reads the GLB; assimp reads the FBX; trimesh reads
the GLB's geometry. Each must see the vertices Blender exported, the 55 bones, red on exactly the residual
vertices, and a clip that moves the bones. Chromium and assimp come from Debian (the Makefile installs them where
apt-get can); without them these tests skip with a reason.
"""
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
from resihmr_blender.mesh.animation import apply_motion
from resihmr_blender.mesh.build import build_avatar
from resihmr_blender.mesh.cut import cut_residual
from resihmr_blender.mesh.export import export_avatar

ROOT = Path(__file__).resolve().parents[1]
ZUP_TO_YUP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # Blender (x, y, z) -> glTF (x, z, -y)
FRAMES = 8
CLIP = "ResiHMR motion"
MOVED = ("left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder")  # bones the walk below rotates


def walk(frames: int = FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """A short walk (AMASS conventions, z-up): hips and knees swing, an arm lifts, the body moves forward."""
    t = np.linspace(0, math.pi, frames)
    poses = np.zeros((frames, 55, 3))
    poses[:, 0, 0] = math.pi / 2  # body y-up -> world z-up
    poses[:, 1, 0], poses[:, 2, 0] = -0.5 * np.sin(t), 0.5 * np.sin(t)  # hips
    poses[:, 4, 0], poses[:, 5, 0] = 0.6 * np.sin(t), 0.3 * np.sin(t)  # knees
    poses[:, 16, 2] = -0.8 * np.sin(t)  # left shoulder
    trans = np.stack([np.zeros(frames), np.linspace(0, 0.5, frames), np.full(frames, 0.9)], axis=1)
    return poses, trans


@pytest.fixture(scope="module")
def walking(tmp_path_factory):
    """Blender's side: the cut avatar walking, exported animated to GLB and FBX, and what Blender says of it."""
    out = tmp_path_factory.mktemp("clients")
    bpy.ops.wm.read_homefile(use_empty=True)
    params = {"betas": np.linspace(-1, 1, 10), "global_orient": np.array([math.pi, 0.2, 0.0]),
              "body_pose": np.zeros(63), "transl": np.array([0.0, 0.1, 3.0])}
    arm, obj = build_avatar(load_body_model(), params)
    for kind, length in (("left_transtibial", 0.4), ("right_transradial", 0.6), ("left_transhumeral", 0.5)):
        cut_residual(obj, kind, length)
    apply_motion(arm, *walk(), frame_rate=30.0, name=CLIP)
    glb = export_avatar(arm, obj, out / "walk.glb", animation=True)
    fbx = export_avatar(arm, obj, out / "walk.fbx", animation=True)
    mask = np.zeros(len(obj.data.vertices), np.float32)
    obj.data.attributes["residual_mask"].data.foreach_get("value", mask)
    keys = obj.data.shape_keys.key_blocks
    basis = np.array([v.co[:] for v in keys[0].data])
    rest = basis + sum(k.value * (np.array([v.co[:] for v in k.data]) - basis) for k in keys[1:])  # exported shape
    names = [b.name for b in arm.data.bones]
    parents = {b.name: b.parent.name if b.parent else None for b in arm.data.bones}
    weights = np.zeros((len(obj.vertex_groups), len(obj.data.vertices)))
    for v in obj.data.vertices:
        for g in v.groups:
            weights[g.group, v.index] = g.weight
    skinning = {g.name for g in obj.vertex_groups if g.name in parents and weights[g.index].max() > 1e-5}
    heads = {}  # bone heads in world space per frame, as glTF sees them (y-up)
    scene = bpy.context.scene
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        world = np.array(arm.matrix_world)
        heads[frame - scene.frame_start] = np.array(
            [(world @ np.r_[arm.pose.bones[n].head[:], 1.0])[:3] for n in names]) @ ZUP_TO_YUP.T
    return {"glb": glb, "fbx": fbx, "folder": out, "n_verts": len(obj.data.vertices), "bones": names,
            "parents": parents, "skinning": skinning,
            "residual": mask > 0.5, "rest": rest, "rest_yup": rest @ ZUP_TO_YUP.T, "heads": heads}


def need(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} not found: `make venv` installs Debian's {package} where apt-get runs as root")
    return path


def weld(positions: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clients split vertices along seams and materials: one row per distinct position, with its colours, which
    must agree wherever the position was split."""
    unique, inverse = np.unique(positions, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    low = np.full((len(unique), colours.shape[1]), np.inf)
    high = np.full((len(unique), colours.shape[1]), -np.inf)
    np.minimum.at(low, inverse, colours)
    np.maximum.at(high, inverse, colours)
    assert (high - low).max() < 1e-3, "one vertex carries two colours"
    return unique, low


def red(colours: np.ndarray) -> np.ndarray:
    return (colours[:, 0] > 0.7) & (colours[:, 1] < 0.3) & (colours[:, 2] < 0.3)


def nearest(points: np.ndarray, cloud: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest cloud point, for each point."""
    index, dist = np.empty(len(points), int), np.empty(len(points))
    square = (cloud ** 2).sum(1)
    for start in range(0, len(points), 1024):
        chunk = points[start:start + 1024]
        d2 = (chunk ** 2).sum(1)[:, None] + square[None] - 2 * chunk @ cloud.T
        index[start:start + 1024] = d2.argmin(1)
        dist[start:start + 1024] = np.sqrt(np.maximum(d2.min(1), 0))
    return index, dist


def assert_residual_vertices_red(walking, positions: np.ndarray, colours: np.ndarray, frame: str = "rest_yup"):
    """Every Blender vertex is found at its place, red exactly where residual_mask is set. The exporters stand the
    body on the ground at the origin, so the files hold Blender's vertices moved by one translation: both clouds
    are compared about their centroids (the same vertices, so the same centroid)."""
    expected = walking[frame]
    index, dist = nearest(expected - expected.mean(0), positions - positions.mean(0))
    assert dist.max() < 1e-3
    assert len(np.unique(index)) == walking["n_verts"]
    is_red = red(colours)[index]
    residual = walking["residual"]
    assert residual.sum() > 300  # three limbs' segments and caps
    assert is_red[residual].all(), f"{(~is_red[residual]).sum()} residual vertices are not red"
    assert not is_red[~residual].any(), f"{is_red[~residual].sum()} intact vertices are red"


@pytest.fixture(scope="module")
def three(walking):
    chromium = need("chromium", "chromium")
    node = shutil.which("node")
    assert node, "node is needed to drive Chromium (make test installs three and playwright-core with npm)"
    script = ROOT / "tests" / "clients" / "three_glb.mjs"
    proc = subprocess.run([node, str(script), str(walking["glb"]), CLIP, chromium], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:] or proc.stdout[-2000:]
    return json.loads(proc.stdout)


def test_three_js_sees_one_skinned_mesh_with_55_bones_and_every_residual_vertex_red(walking, three):
    assert three["sourceMeshes"] == [0] and three["skeletons"] == 1  # one glTF mesh, one skin
    assert three["skinnedMeshes"] == 2  # three.js makes one SkinnedMesh per primitive: skin, residual limb
    assert three["bones"] == walking["bones"] and len(three["bones"]) == 55
    positions = np.concatenate([np.reshape(p["positions"], (-1, 3)) for p in three["primitives"]])
    assert all(p["colors"] is not None for p in three["primitives"]), "a primitive has no COLOR_0"
    colours = np.concatenate([np.reshape(p["colors"], (-1, p["colorSize"]))[:, :3] for p in three["primitives"]])
    positions, colours = weld(positions, colours)
    assert len(positions) == walking["n_verts"]
    assert red(colours).sum() == walking["residual"].sum()
    assert_residual_vertices_red(walking, positions, colours)


def test_three_js_animation_mixer_moves_the_bones_as_blender_does(walking, three):
    clips = [c for c in three["clips"] if c["name"] == CLIP]
    assert len(clips) == 1 and clips[0]["duration"] > 0 and "matrices" in three, three["clips"]
    matrices = [np.array(m).reshape(-1, 4, 4).transpose(0, 2, 1) for m in three["matrices"]]  # column-major
    parents, index = walking["parents"], {name: i for i, name in enumerate(three["bones"])}
    for name in MOVED:  # the bone turned against its parent between the two times: the clip rotates it
        parent = index[parents[name]]
        local = [np.linalg.inv(m[parent]) @ m[index[name]] for m in matrices]
        assert np.abs(local[1][:3, :3] - local[0][:3, :3]).max() > 0.05, f"{name} did not move"
    # and every bone lands where Blender puts it, frame by frame, up to the one move onto the ground at the origin
    offset = (matrices[0][:, :3, 3] - walking["heads"][three["keys"][0]]).mean(0)
    for key, world in zip(three["keys"], matrices):
        assert np.abs(world[:, :3, 3] - walking["heads"][key] - offset).max() < 1e-3


def quaternion_angle(a, b) -> float:
    return 2 * math.acos(min(1.0, abs(float(np.dot(a, b)))))


@pytest.mark.parametrize("fmt", ["fbx", "glb"])
def test_assimp_sees_one_mesh_55_bones_red_residual_vertices_and_a_moving_clip(walking, fmt, tmp_path):
    """assimp (its own FBX and glTF readers) via `assimp export ... -fassjson`: the scene as JSON."""
    assimp = need("assimp", "assimp-utils")
    out = tmp_path / f"{fmt}.json"
    proc = subprocess.run([assimp, "export", str(walking[fmt]), str(out), "-fassjson"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    scene = json.loads(out.read_text())
    holders, nodes = [], set()  # nodes that carry meshes: assimp makes one aiMesh per material, all on one node

    def visit(node):
        holders.extend([node] if node.get("meshes") else [])
        nodes.add(node["name"])
        for child in node.get("children", []):
            visit(child)
    visit(scene["rootnode"])
    assert len(holders) == 1 and sorted(holders[0]["meshes"]) == list(range(len(scene["meshes"])))
    assert len(scene["meshes"]) == 2  # skin and residual-limb materials
    for mesh in scene["meshes"]:
        names = [b["name"] for b in mesh["bones"]]
        assert set(names) <= set(walking["bones"])
        weight = np.zeros(len(mesh["vertices"]) // 3)
        for bone in (b for b in mesh["bones"] if b["weights"]):
            pairs = np.array(bone["weights"])  # (vertex index, weight) rows
            np.add.at(weight, pairs[:, 0].astype(int), pairs[:, 1])
        assert np.abs(weight - 1).max() < 1e-3, "a vertex's skin weights do not add up to 1"
    assert len(walking["bones"]) == 55 and set(walking["bones"]) <= nodes  # bones of cut-off parts too
    skinning = set().union(*({b["name"] for b in m["bones"] if b["weights"] and np.max(b["weights"], 0)[1] > 1e-5}
                             for m in scene["meshes"]))
    assert skinning == walking["skinning"]
    assert all(len(m.get("colors", [])) == 1 for m in scene["meshes"]), "a mesh has no vertex colours"
    positions = np.concatenate([np.reshape(m["vertices"], (-1, 3)) for m in scene["meshes"]])
    colours = np.concatenate([np.reshape(m["colors"][0], (-1, 4))[:, :3] for m in scene["meshes"]])
    positions, colours = weld(positions, colours)
    assert len(positions) == walking["n_verts"]
    assert red(colours).sum() == walking["residual"].sum()
    assert_residual_vertices_red(walking, positions, colours, "rest" if fmt == "fbx" else "rest_yup")
    clips = [a for a in scene["animations"] if a["name"].endswith(CLIP)]  # FBX: "<armature>|<action>"
    assert len(clips) == 1, [a["name"] for a in scene["animations"]]
    clip = clips[0]
    channels = {c["name"]: c for c in clip["channels"]}
    assert set(walking["bones"]) <= set(channels) and clip["duration"] > 0
    for name in MOVED:
        keys = [np.array(q) for _, q in channels[name]["rotationkeys"]]
        assert len(keys) == FRAMES and quaternion_angle(keys[0], keys[FRAMES // 2]) > 0.05, f"{name} did not move"


def test_trimesh_sees_the_vertices_and_red_residual_vertices_of_the_animated_glb(walking):
    scene = trimesh.load(walking["glb"], force="scene", process=False)
    parts = list(scene.geometry.values())
    positions = np.concatenate([np.asarray(g.vertices) for g in parts])
    colours = np.concatenate([np.asarray(g.visual.vertex_attributes["color"]) for g in parts])[:, :3]
    colours = colours / float(np.iinfo(colours.dtype).max) if colours.dtype.kind == "u" else colours
    positions, colours = weld(positions, colours)
    assert len(positions) == walking["n_verts"]
    assert red(colours).sum() == walking["residual"].sum()
    assert_residual_vertices_red(walking, positions, colours)


# ---------------------------------------------------------------------------------------------------------------
# The avatar of a keypoint sequence (issue 16): one cut avatar carrying the fitted motion as `sequence_motion`

SEQUENCE_FRAMES = 10
SAMPLED = (0, 3, 6, 9)  # frames whose pose three.js is asked for


@pytest.fixture(scope="module")
def sequence_glb(tmp_path_factory):
    """A short synthetic walk of a person with a left transtibial limb, fitted and written as run --sequence
    writes it (avatar.glb), with the fit it came from."""
    import torch

    from benchmarks.bench_sequence import make_walk
    from resihmr_blender.core.sequence import fit_sequence
    from resihmr_blender.core.settings import Settings
    from resihmr_blender.sequence_outputs import write_sequence_outputs

    out = tmp_path_factory.mktemp("sequence")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_body_model()
        walk = make_walk(model, 0, SEQUENCE_FRAMES, missing_share=0.0)
        fit = fit_sequence(model, walk["sequence"])
        write_sequence_outputs(out, fit, model, Settings(), ["glb"])
    finally:
        torch.set_num_threads(threads)
    assert list(walk["residuals"]) == ["left_transtibial"] and fit.frame_numbers() == list(range(SEQUENCE_FRAMES))
    return {"glb": out / "avatar.glb", "fit": fit, "fps": walk["sequence"].fps}


def test_three_js_plays_the_sequence_motion_with_the_stump_on_its_knee_bone(sequence_glb):
    from resihmr_blender.core.body_model import JOINT_INDEX
    from resihmr_blender.mesh.frames import M
    from resihmr_blender.sequence_outputs import SEQUENCE_ACTION

    chromium = need("chromium", "chromium")
    node = shutil.which("node")
    assert node, "node is needed to drive Chromium (make test installs three and playwright-core with npm)"
    fit, fps = sequence_glb["fit"], sequence_glb["fps"]
    times = ",".join(f"{f / fps:.6f}" for f in SAMPLED)
    proc = subprocess.run([node, str(ROOT / "tests" / "clients" / "three_glb.mjs"), str(sequence_glb["glb"]),
                           SEQUENCE_ACTION, chromium, times], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:] or proc.stdout[-2000:]
    three = json.loads(proc.stdout)
    clips = [c for c in three["clips"] if c["name"] == SEQUENCE_ACTION]
    assert len(clips) == 1 and abs(clips[0]["duration"] - (SEQUENCE_FRAMES - 1) / fps) < 1e-3, three["clips"]
    index = {name: i for i, name in enumerate(three["bones"])}
    matrices = [np.array(m).reshape(-1, 4, 4).transpose(0, 2, 1) for m in three["matrices"]]  # column-major
    # the clip moves every bone as the fit moved its joint (camera frame -> Blender's z-up -> glTF's y-up), up to
    # the one placement of the body on the ground
    to_gltf = ZUP_TO_YUP @ M
    for name in ("pelvis", "left_knee", "right_knee", "left_ankle", "right_ankle", "right_wrist"):
        for k, frame in enumerate(SAMPLED[1:], 1):
            moved = matrices[k][index[name], :3, 3] - matrices[0][index[name], :3, 3]
            expected = to_gltf @ (fit.joints_3d[frame, JOINT_INDEX[name]] - fit.joints_3d[0, JOINT_INDEX[name]])
            assert np.linalg.norm(moved - expected) < 0.01, (name, frame, moved, expected)
    # the stump: its far part (red, > 10 cm below the left knee, nearer it than the right knee) keeps its place in
    # the left knee bone's frame in every sampled frame, while it travels with the walk
    knee = [m[index["left_knee"]] for m in matrices]
    right_knee = matrices[0][index["right_knee"], :3, 3]
    red_points = [np.reshape(p, (-1, 3)) for p in three["redSkinned"]]
    near = np.linalg.norm(red_points[0] - knee[0][:3, 3], axis=1)
    stump = (near > 0.1) & (near < np.linalg.norm(red_points[0] - right_knee, axis=1))
    assert stump.sum() > 20
    local = [(np.linalg.inv(k) @ np.c_[p[stump], np.ones(stump.sum())].T).T[:, :3] for k, p in zip(knee, red_points)]
    assert np.abs(np.array(local) - local[0]).max() < 2e-3
    centroids = np.array([p[stump].mean(0) for p in red_points])
    assert np.linalg.norm(centroids - centroids[0], axis=1).max() > 0.05  # the stump really moves with the clip
