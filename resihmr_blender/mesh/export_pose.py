"""One pose convention for every exported file (GLB and FBX alike), set up on the export's temporary copy.

- `rest` (default): the static pose is the T-pose, standing on the ground at the origin (lowest vertex at height
  0, pelvis above the origin); the photo's pose travels along as a one-frame action `photo_pose`, so engines get
  both.
- `photo`: the static pose is the photo's pose, placed the same way (on the ground, pelvis above the origin; the
  camera's distance is dropped — it lives in result.json).

Actions leave as NLA strips starting at frame 0, and the exporters read the static pose at a frame before every
strip, where the strips evaluate to the rest pose (`rest`) or the photo strip holds its pose (`photo`): glTF and
FBX then hold the same static pose, and each clip (`photo_pose`, a motion) is its own animation with keys from
time 0.
"""
from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix, Quaternion, Vector

from ..core.body_model import JOINT_NAMES
from .build import apply_pose, evaluated_vertices

POSES = ("rest", "photo")
PHOTO_ACTION = "photo_pose"
STATIC_FRAME = -100  # before every strip: the exporters read the static pose here


def _ground_shift(arm_obj, mesh_obj) -> np.ndarray:
    """The world move that puts the pelvis above the origin and the lowest vertex on the ground (the armature
    object is never rotated here, so it is also the armature-space move)."""
    bpy.context.view_layer.update()
    vertices = evaluated_vertices(mesh_obj)
    pelvis = np.array(arm_obj.matrix_world @ arm_obj.pose.bones[JOINT_NAMES[0]].head)
    return np.array([-pelvis[0], -pelvis[1], -vertices[:, 2].min()])


def _clear_pose(arm_obj) -> None:
    for bone in arm_obj.pose.bones:
        bone.rotation_mode = "QUATERNION"
        bone.rotation_quaternion = Quaternion((1.0, 0.0, 0.0, 0.0))
        bone.location = (0.0, 0.0, 0.0)
        bone.scale = (1.0, 1.0, 1.0)


def _in_root_frame(arm_obj, shift: np.ndarray) -> Vector:
    """An armature-space move as a change of the root bone's location (which lives in the bone's rest frame)."""
    rest = arm_obj.data.bones[JOINT_NAMES[0]].matrix_local.to_3x3()
    return rest.inverted() @ Vector(shift.tolist())


def _move_root(arm_obj, shift: np.ndarray) -> None:
    """Move the posed body by `shift` (armature space) through the root bone's location."""
    root = arm_obj.pose.bones[JOINT_NAMES[0]]
    root.location = Vector(root.location) + _in_root_frame(arm_obj, shift)


def _key_pose(arm_obj, name: str, frame: int = 0):
    action = bpy.data.actions.new(name)
    arm_obj.animation_data.action = action
    for bone in arm_obj.pose.bones:
        bone.keyframe_insert("rotation_quaternion", frame=frame, group=bone.name)
        if bone.name == JOINT_NAMES[0]:
            bone.keyframe_insert("location", frame=frame, group=bone.name)
    arm_obj.animation_data.action = None
    return action


def _as_strip(arm_obj, action, hold: bool = False) -> None:
    """The action as its own NLA track from frame 0, evaluating to nothing outside its range (`hold`: to its
    pose everywhere, the static pose of the `photo` convention)."""
    track = arm_obj.animation_data.nla_tracks.new()
    track.name = action.name
    start = int(action.frame_range[0])
    strip = track.strips.new(action.name, start, action)
    strip.extrapolation = "HOLD" if hold else "NOTHING"
    strip.blend_type = "REPLACE"
    if start != 0:
        strip.frame_start_ui = 0  # keys from time 0 in every format


def _fcurves(action):
    """Every F-curve of an action (Blender 5 keeps them in layers > strips > channel bags)."""
    for layer in action.layers:
        for strip in layer.strips:
            for bag in strip.channelbags:
                yield from bag.fcurves


def _shifted_copy(action, arm_obj, shift: np.ndarray):
    """A copy of a motion whose root moves by `shift` (armature space): the motion keeps its own world placement
    while the armature object stands the rest pose on the ground."""
    moved = action.copy()
    local = _in_root_frame(arm_obj, shift)
    path = f'pose.bones["{JOINT_NAMES[0]}"].location'
    for curve in _fcurves(moved):
        if curve.data_path == path:
            for key in curve.keyframe_points:
                key.co[1] += local[curve.array_index]
                key.handle_left[1] += local[curve.array_index]
                key.handle_right[1] += local[curve.array_index]
    return moved


def _set_aside(action, renamed: list) -> str:
    """Rename a scene action out of the way of a clip of its name; (action, name) goes into `renamed`."""
    name = action.name
    action.name = f"{name} (scene)"
    renamed.append((action, name))
    return name


def stage(arm_obj, mesh_obj, pose: str, photo_params: dict | None, motion, made: list, renamed: list) -> None:
    """Set the export copy up for `pose` (see the module's docstring). The actions it makes go into `made` (to
    remove afterwards), the scene's actions it renames aside into `renamed` as (action, name) to give back.

    photo_params: SMPL-X parameters of the photo's pose (None: the pose bones as they are). motion: an action to
    export as well (e.g. the avatar's own), shifted to start at frame 0.
    """
    if arm_obj.animation_data is None:
        arm_obj.animation_data_create()
    arm_obj.animation_data.action = None
    for track in list(arm_obj.animation_data.nla_tracks):
        arm_obj.animation_data.nla_tracks.remove(track)
    if photo_params is not None:
        apply_pose(arm_obj, photo_params)
    photo = {b.name: (Quaternion(b.rotation_quaternion), Vector(b.location)) for b in arm_obj.pose.bones}
    # the rest pose on the ground: the armature object moves (its node transform in every format)
    _clear_pose(arm_obj)
    arm_obj.matrix_world = Matrix.Identity(4)
    rest_shift = _ground_shift(arm_obj, mesh_obj)
    arm_obj.location = Vector(rest_shift.tolist())
    if mesh_obj.parent is None:  # a root skinned mesh (the export copy) moves with its rig
        mesh_obj.location = mesh_obj.location + Vector(rest_shift.tolist())
    # the photo pose on the ground too, through the root bone
    for bone in arm_obj.pose.bones:
        bone.rotation_mode = "QUATERNION"
        bone.rotation_quaternion, bone.location = photo[bone.name]
    _move_root(arm_obj, _ground_shift(arm_obj, mesh_obj))
    clash = bpy.data.actions.get(PHOTO_ACTION)
    if clash is not None:  # a scene action of that name (e.g. from an imported file) keeps it afterwards
        _set_aside(clash, renamed)
    made.append(_key_pose(arm_obj, PHOTO_ACTION))
    # once NLA strips animate the bones, what they leave unanimated reads as the rest pose (not the pose bones'
    # own values), so the photo convention's static pose is the photo strip held before and after
    _as_strip(arm_obj, made[0], hold=pose == "photo")
    if motion is not None:  # the copy carries the clip's name; the scene's action is renamed aside meanwhile
        name = _set_aside(motion, renamed)
        made.append(_shifted_copy(motion, arm_obj, -rest_shift))
        made[-1].name = name
        _as_strip(arm_obj, made[-1])
    _clear_pose(arm_obj)
    bpy.context.scene.frame_set(STATIC_FRAME)
    bpy.context.view_layer.update()
