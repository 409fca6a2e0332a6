"""Cut a residual limb on the live avatar and seal it, in one bmesh edit (paper §3.4, DESIGN §4.3).

Everything is computed first with numpy (core/stump.py) on the object's rest shape (shape keys mixed, no
armature); only when that succeeds is the mesh edited, so a failure leaves the object exactly as it was. The
rig survives: every vertex group and shape key is kept, new vertices get weights and shape-key offsets
interpolated from the boundary ring, no vertex stays weighted to a removed joint, and the skeleton is kept
whole unless `delete_distal_bones` is asked for. The residual segment is marked three ways: a float point
attribute `residual_mask`, a vertex group of the same name, and a red material on its faces.
"""
from __future__ import annotations

import json

import bmesh
import bpy
import numpy as np

from ..core.body_model import JOINT_INDEX, JOINT_NAMES
from ..core.colours import RESIDUAL_RGBA, SKIN_RGBA
from ..core.residuals import ResidualKind, residual_by_name
from ..core.stump import SealedCut, StumpError, cut_limb
from .build import AVATAR_TAG
from .frames import blender_to_body, body_to_blender

MASK_NAME = "residual_mask"
RED_MATERIAL = "ResiHMR residual limb"
SKIN_MATERIAL = "ResiHMR skin"


class CutError(ValueError):
    """The cut was refused; the object is unchanged."""


def cut_state(mesh_obj) -> list[dict]:
    return json.loads(mesh_obj.get("resihmr_cut", "[]"))


def _armature_of(mesh_obj):
    for modifier in mesh_obj.modifiers:
        if modifier.type == "ARMATURE" and modifier.object is not None:
            return modifier.object
    raise CutError(f"{mesh_obj.name}: has no Armature modifier with a rig")


def check_cuttable(mesh_obj, kind: ResidualKind, lam: float) -> None:
    if mesh_obj is None or mesh_obj.type != "MESH" or not mesh_obj.get(AVATAR_TAG):
        raise CutError(f"{getattr(mesh_obj, 'name', None)}: not an avatar built by ResiHMR")
    if not 0.0 <= lam <= 1.0:
        raise CutError(f"{mesh_obj.name}: λ = {lam} is outside [0, 1]")
    for done in cut_state(mesh_obj):
        if residual_by_name(done["kind"]).limb == kind.limb:
            raise CutError(f"{mesh_obj.name}: the {kind.limb.replace('_', ' ')} is already cut ({done['kind']}, "
                           f"λ = {done['lambda']:.3f}); undo or rebuild the avatar first")
    if any(len(p.vertices) != 3 for p in mesh_obj.data.polygons):
        raise CutError(f"{mesh_obj.name}: the mesh must be all triangles")


def _rest_positions(mesh) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rest shape with the shape keys mixed (Blender coordinates), and each key's offset from the Basis."""
    n = len(mesh.vertices)
    coords = np.empty(n * 3, np.float32)
    mesh.vertices.foreach_get("co", coords)
    basis = coords.reshape(-1, 3).astype(np.float64)
    offsets, mixed = {}, basis.copy()
    if mesh.shape_keys is not None:
        ref = mesh.shape_keys.reference_key
        ref_co = np.empty(n * 3, np.float32)
        ref.data.foreach_get("co", ref_co)
        basis = ref_co.reshape(-1, 3).astype(np.float64)
        mixed = basis.copy()
        for key in mesh.shape_keys.key_blocks:
            if key == ref:
                continue
            key_co = np.empty(n * 3, np.float32)
            key.data.foreach_get("co", key_co)
            offsets[key.name] = key_co.reshape(-1, 3) - basis
            if not key.mute:
                mixed += key.value * offsets[key.name]
    return mixed, offsets


def _weights(mesh_obj, bm) -> np.ndarray:
    """(V, 55) skin weights read from the vertex groups named after the joints."""
    layer = bm.verts.layers.deform.active
    group_joint = {g.index: JOINT_INDEX[g.name] for g in mesh_obj.vertex_groups if g.name in JOINT_INDEX}
    weights = np.zeros((len(bm.verts), len(JOINT_NAMES)))
    if layer is None:
        return weights
    for v in bm.verts:
        for group, w in v[layer].items():
            if group in group_joint:
                weights[v.index, group_joint[group]] = w
    return weights


def _material_index(mesh, name: str, color: tuple) -> int:
    material = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    material.diffuse_color = color
    if not any(m == material for m in mesh.materials):
        mesh.materials.append(material)
    return list(mesh.materials).index(material)


