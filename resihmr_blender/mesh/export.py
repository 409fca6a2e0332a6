"""Export the avatar to GLB / FBX without touching the user's scene.

The export runs on a temporary duplicate (armature + mesh + prosthesis devices, their own data), which gets what
the formats need (the residual mask as an active vertex colour for glTF's COLOR_0), is exported with only itself
selected, and is deleted afterwards; the user's objects, selection and active object are restored.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import bpy
import numpy as np

from ..core.atomic import atomic_path
from ..core.colours import RESIDUAL_RGBA, SKIN_RGBA
from .cut import MASK_NAME, RED_MATERIAL, SKIN_MATERIAL
from .export_pose import POSES, stage
from .prosthesis import devices

COLOR_NAME = "residual_color"

# Presets: what engines expect. All keep every bone (humanoid mappings need the full skeleton).
PRESETS = {
    "unity": {"fbx": {"axis_forward": "-Z", "axis_up": "Y", "apply_scale_options": "FBX_SCALE_UNITS"}},
    "unreal": {"fbx": {"axis_forward": "-Y", "axis_up": "Z", "apply_scale_options": "FBX_SCALE_NONE"}},
    "web": {"glb": {}},
}


class ExportError(RuntimeError):
    pass


@contextmanager
def _temporary_copy(arm_obj, mesh_obj, devices=()):
    """A duplicate of the avatar (objects and data) carrying the user-facing names, so files hold `ResiHMR`, not
    `ResiHMR.001`: the originals are renamed aside while it exists and get their names back afterwards. Prosthesis
    devices (mesh/prosthesis.py) are copied the same way, skinned to the copied armature."""
    scene = bpy.context.scene
    collection = bpy.data.collections.new("ResiHMR export (temporary)")
    scene.collection.children.link(collection)
    originals = [arm_obj, arm_obj.data, mesh_obj, mesh_obj.data]
    for device in devices:
        originals += [device, device.data]
    names = [i.name for i in originals]
    arm_copy = arm_obj.copy()
    arm_copy.data = arm_obj.data.copy()
    collection.objects.link(arm_copy)
    skinned = []
    for obj in (mesh_obj, *devices):
        copy = obj.copy()
        copy.data = obj.data.copy()
        # the skinned mesh is a root node (glTF: parent transforms do not reach a skinned mesh, the Khronos
        # validator warns otherwise); its armature modifier alone ties it to the rig
        copy.parent = None
        copy.matrix_world = obj.matrix_world.copy()
        for modifier in copy.modifiers:
            if modifier.type == "ARMATURE":
                modifier.object = arm_copy
        collection.objects.link(copy)
        skinned.append(copy)
    mesh_copy, device_copies = skinned[0], skinned[1:]
    copies = [arm_copy, arm_copy.data]
    for copy in skinned:
        copies += [copy, copy.data]
    try:
        for original, copy, name in zip(originals, copies, names):
            original.name = f"{name} (scene)"
            copy.name = name
        yield arm_copy, mesh_copy, device_copies
    finally:
        meshes, armatures = [c.data for c in skinned], [arm_copy.data]
        for copy in skinned:
            bpy.data.objects.remove(copy)
        bpy.data.objects.remove(arm_copy)
        for data in meshes:
            bpy.data.meshes.remove(data)
        for data in armatures:
            bpy.data.armatures.remove(data)
        # baking the shape leaves the copy's shape-key block without an owner: Blender would refuse it on save
        orphan_keys = [k for k in bpy.data.shape_keys if k.user is None]
        if orphan_keys:
            bpy.data.batch_remove(orphan_keys)
        bpy.data.collections.remove(collection)
        for original, name in zip(originals, names):
            original.name = name


@contextmanager
def _only_selected(objects):
    view_layer = bpy.context.view_layer
    previous = [o for o in view_layer.objects if o is not None and o.select_get()]
    active = view_layer.objects.active
    for o in previous:
        o.select_set(False)
    for o in objects:
        o.select_set(True)
    view_layer.objects.active = objects[0]
    try:
        yield
    finally:
        for o in objects:
            if o.name in view_layer.objects:
                o.select_set(False)
        for o in previous:
            if o.name in view_layer.objects:
                o.select_set(True)
        view_layer.objects.active = active


def add_mask_color(mesh) -> None:
    """Residual mask as the active point colour (red on the residual limb), so glTF writes it as COLOR_0."""
    n = len(mesh.vertices)
    mask = np.zeros(n, np.float32)
    if MASK_NAME in mesh.attributes:
        mesh.attributes[MASK_NAME].data.foreach_get("value", mask)
    colors = np.where(mask[:, None] > 0.5, RESIDUAL_RGBA, SKIN_RGBA).astype(np.float32)
    if COLOR_NAME in mesh.color_attributes:
        mesh.color_attributes.remove(mesh.color_attributes[COLOR_NAME])
    attribute = mesh.color_attributes.new(COLOR_NAME, "FLOAT_COLOR", "POINT")
    attribute.data.foreach_set("color", colors.ravel())
    mesh.color_attributes.active_color = attribute
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index


@contextmanager
def _export_materials(mesh):
    """Materials whose base colour every format carries (glTF baseColorFactor, FBX diffuse): red on the residual
    limb, skin elsewhere, whatever the viewport highlight shows. Copies under the user-facing names, assigned to
    the temporary mesh only; the originals get their names back afterwards."""
    colours = {RED_MATERIAL: RESIDUAL_RGBA, SKIN_MATERIAL: SKIN_RGBA}
    swapped = []
    try:
        for slot, material in enumerate(mesh.materials):
            if material is None or material.name not in colours:
                continue
            name = material.name
            copy = material.copy()
            material.name = f"{name} (scene)"
            copy.name = name
            copy.diffuse_color = colours[name]
            bsdf = next((n for n in copy.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None) \
                if copy.node_tree is not None else None
            if bsdf is not None:
                bsdf.inputs["Base Color"].default_value = colours[name]
                bsdf.inputs["Roughness"].default_value = 0.6
            mesh.materials[slot] = copy
            swapped.append((material, copy, name))
        yield
    finally:
        for material, copy, name in swapped:
            bpy.data.materials.remove(copy)
            material.name = name


def bake_shape(mesh_obj) -> None:
    """The fitted shape into the base mesh (the shape keys' mix applied, then the keys removed), so clients that
    do not apply default morph weights (trimesh, three.js's FBX loader, many engines) show the person's body."""
    if mesh_obj.data.shape_keys is None:
        return
    with bpy.context.temp_override(object=mesh_obj, active_object=mesh_obj):
        bpy.ops.object.shape_key_remove(all=True, apply_mix=True)


INFLUENCES = (4, 8)


def export_avatar(arm_obj, mesh_obj, path: str | os.PathLike, fmt: str | None = None, animation: bool = False,
                  preset: str | None = None, shape_keys: bool = False, pose: str = "rest",
                  photo_params: dict | None = None, influences: int = 4) -> Path:
    """Write GLB or FBX (by `fmt` or the file suffix) atomically; returns the path.

    pose: the static pose, "rest" (T-pose) or "photo", on the ground at the origin in both formats; the photo's
    pose is always included as the one-frame clip `photo_pose` (export_pose.py), and `animation` adds the
    armature's own action (a motion) as a second clip. photo_params: the photo's SMPL-X parameters (None: the
    pose bones as they are). By default the fitted shape is baked into the exported mesh (`shape_keys=True`
    keeps the shape keys as morph targets instead); the residual limb is red in its material and in the vertex
    colours (GLB COLOR_0, FBX colour layer). influences: skin weights per vertex in GLB (8 writes JOINTS_1 /
    WEIGHTS_1; FBX has no cap)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in ("glb", "fbx"):
        raise ExportError(f"{path}: unknown export format {fmt!r} (use .glb or .fbx)")
    if pose not in POSES:
        raise ExportError(f"{path}: pose {pose!r} unknown (use {' or '.join(POSES)})")
    if influences not in INFLUENCES:
        raise ExportError(f"{path}: {influences} skin influences per vertex not available (use 4 or 8)")
    if preset not in (None, *PRESETS):
        raise ExportError(f"{path}: preset {preset!r} unknown (use {', '.join(PRESETS)})")
    options = dict(PRESETS.get(preset or "", {}).get(fmt, {}))
    motion = arm_obj.animation_data.action if animation and arm_obj.animation_data is not None else None
    scene = bpy.context.scene
    frame = scene.frame_current
    made, renamed = [], []
    try:
        with atomic_path(path) as tmp:
            with _temporary_copy(arm_obj, mesh_obj, devices(mesh_obj)) as (arm_copy, mesh_copy, device_copies), \
                    _only_selected([arm_copy, mesh_copy, *device_copies]):
                if not shape_keys:
                    bake_shape(mesh_copy)
                before = mesh_copy.location.copy()
                stage(arm_copy, mesh_copy, pose, photo_params, motion, made, renamed)
                for device in device_copies:  # root nodes too: onto the ground with the body
                    device.location = device.location + (mesh_copy.location - before)
                add_mask_color(mesh_copy.data)
                with _export_materials(mesh_copy.data):
                    if fmt == "glb":
                        bpy.ops.export_scene.gltf(
                            filepath=str(tmp), export_format="GLB", use_selection=True, export_skins=True,
                            export_morph=shape_keys, export_vertex_color="ACTIVE", export_animations=True,
                            export_animation_mode="ACTIONS", export_anim_single_armature=False,
                            export_nla_strips=True, export_rest_position_armature=pose == "rest",
                            export_influence_nb=influences, export_current_frame=False,
                            export_def_bones=False, export_yup=True, export_apply=False, **options)
                    else:
                        bpy.ops.export_scene.fbx(
                            filepath=str(tmp), use_selection=True, add_leaf_bones=False, bake_anim=True,
                            bake_anim_use_nla_strips=True, bake_anim_use_all_actions=False,
                            bake_anim_force_startend_keying=True, use_armature_deform_only=False,
                            colors_type="LINEAR", prioritize_active_color=True, **options)
    finally:
        for action in made:
            bpy.data.actions.remove(action)
        for action, name in renamed:
            action.name = name
        scene.frame_set(frame)
    return path
