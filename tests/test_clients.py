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
    apply_motion(arm, *walk(), frame_rate=30.0)
    glb = export_avatar(arm, obj, out / "walk.glb", animation=True)
    fbx = export_avatar(arm, obj, out / "walk.fbx", animation=True)
    mask = np.zeros(len(obj.data.vertices), np.float32)
    obj.data.attributes["residual_mask"].data.foreach_get("value", mask)
    keys = obj.data.shape_keys.key_blocks
    basis = np.array([v.co[:] for v in keys[0].data])
    rest = basis + sum(k.value * (np.array([v.co[:] for v in k.data]) - basis) for k in keys[1:])  # exported shape
    names = [b.name for b in arm.data.bones]
    parents = {b.name: b.parent.name if b.parent else None for b in arm.data.bones}
    heads = {}  # bone heads in world space per frame, as glTF sees them (y-up)
    scene = bpy.context.scene
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        world = np.array(arm.matrix_world)
        heads[frame - scene.frame_start] = np.array(
            [(world @ np.r_[arm.pose.bones[n].head[:], 1.0])[:3] for n in names]) @ ZUP_TO_YUP.T
    return {"glb": glb, "fbx": fbx, "folder": out, "n_verts": len(obj.data.vertices), "bones": names,
            "parents": parents,
            "residual": mask > 0.5, "rest_yup": rest @ ZUP_TO_YUP.T, "heads": heads}


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


def assert_residual_vertices_red(walking, positions: np.ndarray, colours: np.ndarray) -> None:
    """Every Blender vertex is found at its place, red exactly where residual_mask is set."""
    index, dist = nearest(walking["rest_yup"], positions)
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
    proc = subprocess.run([node, str(ROOT / "tests" / "clients" / "three_glb.mjs"), str(walking["glb"]), chromium],
                          capture_output=True, text=True, timeout=120, check=False)
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
    assert len(three["clips"]) == 1 and three["clips"][0]["duration"] > 0
    matrices = [np.array(m).reshape(-1, 4, 4).transpose(0, 2, 1) for m in three["matrices"]]  # column-major
    parents, index = walking["parents"], {name: i for i, name in enumerate(three["bones"])}
    for name in MOVED:  # the bone turned against its parent between the two times: the clip rotates it
        parent = index[parents[name]]
        local = [np.linalg.inv(m[parent]) @ m[index[name]] for m in matrices]
        assert np.abs(local[1][:3, :3] - local[0][:3, :3]).max() > 0.05, f"{name} did not move"
    for key, world in zip(three["keys"], matrices):  # and lands where Blender puts it, frame by frame
        assert np.abs(world[:, :3, 3] - walking["heads"][key]).max() < 1e-3
