"""Build the live rigged avatar in the scene: a mesh with shape keys and vertex groups, and a 55-bone armature.

The mesh holds the T-pose rest shape (the paper's T-pose view is the armature's rest position); the fitted
pose sits on the pose bones so the posed object matches the photo from the fitted camera (frames.py).
Pose correctives: Blender's armature deformation is plain linear blend skinning. When the body model has
non-zero pose correctives (a real SMPL-X file), those of the fitted pose are baked into a shape key
"pose_correctives_fitted" (value 1): exact for the fitted pose, approximate for other poses (turn it off for
animation). The embedded body has none.
A copy of the built mesh is kept on the mesh object (`resihmr_uncut`): every re-cut starts from it (cut.py), and
remove_avatar deletes it with the rest.
"""
from __future__ import annotations

import json

import bpy
import numpy as np
import torch
from mathutils import Matrix, Quaternion, Vector

from ..core.body_model import JOINT_NAMES, NUM_JOINTS, BodyModel
from ..core.rotations import axis_angle_to_matrix
from .frames import ROOT_FROM_CAMERA, blender_to_body, body_to_blender

AVATAR_TAG = "resihmr_avatar"  # custom property marking objects this add-on built
UNCUT_PROP = "resihmr_uncut"  # ID property on the mesh object: its uncut mesh, where every re-cut starts (cut.py)
MIN_BONE_LENGTH = 0.02
UV_LAYER = "UVMap"  # Blender's default name: what the exporters and texture nodes pick up without setup


def _rest_shape(model: BodyModel, betas: np.ndarray, expression: np.ndarray | None):
    b = torch.tensor(np.asarray(betas, float)[None], dtype=model.dtype)
    e = None if expression is None else torch.tensor(np.asarray(expression, float)[None], dtype=model.dtype)
    with torch.no_grad():
        out = model.forward(betas=b, expression=e)
    return out.vertices[0].double().numpy(), out.rest_joints[0].double().numpy()


def _bone_lengths(joints: np.ndarray) -> np.ndarray:
    lengths = np.full(NUM_JOINTS, 0.05)
    for j in range(NUM_JOINTS):
        children = [c for c in range(NUM_JOINTS) if c != j and _parent(c) == j]
        if children:
            lengths[j] = max(MIN_BONE_LENGTH, float(np.linalg.norm(joints[children[0]] - joints[j])))
    return lengths


def _parent(j: int) -> int:
    from ..core.body_model import PARENTS

    return PARENTS[j]