def cut_residual(mesh_obj, kind_name: str, lam: float, delete_distal_bones: bool = False) -> SealedCut:
    """Cut and seal one residual limb on an avatar built by build_avatar. Raises CutError, leaving it as it was."""
    try:
        kind = residual_by_name(kind_name)
    except KeyError as exc:
        raise CutError(f"unknown residual kind {kind_name!r}") from exc
    check_cuttable(mesh_obj, kind, lam)
    arm_obj = _armature_of(mesh_obj)
    mesh = mesh_obj.data
    mixed, offsets = _rest_positions(mesh)
    verts_body = blender_to_body(mixed)
    bones = arm_obj.data.bones
    joints_body = {name: blender_to_body(np.array(bones[name].head_local)) for name in
                   (kind.anchor_joint, kind.upstream_joint)}
    faces = np.empty(len(mesh.polygons) * 3, np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    faces = faces.reshape(-1, 3).astype(np.int64)

    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        bm.verts.ensure_lookup_table()
        bm.faces.ensure_lookup_table()
        weights = _weights(mesh_obj, bm)
        if not weights.any():
            raise CutError(f"{mesh_obj.name}: no skin weights in vertex groups named after the SMPL-X joints")
        try:
            cut = cut_limb(verts_body, faces, weights, kind, joints_body[kind.anchor_joint],
                           joints_body[kind.upstream_joint], lam)
        except StumpError as exc:
            raise CutError(f"{mesh_obj.name}: {kind.name} at λ = {lam:.3f}: {exc}") from exc
        sealed, new_weights, distal = cut.sealed, cut.weights, cut.distal

        # -- all numbers are ready: now edit the mesh
        new_offsets = {name: sealed.interpolate(off) for name, off in offsets.items()}
        n_kept = int(sealed.keep.sum())
        new_mixed = body_to_blender(sealed.new_vertices)
        values = {k.name: (0.0 if k.mute else k.value) for k in (mesh.shape_keys.key_blocks if mesh.shape_keys
                                                                   else [])}
        new_basis = new_mixed - sum(values.get(name, 0.0) * off[n_kept:] for name, off in new_offsets.items())
        old_verts, old_faces = list(bm.verts), list(bm.faces)
        drop_faces = [old_faces[i] for i in np.nonzero(~sealed.face_keep)[0]]
        bmesh.ops.delete(bm, geom=drop_faces, context="FACES_ONLY")
        bmesh.ops.delete(bm, geom=[old_verts[i] for i in np.nonzero(~sealed.keep)[0]], context="VERTS")
        deform = bm.verts.layers.deform.verify()
        shape_layers = {layer.name: layer for layer in bm.verts.layers.shape.values()}
        lookup = [old_verts[i] for i in np.nonzero(sealed.keep)[0]]
        group_of = {JOINT_INDEX[g.name]: g.index for g in mesh_obj.vertex_groups if g.name in JOINT_INDEX}
        for k, co in enumerate(new_basis):
            vert = bm.verts.new(co)
            for name, layer in shape_layers.items():
                vert[layer] = co + new_offsets[name][n_kept + k] if name in new_offsets else co
            lookup.append(vert)
        for i, vert in enumerate(lookup):  # kept vertices lose any distal weight; new ones get theirs
            row = new_weights[i]
            dvert = vert[deform]
            for joint, group in group_of.items():
                if row[joint] > 0:
                    dvert[group] = float(row[joint])
                elif group in dvert:
                    del dvert[group]
        skin = _material_index(mesh, SKIN_MATERIAL, SKIN_RGBA) if not mesh.materials else 0
        face_order = [old_faces[i] for i in np.nonzero(sealed.face_keep)[0]]
        for face in sealed.faces[sealed.cap_face_start:]:
            new_face = bm.faces.new([lookup[i] for i in face])
            new_face.material_index = skin
            new_face.smooth = True
            face_order.append(new_face)
        # bmesh reuses freed slots, so new elements may sit anywhere: put them in SealedCut's order
        for i, vert in enumerate(lookup):
            vert.index = i
        bm.verts.sort(key=lambda v: v.index)
        for i, face in enumerate(face_order):
            face.index = i
        bm.faces.sort(key=lambda f: f.index)
        bm.normal_update()
        bm.to_mesh(mesh)
    finally:
        bm.free()
    mesh.update()
    _mark_residual(mesh_obj, cut.residual)
    if delete_distal_bones:
        _delete_bones(arm_obj, [JOINT_NAMES[j] for j in distal])
    state = cut_state(mesh_obj) + [{"kind": kind.name, "lambda": float(lam)}]
    mesh_obj["resihmr_cut"] = json.dumps(state)
    return sealed


def _mark_residual(mesh_obj, mark: np.ndarray) -> None:
    """Residual segment (plus its cap) as attribute, vertex group and red faces; earlier marks are kept."""
    mesh = mesh_obj.data
    n = len(mesh.vertices)
    previous = np.zeros(n, np.float32)
    if MASK_NAME in mesh.attributes:
        mesh.attributes[MASK_NAME].data.foreach_get("value", previous)
        mesh.attributes.remove(mesh.attributes[MASK_NAME])
    values = np.maximum(previous, mark.astype(np.float32))
    attribute = mesh.attributes.new(MASK_NAME, "FLOAT", "POINT")
    attribute.data.foreach_set("value", values)
    group = mesh_obj.vertex_groups.get(MASK_NAME) or mesh_obj.vertex_groups.new(name=MASK_NAME)
    group.add(np.nonzero(values > 0.5)[0].tolist(), 1.0, "REPLACE")
    red = _material_index(mesh, RED_MATERIAL, RESIDUAL_RGBA)
    faces = np.empty(len(mesh.polygons) * 3, np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    in_mask = (values > 0.5)[faces.reshape(-1, 3)].all(axis=1)
    index = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("material_index", index)
    index[in_mask] = red
    mesh.polygons.foreach_set("material_index", index)
    mesh.update()


def _delete_bones(arm_obj, names: list[str]) -> None:
    view_layer = bpy.context.view_layer
    previous = view_layer.objects.active
    view_layer.objects.active = arm_obj
    with bpy.context.temp_override(active_object=arm_obj, object=arm_obj):
        bpy.ops.object.mode_set(mode="EDIT")
        for name in names:
            bone = arm_obj.data.edit_bones.get(name)
            if bone is not None:
                arm_obj.data.edit_bones.remove(bone)
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = previous
