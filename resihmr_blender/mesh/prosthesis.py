"""Prostheses on the live avatar: one mesh object per residual limb, skinned to the avatar's armature.

The geometry comes from core/prosthesis.py on the avatar's rest shape (the cut mesh as cut.py plans it, the
shape keys mixed as on the live mesh, the uncut mesh for the intact foot or hand, the rest joints from the
armature's bones, which keep their distal bones). The device object is parented to the armature with an Armature
modifier and one vertex group per bone it follows (the socket: the skin weights of the stump it covers; the other
parts rigidly on one bone each), so every motion moves it. Each part has its own material (socket colour per
device). Off means no object: exports then leave it out with no special case.
"""
from __future__ import annotations

import json

import bpy
import numpy as np

from ..core.body_model import JOINT_NAMES
from ..core.prosthesis import Prosthesis, ProsthesisError, default_terminal, fit_prosthesis
from ..core.residuals import residual_by_name
from ..selection import DEVICE_TAG
from .build import _grouped
from .frames import blender_to_body, body_to_blender

TERMINAL_PROP = "resihmr_terminal"
COVER_PROP = "resihmr_cover"
DIMENSIONS_PROP = "resihmr_dimensions"
DEFAULT_SOCKET_RGBA = (0.12, 0.22, 0.45, 1.0)  # carbon-fibre blue
PART_RGBA = {"pylon": (0.62, 0.63, 0.66, 1.0), "lower_pylon": (0.62, 0.63, 0.66, 1.0),
             "knee": (0.25, 0.25, 0.27, 1.0), "elbow": (0.25, 0.25, 0.27, 1.0), "hook": (0.70, 0.71, 0.74, 1.0),
             "foot": (0.78, 0.66, 0.56, 1.0), "hand": (0.78, 0.66, 0.56, 1.0),
             "cover": (0.78, 0.66, 0.56, 1.0), "lower_cover": (0.78, 0.66, 0.56, 1.0)}
METALLIC = {"pylon", "lower_pylon", "hook"}


def _armature(mesh_obj):
    from .cut import _armature_of

    return _armature_of(mesh_obj)


def devices(mesh_obj) -> list:
    """The avatar's device objects (children of its armature tagged with a residual kind)."""
    arm = _armature(mesh_obj)
    return [c for c in arm.children if c.get(DEVICE_TAG)]


def device_for(mesh_obj, kind: str):
    return next((d for d in devices(mesh_obj) if d.get(DEVICE_TAG) == kind), None)


def _rest_data(mesh_obj, kind: str):
    """(cut rest vertices, faces, weights, rest joints, uncut rest vertices, uncut weights), body frame."""
    # cut.py's plan is the live mesh as arrays, memoised per cut list: the same numbers the cut was made from
    from .cut import _check_cuts, _key_values, _plan, _uncut_arrays, _uncut_mesh, _uncut_plan, cut_state

    cuts = [(d["kind"], d["lambda"]) for d in cut_state(mesh_obj)]
    if kind not in [k for k, _ in cuts]:
        raise ProsthesisError(f"{mesh_obj.name}: {kind} is not cut on this avatar; a prosthesis needs its stump")
    uncut_mesh, made_now = _uncut_mesh(mesh_obj)
    if made_now:  # an avatar without a stored uncut mesh cannot have cuts; nothing to fit
        bpy.data.meshes.remove(uncut_mesh)
        raise ProsthesisError(f"{mesh_obj.name}: no stored uncut mesh")
    uncut = _uncut_arrays(uncut_mesh)
    plan = _plan(mesh_obj, uncut, _check_cuts(mesh_obj, cuts))
    intact = _uncut_plan(uncut, _key_values(mesh_obj))
    bones = _armature(mesh_obj).data.bones
    missing = [n for n in JOINT_NAMES if bones.get(n) is None]
    if missing:
        raise ProsthesisError(f"{mesh_obj.name}: the rig lacks bone(s) {', '.join(missing[:3])} (deleted distal "
                              "bones?): a prosthesis needs the whole skeleton")
    joints = blender_to_body(np.array([bones[n].head_local for n in JOINT_NAMES], dtype=np.float64))
    return plan.rest_body, plan.faces, plan.weights, joints, intact.rest_body, uncut.weights