def build_avatar(model: BodyModel, params: dict, name: str = "ResiHMR", collection=None):
    """Create armature + mesh objects for the given SMPL-X parameters; returns (armature_obj, mesh_obj)."""
    collection = collection or bpy.context.scene.collection
    betas = np.asarray(params.get("betas", np.zeros(model.num_betas)), float)
    verts, joints = _rest_shape(model, betas, None)
    joints_bl = body_to_blender(joints)

    # -- armature: every bone points +z with roll 0, so its rest frame is the SMPL-X frame (see frames.py)
    arm_data = bpy.data.armatures.new(f"{name}_rig")
    arm_obj = bpy.data.objects.new(f"{name}_rig", arm_data)
    collection.objects.link(arm_obj)
    lengths = _bone_lengths(joints)
    with bpy.context.temp_override(active_object=arm_obj, object=arm_obj, selected_objects=[arm_obj]):
        view_layer = bpy.context.view_layer
        previous_active = view_layer.objects.active
        view_layer.objects.active = arm_obj
        bpy.ops.object.mode_set(mode="EDIT")
        bones = []
        for j, joint_name in enumerate(JOINT_NAMES):
            bone = arm_data.edit_bones.new(joint_name)
            bone.head = Vector(joints_bl[j])
            bone.tail = Vector(joints_bl[j] + np.array([0.0, 0.0, lengths[j]]))
            bone.roll = 0.0
            bone.use_deform = True
            if _parent(j) >= 0:
                bone.parent = bones[_parent(j)]
            bones.append(bone)
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous_active

    # -- mesh: the template as Basis, one shape key per shape coefficient, values set explicitly
    mesh = bpy.data.meshes.new(f"{name}_body")
    template = body_to_blender(model.v_template.double().numpy())
    mesh.vertices.add(len(template))
    mesh.vertices.foreach_set("co", template.astype(np.float32).ravel())
    faces = np.asarray(model.faces)
    mesh.loops.add(faces.size)
    mesh.polygons.add(len(faces))
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.foreach_set("loop_start", (np.arange(len(faces)) * 3).astype(np.int32))
    mesh.update()
    mesh.validate()
    _add_uv_layer(mesh, model)
    mesh_obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(mesh_obj)
    basis = mesh_obj.shape_key_add(name="Basis", from_mix=False)
    basis.value = 0.0
    shapedirs = model.shapedirs.double().numpy()
    for k in range(model.num_betas):
        key = mesh_obj.shape_key_add(name=f"beta_{k:02d}", from_mix=False)
        key.slider_min, key.slider_max = -10.0, 10.0
        key.data.foreach_set("co", (template + body_to_blender(shapedirs[:, :, k])).astype(np.float32).ravel())
        key.value = float(betas[k]) if k < len(betas) else 0.0
    if model.posedirs is not None:
        _bake_pose_correctives(model, mesh_obj, template, params)

    # -- skinning: one vertex group per joint, an Armature modifier, parented to the rig
    weights = model.weights.double().numpy()
    for j, joint_name in enumerate(JOINT_NAMES):
        group = mesh_obj.vertex_groups.new(name=joint_name)
        for w, idx in _grouped(weights[:, j]):
            group.add(idx, w, "REPLACE")
    modifier = mesh_obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = arm_obj
    mesh_obj.parent = arm_obj

    apply_pose(arm_obj, params)
    for obj in (arm_obj, mesh_obj):
        obj[AVATAR_TAG] = 1
    mesh_obj["resihmr_model_sha256"] = model.sha256 or ""
    mesh_obj["resihmr_params"] = json.dumps({k: np.asarray(v).tolist() for k, v in params.items()})
    mesh_obj["resihmr_cut"] = "[]"
    keep_uncut(mesh_obj)
    return arm_obj, mesh_obj


def _add_uv_layer(mesh, model: BodyModel) -> None:
    """The model's per-corner texture coordinates as the mesh's active UV layer (the exporters write it: GLB
    TEXCOORD_0, FBX UV set). A model without `vt`/`ft` gives a mesh without UVs."""
    corner_uvs = model.corner_uvs()
    if corner_uvs is None:
        return
    if len(mesh.loops) != corner_uvs.shape[0] * 3:  # validate() dropped a broken face: corners no longer line up
        raise ValueError(f"{mesh.name}: {len(mesh.loops)} face corners but the model has UVs for "
                         f"{corner_uvs.shape[0] * 3}")
    layer = mesh.uv_layers.new(name=UV_LAYER)
    layer.uv.foreach_set("vector", corner_uvs.astype(np.float32).ravel())
    mesh.uv_layers.active = layer


def keep_uncut(mesh_obj):
    """Store a copy of the mesh (shape keys, vertex groups and all) as the object's uncut mesh.

    An ID pointer, not a name, so renaming either survives; it is saved in the .blend and restored by undo with
    the object. No fake user: the pointer is the copy's one user, so when the avatar object is deleted the copy
    becomes orphan data that Blender drops on the next save/reload or purge (remove_avatar drops it at once).
    """
    uncut = mesh_obj.data.copy()
    uncut.name = f"{mesh_obj.data.name}_uncut"
    mesh_obj[UNCUT_PROP] = uncut
    return uncut


