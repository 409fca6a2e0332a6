"""Motions on the cut avatar: the stump follows its bone frame by frame, in Blender and after GLB/FBX re-import."""
from __future__ import annotations

import math

import bpy
import numpy as np
import pytest
import torch

from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.mesh.animation import MotionError, apply_motion, read_motion
from resihmr_blender.mesh.build import build_avatar, evaluated_vertices
from resihmr_blender.mesh.cut import cut_residual
from resihmr_blender.mesh.export import export_avatar

FRAMES = 12


def walking_motion(path, frames=FRAMES, layout=165):
    """A short synthetic walk in AMASS layout (z-up world): hips and knees swing, the body moves forward."""
    t = np.linspace(0, 2 * math.pi, frames)
    poses = np.zeros((frames, layout))
    poses[:, 0] = math.pi / 2  # AMASS root: body y-up -> world z-up
    poses[:, 3 + 0 * 3] = -0.5 * np.sin(t)  # left hip flexion (x)
    poses[:, 3 + 1 * 3] = 0.5 * np.sin(t)  # right hip
    poses[:, 3 + 3 * 3] = 0.6 * np.clip(np.sin(t), 0, None)  # left knee
    poses[:, 3 + 4 * 3] = 0.6 * np.clip(-np.sin(t), 0, None)  # right knee
    trans = np.stack([np.zeros(frames), np.linspace(0, 0.8, frames), np.full(frames, 0.9)], axis=1)
    np.savez(path, poses=poses, trans=trans, mocap_frame_rate=np.array(30.0))
    return path


@pytest.fixture()
def avatar():
    bpy.ops.wm.read_homefile(use_empty=True)
    model = load_body_model()
    arm, obj = build_avatar(model, {"betas": np.zeros(10), "global_orient": np.array([math.pi, 0, 0]),
                                    "body_pose": np.zeros(63), "transl": np.zeros(3)})
    sealed = cut_residual(obj, "left_transtibial", 0.4)
    n = len(obj.data.vertices)
    cap = np.arange(n - len(sealed.new_vertices), n)
    avatar_keep.clear()
    avatar_keep.append(sealed.keep)
    return arm, obj, cap


avatar_keep: list = []


def cap_in_bone_frame(arm, obj, cap, bone_name):
    """Cap vertices in the bone's own frame, for every frame: constant when the stump follows the bone."""
    out = []
    for frame in range(FRAMES):  # keys from frame 0
        bpy.context.scene.frame_set(frame)
        verts = evaluated_vertices(obj)[cap]
        evaluated = arm.evaluated_get(bpy.context.evaluated_depsgraph_get())
        bone = evaluated.pose.bones[bone_name]
        world = np.array(evaluated.matrix_world) @ np.array(bone.matrix)
        local = (np.linalg.inv(world) @ np.c_[verts, np.ones(len(verts))].T).T[:, :3]
        out.append(local)
    return np.stack(out)


def test_read_motion_layouts_and_errors(tmp_path):
    for layout in (165, 156, 66):
        poses, trans, rate = read_motion(walking_motion(tmp_path / f"m{layout}.npz", layout=layout))
        assert poses.shape == (FRAMES, 55, 3) and trans.shape == (FRAMES, 3) and rate == 30.0
    np.savez(tmp_path / "bad.npz", poses=np.zeros((4, 70)), trans=np.zeros((4, 3)))
    with pytest.raises(MotionError, match=r"bad\.npz: field 'poses' has shape \(4, 70\)"):
        read_motion(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", poses=np.zeros((4, 66)), trans=np.zeros((3, 3)))
    with pytest.raises(MotionError, match="'trans' has shape"):
        read_motion(tmp_path / "short.npz")


def test_motion_matches_the_core_forward(tmp_path, avatar):
    arm, obj, _ = avatar
    poses, trans, rate = read_motion(walking_motion(tmp_path / "walk.npz"))
    apply_motion(arm, poses, trans, rate)
    model = load_body_model(dtype=torch.float64)
    # the kept (uncut) vertices equal the model's forward in AMASS's world, which is Blender's
    keep = avatar_keep[0]
    for frame in (0, 5, FRAMES - 1):
        bpy.context.scene.frame_set(frame)
        got = evaluated_vertices(obj)[: keep.sum()]
        ref = model.forward(global_orient=torch.tensor(poses[frame, 0])[None],
                            body_pose=torch.tensor(poses[frame, 1:22]).reshape(1, -1),
                            transl=torch.tensor(trans[frame])[None]).vertices[0].numpy()[keep]
        assert np.abs(got - ref).max() < 1e-3


def test_stump_follows_its_bone_in_blender_and_after_export(tmp_path, avatar):
    arm, obj, cap = avatar
    poses, trans, rate = read_motion(walking_motion(tmp_path / "walk.npz"))
    apply_motion(arm, poses, trans, rate)
    local = cap_in_bone_frame(arm, obj, cap, "left_knee")
    assert np.abs(local - local[0]).max() < 1e-4
    world_before = []
    for frame in range(FRAMES):
        bpy.context.scene.frame_set(frame)
        world_before.append(evaluated_vertices(obj)[cap].mean(axis=0))
    world_before = np.array(world_before)
    assert np.linalg.norm(world_before[-1] - world_before[0]) > 0.3  # it really moved
    paths = {suffix: export_avatar(arm, obj, tmp_path / f"walk.{suffix}", animation=True)
             for suffix in ("glb", "fbx")}
    for suffix, path in paths.items():
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.context.scene.render.fps = round(rate)  # glTF keys by time: read it at the motion's frame rate
        if suffix == "glb":
            bpy.ops.import_scene.gltf(filepath=str(path))
        else:
            bpy.ops.import_scene.fbx(filepath=str(path), use_anim=True, anim_offset=0)  # file keys from 0
        new_arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
        new_obj = next(o for o in bpy.data.objects if o.type == "MESH" and o.find_armature() is not None)
        assert new_arm.animation_data is not None
        # the motion's clip (the file also carries `photo_pose`), in the motion's own world placement
        new_arm.animation_data.action = next(a for a in bpy.data.actions if a.name.endswith("ResiHMR motion"))
        # the imported cap: the vertices nearest to the original cap at frame 0 (GLB splits vertices)
        bpy.context.scene.frame_set(0)
        verts = evaluated_vertices(new_obj)
        centroid_first = world_before[0]
        near = np.nonzero(np.linalg.norm(verts - centroid_first, axis=1) < 0.04)[0]
        assert len(near) > 5
        for frame in (0, FRAMES // 2, FRAMES - 1):
            bpy.context.scene.frame_set(frame)
            moved = evaluated_vertices(new_obj)[near].mean(axis=0)
            assert np.linalg.norm(moved - world_before[frame]) < 0.02, (suffix, frame)