# socket finishes: (metallic, roughness), what glTF's metallicRoughness carries
FINISHES = {"matte": (0.0, 0.75), "satin": (0.0, 0.4), "gloss": (0.0, 0.12), "carbon": (0.35, 0.25)}
FINISH_PROP = "resihmr_finish"


def _material(name: str, rgba, metallic: bool = False, finish: str | None = None):
    material = bpy.data.materials.get(name)
    if material is None:
        material = bpy.data.materials.new(name)  # Blender 5 gives it a node tree with a Principled BSDF
    metal, rough = FINISHES[finish] if finish else ((0.9, 0.3) if metallic else (0.0, 0.5))
    material.diffuse_color = rgba
    bsdf = next((n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None) \
        if material.node_tree is not None else None
    if bsdf is not None:  # what glTF (baseColorFactor, metallic) and FBX (diffuse) carry
        bsdf.inputs["Base Color"].default_value = rgba
        bsdf.inputs["Metallic"].default_value = metal
        bsdf.inputs["Roughness"].default_value = rough
    material.metallic, material.roughness = metal, rough
    return material


def _write_mesh(mesh, device: Prosthesis) -> None:
    verts, faces, _, part_index = device.merged()
    mesh.clear_geometry()
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", body_to_blender(verts).astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.polygons.add(len(faces))
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.foreach_set("loop_start", (np.arange(len(faces)) * 3).astype(np.int32))
    mesh.polygons.foreach_set("material_index", part_index.astype(np.int32))
    mesh.update()


def socket_material_name(obj_name: str) -> str:
    return f"{obj_name} socket"


def add_prosthesis(mesh_obj, kind: str, terminal: str | None = None, socket_rgba=None, cover: bool | None = None,
                   finish: str | None = None):
    """Fit the prosthesis of `kind` (a cut limb of the avatar) and put it on the rig; an existing device of that
    kind is refitted in place (its object, socket colour, terminal device, cover and name kept unless given).
    cover: a cosmetic cover shaped like the other limb over the pylon; finish: the socket's (FINISHES). Returns the
    device object. Raises ProsthesisError leaving the scene as it was."""
    kind = residual_by_name(kind).name
    existing = device_for(mesh_obj, kind)
    if terminal is None:
        terminal = existing.get(TERMINAL_PROP) if existing is not None else default_terminal(kind)
    if cover is None:
        cover = bool(existing.get(COVER_PROP, False)) if existing is not None else False
    if finish is None:
        finish = existing.get(FINISH_PROP, "satin") if existing is not None else "satin"
    if finish not in FINISHES:
        raise ProsthesisError(f"{kind}: socket finish {finish!r} unknown (use {', '.join(FINISHES)})")
    data = _rest_data(mesh_obj, kind)
    device = fit_prosthesis(kind, *data, terminal=terminal, with_cover=cover)
    arm = _armature(mesh_obj)
    if existing is None:
        mesh = bpy.data.meshes.new(f"{mesh_obj.name} prosthesis {kind}")
        obj = bpy.data.objects.new(mesh.name, mesh)
        for collection in mesh_obj.users_collection:
            collection.objects.link(obj)
        obj.parent = arm
        obj.modifiers.new("Armature", "ARMATURE").object = arm
        obj[DEVICE_TAG] = kind
    else:
        obj = existing
    if socket_rgba is None:
        old = bpy.data.materials.get(socket_material_name(obj.name))
        socket_rgba = tuple(old.diffuse_color) if old is not None else DEFAULT_SOCKET_RGBA
    obj[TERMINAL_PROP] = terminal
    obj[COVER_PROP] = cover
    obj[FINISH_PROP] = finish
    obj[DIMENSIONS_PROP] = json.dumps(device.to_json())
    obj.data.materials.clear()  # before the faces get their material indices (clearing resets them)
    for part in device.parts:
        if part.name == "socket":
            obj.data.materials.append(_material(socket_material_name(obj.name), socket_rgba, finish=finish))
        else:
            obj.data.materials.append(_material(f"ResiHMR prosthesis {part.name}", PART_RGBA[part.name],
                                                part.name in METALLIC))
    _write_mesh(obj.data, device)
    _skin(obj, device)
    return obj


def _skin(obj, device: Prosthesis) -> None:
    obj.vertex_groups.clear()
    _, _, weights, _ = device.merged()
    for j in np.nonzero(weights.any(axis=0))[0].tolist():
        group = obj.vertex_groups.new(name=JOINT_NAMES[j])
        for w, idx in _grouped(weights[:, j]):
            group.add(idx, w, "REPLACE")


def set_socket_colour(device_obj, rgba) -> None:
    material = bpy.data.materials.get(socket_material_name(device_obj.name))
    if material is not None:
        _material(material.name, tuple(rgba), finish=device_obj.get(FINISH_PROP, "satin"))


def set_socket_finish(device_obj, finish: str) -> None:
    if finish not in FINISHES:
        raise ProsthesisError(f"{device_obj.name}: socket finish {finish!r} unknown (use {', '.join(FINISHES)})")
    device_obj[FINISH_PROP] = finish
    material = bpy.data.materials.get(socket_material_name(device_obj.name))
    if material is not None:
        _material(material.name, tuple(material.diffuse_color), finish=finish)


def remove_prosthesis(mesh_obj, kind: str) -> bool:
    """Take the device of `kind` off (its object, mesh and socket material); False when there was none."""
    obj = device_for(mesh_obj, residual_by_name(kind).name)
    if obj is None:
        return False
    mesh, socket = obj.data, bpy.data.materials.get(socket_material_name(obj.name))
    bpy.data.objects.remove(obj)
    if mesh.users == 0:
        bpy.data.meshes.remove(mesh)
    if socket is not None and socket.users == 0:
        bpy.data.materials.remove(socket)
    return True


def refit_prostheses(mesh_obj) -> list:
    """Refit every device after the avatar's cuts changed (cut again, limbs restored); a device whose limb is no
    longer cut, or no longer takes one, is taken off. Returns the devices left."""
    from .cut import cut_state

    cut = {d["kind"] for d in cut_state(mesh_obj)}
    for obj in devices(mesh_obj):
        kind = obj[DEVICE_TAG]
        if kind not in cut or refit_limb(mesh_obj, kind):
            set_device(mesh_obj, kind, False)
    return devices(mesh_obj)


def dimensions(mesh_obj) -> dict[str, dict]:
    """Each device's dimensions (core.prosthesis.Prosthesis.to_json), by residual kind."""
    out = {}
    for obj in devices(mesh_obj):
        out[obj[DEVICE_TAG]] = json.loads(obj.get(DIMENSIONS_PROP, "{}"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The sidebar's state: each limb's prosthesis settings on the avatar (properties.RESIHMR_PG_Limb) kept in step


def _limb(mesh_obj, kind: str):
    state = getattr(mesh_obj, "resihmr", None)
    return next((limb for limb in state.limbs if limb.kind == kind), None) if state is not None else None


def set_device(mesh_obj, kind: str, on: bool, terminal: str | None = None, cover: bool | None = None):
    """Put the limb's prosthesis on (fitted now, with the limb's terminal device, cover and socket colour) or take
    it off; the limb's settings follow. Returns the device object or None."""
    kind = residual_by_name(kind).name
    limb = _limb(mesh_obj, kind)
    if not on:
        remove_prosthesis(mesh_obj, kind)
        if limb is not None:
            limb.prosthesis = False
        return None
    arm_terminal = terminal or (limb.terminal if limb is not None else None)
    if arm_terminal is not None and limb is not None:
        limb.terminal = arm_terminal
    if cover is None and limb is not None:
        cover = limb.cover
    is_arm = residual_by_name(kind).limb.endswith("arm")
    rgba = tuple(limb.socket_colour) if limb is not None else None
    device = add_prosthesis(mesh_obj, kind, terminal=arm_terminal if is_arm else None, socket_rgba=rgba,
                            cover=cover, finish=limb.socket_finish if limb is not None else None)
    if limb is not None:
        limb.prosthesis, limb.cover = True, bool(device.get(COVER_PROP))
    return device


def refit_limb(mesh_obj, kind: str) -> str:
    """After the limb's cut changed: refit its device if it has one. Returns "" or why the device came off."""
    if device_for(mesh_obj, kind) is None:
        return ""
    try:
        add_prosthesis(mesh_obj, kind)
        return ""
    except ProsthesisError as exc:
        set_device(mesh_obj, kind, False)
        return f"{kind}: prosthesis taken off: {exc}"