def remove_avatar(obj) -> None:
    """Delete an avatar: its armature, every mesh object on it (given the mesh object or the armature), and
    their datablocks (meshes, shape keys, stored uncut meshes, armature) when nothing else uses them.
    The shared ResiHMR materials stay (other avatars use them)."""
    arm = obj if obj.type == "ARMATURE" else obj.parent
    if arm is not None and (arm.type != "ARMATURE" or not arm.get(AVATAR_TAG)):
        arm = None
    # the avatar's meshes and the prosthesis devices fitted to it (mesh/prosthesis.py tags them)
    objects = [obj] if arm is None else [arm, *[c for c in arm.children
                                               if c.get(AVATAR_TAG) or c.get("resihmr_prosthesis")]]
    if obj not in objects:
        objects.append(obj)
    datablocks = []
    for o in objects:
        for data in (o.data, o.get(UNCUT_PROP)):
            if isinstance(data, bpy.types.ID) and data not in datablocks:
                datablocks.append(data)
    for o in objects:
        bpy.data.objects.remove(o)
    for data in datablocks:
        if data.users == 0:  # a linked duplicate elsewhere keeps its data
            bpy.data.batch_remove([data])


def _grouped(column: np.ndarray):
    """(weight, [vertex indices]) for the non-zero weights, grouped by value so group.add is called rarely."""
    nonzero = np.nonzero(column > 0)[0]
    if len(nonzero) == 0:
        return
    values = column[nonzero].astype(np.float32)
    order = np.argsort(values)
    values, nonzero = values[order], nonzero[order]
    splits = np.nonzero(np.diff(values))[0] + 1
    for part_values, part_idx in zip(np.split(values, splits), np.split(nonzero, splits)):
        yield float(part_values[0]), part_idx.tolist()


def _bake_pose_correctives(model: BodyModel, mesh_obj, template: np.ndarray, params: dict) -> None:
    full = model.full_pose(1, torch.tensor(np.asarray(params.get("global_orient", np.zeros(3)))[None]),
                           torch.tensor(np.asarray(params.get("body_pose", np.zeros(63)))[None]))
    rot = axis_angle_to_matrix(full)
    feature = (rot[:, 1:] - torch.eye(3, dtype=rot.dtype)).reshape(1, -1)
    offsets = (feature @ model.posedirs).reshape(-1, 3).double().numpy()
    key = mesh_obj.shape_key_add(name="pose_correctives_fitted", from_mix=False)
    key.data.foreach_set("co", (template + body_to_blender(offsets)).astype(np.float32).ravel())
    key.value = 1.0


def apply_pose(arm_obj, params: dict) -> None:
    """Put SMPL-X parameters on the pose bones: local rotations as they are (bone frames = SMPL-X frame), the
    root's camera-frame orientation and translation turned into the Blender world (frames.py)."""
    pose = np.zeros((NUM_JOINTS, 3))
    pose[0] = np.asarray(params.get("global_orient", np.zeros(3)), float)
    pose[1:22] = np.asarray(params.get("body_pose", np.zeros(63)), float).reshape(21, 3)
    rotations = axis_angle_to_matrix(torch.tensor(pose)).numpy()
    rotations[0] = ROOT_FROM_CAMERA @ rotations[0]
    for j, joint_name in enumerate(JOINT_NAMES):
        bone = arm_obj.pose.bones[joint_name]
        bone.rotation_mode = "QUATERNION"
        bone.rotation_quaternion = Matrix(rotations[j].tolist()).to_quaternion()
        bone.location = (0.0, 0.0, 0.0)
    # root translation, in the pelvis bone's local frame: R_x(pi)(J0 + t) - J0
    rest_pelvis = np.asarray(arm_obj.data.bones[JOINT_NAMES[0]].head_local)
    j0 = blender_to_body(rest_pelvis)
    transl = np.asarray(params.get("transl", np.zeros(3)), float)
    arm_obj.pose.bones[JOINT_NAMES[0]].location = Vector(ROOT_FROM_CAMERA @ (j0 + transl) - j0)
    arm_obj.data.pose_position = "POSE"


def rest_pose_quaternion() -> Quaternion:
    return Quaternion((1.0, 0.0, 0.0, 0.0))


def evaluated_vertices(obj) -> np.ndarray:
    """World-space vertex positions of the object after modifiers (what the viewport shows)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        coords = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", coords)
        coords = coords.reshape(-1, 3).astype(np.float64)
        world = np.array(evaluated.matrix_world)
        return coords @ world[:3, :3].T + world[:3, 3]
    finally:
        evaluated.to_mesh_clear()
