"""Cut residual limbs on the live avatar and seal them (paper §3.4, DESIGN §4.3): a live λ.

`recut(mesh_obj, cuts)` makes the avatar's cuts exactly `cuts`, always starting again from the avatar's stored
uncut mesh (build.py keeps it): dragging a λ slider re-cuts, it never stacks cuts, and `recut(obj, [])` gives
the uncut body back. Everything is computed first with numpy (core/stump.py) on the rest shape (the shape keys
mixed as they are on the live mesh, no armature); only when that succeeds is the mesh rewritten, so a failure
leaves the object exactly as it was. The uncut mesh's arrays (positions, shape-key offsets, skin weights) are
read once and cached, so a drag costs the numpy cut, one bmesh rebuild and the measurements.

The rig survives: every vertex group and shape key is kept, new vertices get weights and shape-key offsets
interpolated from the boundary ring, no vertex stays weighted to a removed joint, and the skeleton is kept
whole unless `cut_residual(..., delete_distal_bones=True)` is asked for. The residual segments are marked
three ways, all limbs together: one float point attribute `residual_mask`, one vertex group of the same name,
and a red material on their faces. Texture coordinates (the active UV layer, when the body model has them):
kept faces keep theirs exactly; each cap gets an island of its own, its limb's quadrant of the UV tile right of
the body's (u 1..2 for SMPL-X and the embedded body), see core/stump.cap_island.

What recut does not carry over from the live mesh (it starts from the stored one): vertex groups or shape keys
added after the build (recut refuses rather than drop them), other attributes added since, face materials
painted by hand. Bones removed by `delete_distal_bones` are not brought back.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import bmesh
import bpy
import numpy as np

from ..core.body_model import JOINT_NAMES
from ..core.colours import RESIDUAL_RGBA, SKIN_RGBA
from ..core.measure import LimbMeasurements, measure_limb
from ..core.residuals import ResidualKind, limb_conflict, limb_label, residual_by_name
from ..core.stump import (
    LimbCut,
    SealedCut,
    StumpError,
    cap_uv_tile,
    carry_corner_uvs,
    cut_limb,
    cut_plane,
    removed_vertices,
    residual_segment,
)
from .build import AVATAR_TAG, UNCUT_PROP
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


def _check_avatar(mesh_obj) -> None:
    if mesh_obj is None or getattr(mesh_obj, "type", None) != "MESH" or not mesh_obj.get(AVATAR_TAG):
        raise CutError(f"{getattr(mesh_obj, 'name', None)}: not an avatar built by ResiHMR")
    if mesh_obj.mode != "OBJECT":
        # edit/sculpt/paint modes hold their own copy of the mesh and would overwrite the cut on leaving
        raise CutError(f"{mesh_obj.name}: switch to Object Mode to cut (it is in {mesh_obj.mode.title()} Mode)")


def _check_cuts(mesh_obj, cuts) -> list[tuple[ResidualKind, float]]:
    """Kinds known, λ in [0, 1], one kind per limb; returns (kind, λ) with the kinds resolved."""
    out = []
    for name, lam in cuts:
        try:
            kind = residual_by_name(name)
        except KeyError as exc:
            raise CutError(f"unknown residual kind {name!r}") from exc
        try:
            lam = float(lam)
        except (TypeError, ValueError) as exc:
            raise CutError(f"{mesh_obj.name}: λ = {lam!r} for {kind.name} is not a number") from exc
        if not 0.0 <= lam <= 1.0:  # also refuses NaN
            raise CutError(f"{mesh_obj.name}: λ = {lam} is outside [0, 1]")
        out.append((kind, lam))
    conflict = limb_conflict([k.name for k, _ in out])
    if conflict and conflict[0] == conflict[1]:
        raise CutError(f"{mesh_obj.name}: {conflict[0]} is listed twice")
    if conflict:
        raise CutError(f"{mesh_obj.name}: the {limb_label(conflict[0])} takes one residual kind, not both "
                       f"{conflict[0]} and {conflict[1]}")
    return out


def check_cuttable(mesh_obj, kind: ResidualKind, lam: float) -> None:
    """Raise CutError unless `kind` at `lam` can be added to the avatar's present cuts."""
    _check_avatar(mesh_obj)
    _check_cuts(mesh_obj, [(d["kind"], d["lambda"]) for d in cut_state(mesh_obj)] + [(kind.name, lam)])


# ---------------------------------------------------------------------------------------------------------------
# The stored uncut mesh as numpy, read once per datablock


@dataclass
class _Uncut:
    fingerprint: tuple
    basis: np.ndarray  # (V, 3) reference key (Blender coordinates)
    key_names: list[str]  # every key block, the reference first
    offsets: np.ndarray  # (K, V, 3) each non-reference key minus the reference
    faces: np.ndarray  # (F, 3) int64
    material_index: np.ndarray  # (F,) int32
    weights: np.ndarray  # (V, 55), columns in JOINT_NAMES order (build_avatar makes the groups in that order)
    corner_uvs: np.ndarray | None  # (F, 3, 2) the active UV layer, None without one
    uv_tile: int  # the UV tile the caps' islands go to (right of the body's UVs)


_CACHE: OrderedDict[int, _Uncut] = OrderedDict()
_CACHE_SIZE = 4  # avatars whose arrays stay in memory (~10 MB each)


def _fingerprint(mesh) -> tuple:
    """Cheap identity of a mesh's content: pointers can be reused after undo or reload, positions rarely."""
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    keys = tuple(k.name for k in mesh.shape_keys.key_blocks) if mesh.shape_keys else ()
    return (mesh.session_uid, len(mesh.vertices), len(mesh.polygons), len(mesh.loops), keys, hash(co.tobytes()))


def _key_points(key):
    """ShapeKey.points (Blender 4.1+) has a bulk foreach path: 0.01 ms against 1.3 ms for .data here."""
    return getattr(key, "points", key.data)


def _uncut_arrays(mesh) -> _Uncut:
    pointer, fingerprint = mesh.as_pointer(), _fingerprint(mesh)
    cached = _CACHE.get(pointer)
    if cached is not None and cached.fingerprint == fingerprint:
        _CACHE.move_to_end(pointer)
        return cached
    n = len(mesh.vertices)
    if len(mesh.loops) != 3 * len(mesh.polygons):
        raise CutError(f"{mesh.name}: the stored uncut mesh must be all triangles")
    co = np.empty(n * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    basis = co.reshape(-1, 3).astype(np.float64)
    key_names, offsets = [], []
    if mesh.shape_keys is not None:
        ref = mesh.shape_keys.reference_key
        _key_points(ref).foreach_get("co", co)
        basis = co.reshape(-1, 3).astype(np.float64)
        key_names = [ref.name]
        for key in mesh.shape_keys.key_blocks:
            if key != ref:
                _key_points(key).foreach_get("co", co)
                key_names.append(key.name)
                offsets.append(co.reshape(-1, 3) - basis)
    faces = np.empty(len(mesh.loops), np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    material_index = np.zeros(len(mesh.polygons), np.int32)
    if "material_index" in mesh.attributes:  # absent when every face uses slot 0
        mesh.attributes["material_index"].data.foreach_get("value", material_index)
    corner_uvs, uv_tile = None, 1
    if mesh.uv_layers.active is not None:
        uv = np.empty(len(mesh.loops) * 2, np.float32)
        mesh.uv_layers.active.uv.foreach_get("vector", uv)
        corner_uvs = uv.reshape(-1, 3, 2).astype(np.float64)
        uv_tile = cap_uv_tile(corner_uvs)
    weights = np.zeros((n, len(JOINT_NAMES)))
    for v in mesh.vertices:  # once per avatar: Python has no bulk access to vertex-group weights
        for g in v.groups:
            if g.group < len(JOINT_NAMES):
                weights[v.index, g.group] = g.weight
    data = _Uncut(fingerprint, basis, key_names, np.array(offsets).reshape(-1, n, 3),
                  faces.reshape(-1, 3).astype(np.int64), material_index, weights, corner_uvs, uv_tile)
    _CACHE[pointer] = data
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return data


def _uncut_mesh(mesh_obj):
    """(stored uncut mesh, made_now). An avatar from before the uncut copy existed gets one only while uncut."""
    stored = mesh_obj.get(UNCUT_PROP)
    if isinstance(stored, bpy.types.Mesh):
        return stored, False
    if cut_state(mesh_obj):
        raise CutError(f"{mesh_obj.name}: this avatar keeps no uncut mesh (built by an older version); "
                       "rebuild it to change its cuts")
    return mesh_obj.data.copy(), True


def _check_rig_matches(mesh_obj, uncut: _Uncut) -> None:
    """Recut rewrites the live mesh from the stored one: refuse when that would drop something added since."""
    groups = [g.name for g in mesh_obj.vertex_groups]
    if groups[:len(JOINT_NAMES)] != list(JOINT_NAMES) or any(g != MASK_NAME for g in groups[len(JOINT_NAMES):]):
        extra = sorted(set(groups) - set(JOINT_NAMES) - {MASK_NAME})
        what = f"vertex groups added after the build ({', '.join(extra)})" if extra else \
            "vertex groups removed or reordered since the build"
        raise CutError(f"{mesh_obj.name}: {what}; re-cutting starts from the built mesh and would lose them")
    keys = mesh_obj.data.shape_keys
    live_keys = [k.name for k in keys.key_blocks] if keys else []
    if live_keys != uncut.key_names:
        raise CutError(f"{mesh_obj.name}: its shape keys changed since the build ({', '.join(live_keys) or 'none'}"
                       f" instead of {', '.join(uncut.key_names) or 'none'}); re-cutting would lose them")


# ---------------------------------------------------------------------------------------------------------------
# Plan: every cut in numpy, nothing in Blender touched


@dataclass
class _Plan:
    """The mesh after some cuts, as arrays; vertices and faces that came from the uncut mesh first, in its
    order, then the caps. Never modified in place once made (prefixes are memoised)."""

    cuts: tuple[tuple[ResidualKind, float], ...]
    limb_cuts: tuple[LimbCut, ...]
    rest_body: np.ndarray  # (N, 3) mixed rest shape, body frame
    carry: np.ndarray  # (N, 3 + 3K) reference key and every key's offset, Blender frame
    faces: np.ndarray  # (F', 3)
    weights: np.ndarray  # (N, 55)
    origin: np.ndarray  # (N,) uncut vertex of each vertex, -1 for new ones (they come last)
    face_origin: np.ndarray  # (F',) uncut face of each face, -1 for new ones (they come last)
    mask: np.ndarray  # (N,) bool, every residual segment and cap
    limb_masks: dict[str, np.ndarray]  # each limb's measured surface
    corner_uvs: np.ndarray | None  # (F', 3, 2) UVs of every face corner, None when the mesh has no UV layer
    uv_tile: int  # where the caps' UV islands go
    joints: dict[str, np.ndarray] = field(default_factory=dict)  # rest joints of the cut limbs, body frame

    @property
    def basis(self) -> np.ndarray:
        return self.carry[:, :3]

    @property
    def offsets(self) -> np.ndarray:  # (K, N, 3)
        return self.carry[:, 3:].reshape(len(self.carry), -1, 3).transpose(1, 0, 2)


def _rest_joints(arm_obj, cuts) -> dict[str, np.ndarray]:
    bones, joints = arm_obj.data.bones, {}
    for kind, _ in cuts:
        for name in (kind.anchor_joint, kind.upstream_joint):
            if bones.get(name) is None:
                raise CutError(f"{arm_obj.name}: bone {name!r} is missing (deleted with the distal bones?); "
                               "rebuild the avatar to change this cut")
            joints[name] = blender_to_body(np.array(bones[name].head_local, dtype=np.float64))
    return joints


def _key_values(mesh_obj) -> np.ndarray:
    """The live mesh's shape-key mix (the user may have moved the sliders since the build)."""
    keys = mesh_obj.data.shape_keys
    if keys is None:
        return np.zeros(0)
    return np.array([0.0 if k.mute else k.value for k in keys.key_blocks if k != keys.reference_key])


def _uncut_plan(uncut: _Uncut, values: np.ndarray) -> _Plan:
    n = len(uncut.basis)
    mixed = uncut.basis + np.tensordot(values, uncut.offsets, axes=1) if len(values) else uncut.basis
    carry = np.concatenate([uncut.basis, uncut.offsets.transpose(1, 0, 2).reshape(n, -1)], axis=1)
    return _Plan(cuts=(), limb_cuts=(), rest_body=blender_to_body(mixed), carry=carry, faces=uncut.faces,
                 weights=uncut.weights, origin=np.arange(n), face_origin=np.arange(len(uncut.faces)),
                 mask=np.zeros(n, bool), limb_masks={}, corner_uvs=uncut.corner_uvs, uv_tile=uncut.uv_tile)


# core.stump.cut_limb depends on λ only through the vertices it removes and the residual-segment mask (the plane's
# normal, the cap and the rig transfer do not involve λ): a drag step that crosses no vertex gives the same mesh,
# memoised on exactly those (tests/test_recut.py checks it against a fresh cut)
_STEPS: OrderedDict[tuple, tuple[_Plan, _Plan]] = OrderedDict()


def _cut_step(plan: _Plan, kind: ResidualKind, lam: float, joints: dict, values: np.ndarray, name: str) -> _Plan:
    """One more cut, as core/avatar_mesh.build_mesh makes it (so the numbers are the same)."""
    anchor, upstream = joints[kind.anchor_joint], joints[kind.upstream_joint]
    try:
        plane = cut_plane(anchor, upstream, lam)
    except ValueError as exc:
        raise CutError(f"{name}: {kind.name} at λ = {lam:.3f}: {exc}") from exc
    removed = removed_vertices(plan.rest_body, plan.weights, kind, plane)
    red = residual_segment(plan.rest_body, plan.weights, kind, removed, plane)
    key = (id(plan), kind.name, anchor.tobytes(), upstream.tobytes(), values.tobytes(),
           np.packbits(removed).tobytes(), np.packbits(red).tobytes())
    memo = _STEPS.get(key)
    if memo is not None and memo[0] is plan:
        _STEPS.move_to_end(key)
        done = memo[1]
        return replace(done, cuts=(*plan.cuts, (kind, lam)),
                       limb_cuts=(*plan.limb_cuts, replace(done.limb_cuts[-1], plane=plane)))
    done = _cut_step_fresh(plan, kind, lam, joints, values, name)
    _STEPS[key] = (plan, done)
    while len(_STEPS) > 2:
        _STEPS.popitem(last=False)
    return done


def _cut_step_fresh(plan: _Plan, kind: ResidualKind, lam: float, joints: dict, values: np.ndarray,
                    name: str) -> _Plan:
    try:
        cut = cut_limb(plan.rest_body, plan.faces, plan.weights, kind, joints[kind.anchor_joint],
                       joints[kind.upstream_joint], lam)
    except (StumpError, ValueError) as exc:
        raise CutError(f"{name}: {kind.name} at λ = {lam:.3f}: {exc}") from exc
    sealed, n_new = cut.sealed, len(cut.sealed.new_vertices)
    carry = sealed.interpolate(plan.carry)
    new_offsets = carry[-n_new:, 3:].reshape(n_new, -1, 3)
    # the cap is where the numpy cut put it at the present mix; its reference key follows from the offsets
    carry[-n_new:, :3] = body_to_blender(sealed.new_vertices) - np.einsum("k,nkc->nc", values, new_offsets)

    def kept(per_vertex, fill):
        return np.concatenate([per_vertex[sealed.keep], np.full(n_new, fill, per_vertex.dtype)])

    limb_masks = {k: kept(m, False) for k, m in plan.limb_masks.items()}
    limb_masks[kind.name] = cut.limb_surface
    n_cap_faces = len(sealed.faces) - sealed.cap_face_start
    corner_uvs = None if plan.corner_uvs is None else carry_corner_uvs(plan.corner_uvs, sealed, kind, plan.uv_tile)
    return _Plan(cuts=(*plan.cuts, (kind, lam)), limb_cuts=(*plan.limb_cuts, cut),
                 rest_body=sealed.vertices(plan.rest_body), carry=carry, faces=sealed.faces, weights=cut.weights,
                 origin=kept(plan.origin, -1),
                 face_origin=np.concatenate([plan.face_origin[sealed.face_keep], np.full(n_cap_faces, -1)]),
                 mask=kept(plan.mask, False) | cut.residual, limb_masks=limb_masks, corner_uvs=corner_uvs,
                 uv_tile=plan.uv_tile)


# the mesh before the last cut, for the last few cut lists: while the last limb's λ is dragged, the limbs before
# it are not cut again (the plan is a pure function of this key, so reusing it changes nothing)
_PREFIXES: OrderedDict[tuple, _Plan] = OrderedDict()


def _plan(mesh_obj, uncut: _Uncut, cuts: list[tuple[ResidualKind, float]]) -> _Plan:
    if not uncut.weights.any():
        raise CutError(f"{mesh_obj.name}: no skin weights in vertex groups named after the SMPL-X joints")
    values = _key_values(mesh_obj)
    joints = _rest_joints(_armature_of(mesh_obj), cuts)
    prefix = cuts[:-1]
    key = (uncut.fingerprint, values.tobytes(), tuple((k.name, lam, joints[k.anchor_joint].tobytes(),
                                                       joints[k.upstream_joint].tobytes()) for k, lam in prefix))
    plan = _PREFIXES.get(key)
    if plan is None:
        plan = _uncut_plan(uncut, values)
        for kind, lam in prefix:
            plan = _cut_step(plan, kind, lam, joints, values, mesh_obj.name)
        _PREFIXES[key] = plan
        while len(_PREFIXES) > 2:
            _PREFIXES.popitem(last=False)
    _PREFIXES.move_to_end(key)
    if cuts:
        plan = _cut_step(plan, *cuts[-1], joints, values, mesh_obj.name)
    return replace(plan, joints=joints)


# measure_limb depends only on the limb's triangles (in order), Jt and the axis: memoised on exactly those, so a
# limb that did not change (the other limbs while one λ is dragged) is not measured again
_MEASURED: OrderedDict[bytes, LimbMeasurements] = OrderedDict()


def _measure(plan: _Plan) -> dict[str, LimbMeasurements]:
    out = {}
    for kind, _ in plan.cuts:
        jt, ja = plan.joints[kind.upstream_joint], plan.joints[kind.anchor_joint]
        limb_faces = plan.limb_masks[kind.name][plan.faces].all(axis=1)
        tris = plan.rest_body[plan.faces[limb_faces]]
        memo = b"".join([kind.name.encode(), tris.tobytes(), jt.tobytes(), ja.tobytes()])
        if memo not in _MEASURED:
            _MEASURED[memo] = measure_limb(plan.rest_body, plan.faces, limb_faces, jt, ja - jt)
            while len(_MEASURED) > 32:
                _MEASURED.popitem(last=False)
        out[kind.name] = _MEASURED[memo]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Apply: one bmesh built from the stored uncut mesh, written over the live mesh


def _write(mesh_obj, uncut_mesh, uncut: _Uncut, plan: _Plan) -> None:
    mesh = mesh_obj.data
    n_final = len(plan.origin)
    n_kept = int((plan.origin >= 0).sum())
    new_faces = plan.faces[plan.face_origin < 0].tolist()
    new_uvs = None if plan.corner_uvs is None else plan.corner_uvs[plan.face_origin < 0].tolist()
    keep_face = np.zeros(len(uncut.faces), bool)
    keep_face[plan.face_origin[plan.face_origin >= 0]] = True
    keep_vert = np.zeros(len(uncut.basis), bool)
    keep_vert[plan.origin[:n_kept]] = True
    # what goes: vertices (with their edges and faces), faces whose vertices all stay (rim spikes), and edges
    # between staying vertices that only dropped faces used
    drop_verts = np.nonzero(~keep_vert)[0].tolist()
    drop_faces = np.nonzero(~keep_face & keep_vert[uncut.faces].all(axis=1))[0].tolist()
    dropped = uncut.faces[~keep_face]
    pairs = np.sort(np.concatenate([dropped[:, [0, 1]], dropped[:, [1, 2]], dropped[:, [2, 0]]]), axis=1)
    edge_ends = np.unique(pairs[keep_vert[pairs].all(axis=1)], axis=0).tolist()
    # kept vertices the cut reweighted: those with weight on a removed joint (the rest differ from the uncut
    # mesh's by the renormalisation's rounding only, < 1e-7, and keep their weights as they are)
    distal = sorted({j for cut in plan.limb_cuts for j in cut.distal})
    changed = np.nonzero(uncut.weights[:, distal].any(axis=1)[plan.origin[:n_kept]])[0]
    reweight = np.concatenate([changed, np.arange(n_kept, n_final)]).tolist()
    rows = [[(j, float(row[j])) for j in np.nonzero(row > 0)[0].tolist()] for row in plan.weights[reweight]]
    basis = plan.basis[n_kept:].tolist()
    keys = (plan.basis[None, n_kept:] + plan.offsets[:, n_kept:]).tolist()  # (K, new, 3) absolute key positions
    old_needed = sorted({i for face in new_faces for i in face if i < n_kept} | set(changed.tolist()))

    bm = bmesh.new()
    try:
        bm.from_mesh(uncut_mesh)
        deform = bm.verts.layers.deform.verify()
        uv_layer = bm.loops.layers.uv.active if new_uvs is not None else None
        shape_layers = [bm.verts.layers.shape[name] for name in uncut.key_names]
        verts, faces = bm.verts, bm.faces
        verts.ensure_lookup_table()
        faces.ensure_lookup_table()
        # every element needed is looked up now: the tables go stale once elements are added
        lookup = {i: verts[o] for i, o in zip(old_needed, plan.origin[old_needed].tolist())}
        goner_verts = [verts[i] for i in drop_verts]
        goner_faces = [faces[i] for i in drop_faces]
        edge_verts = [(verts[a], verts[b]) for a, b in edge_ends]
        # new elements are added before anything is removed: they land after the originals, which keep their
        # order when the removal frees slots, so the mesh comes out in the plan's order with no sort
        for k in range(n_final - n_kept):
            vert = verts.new(basis[k])
            if shape_layers:
                vert[shape_layers[0]] = basis[k]
                for layer, key in zip(shape_layers[1:], keys):
                    vert[layer] = key[k]
            lookup[n_kept + k] = vert
        for i, row in zip(reweight, rows):
            dvert = lookup[i][deform]
            dvert.clear()
            for joint, w in row:
                dvert[joint] = w
        for k, face in enumerate(new_faces):  # material 0: the skin (its slot is made first when there is none)
            bm_face = faces.new([lookup[i] for i in face])
            bm_face.smooth = True
            if uv_layer is not None:  # the kept faces' loops keep their UVs; the caps get their island
                for loop, uv in zip(bm_face.loops, new_uvs[k]):
                    loop[uv_layer].uv = uv
        # element by element: bmesh.ops.delete(context="FACES") does the same at twice the time here
        for face in goner_faces:
            faces.remove(face)
        for vert in goner_verts:
            verts.remove(vert)
        for a, b in edge_verts:
            edge = bm.edges.get((a, b))
            if edge is not None and not edge.link_faces:
                bm.edges.remove(edge)
        # a closed triangle mesh has 3F/2 edges: this also catches a hole or a loose edge before anything changes
        if len(verts) != n_final or len(faces) != len(plan.faces) or 2 * len(bm.edges) != 3 * len(plan.faces):
            raise CutError(f"{mesh_obj.name}: internal error, the cut mesh would have {len(verts)} vertices, "
                           f"{len(bm.edges)} edges and {len(faces)} faces instead of {n_final}, "
                           f"{3 * len(plan.faces) // 2} and {len(plan.faces)}; nothing changed")
        bm.to_mesh(mesh)
    finally:
        bm.free()
    _mark(mesh_obj, plan, uncut, list(uncut_mesh.materials))
    mesh.update()


def _material_index(mesh, name: str, color: tuple) -> int:
    material = bpy.data.materials.get(name)
    if material is None:  # its colour is set once: the highlight toggle changes it, a re-cut must not undo that
        material = bpy.data.materials.new(name)
        material.diffuse_color = color
    if not any(m == material for m in mesh.materials):
        mesh.materials.append(material)
    return list(mesh.materials).index(material)


def _mark(mesh_obj, plan: _Plan, uncut: _Uncut, uncut_materials: list) -> None:
    """Every residual segment (plus its cap) as the one attribute, the one vertex group and the red faces."""
    mesh = mesh_obj.data
    group = mesh_obj.vertex_groups.get(MASK_NAME)
    if group is not None:
        # the bmesh had no weights in it; and Blender refuses a new attribute named like a vertex group (while
        # attributes.remove() of that name removes the group): how a second cut used to make "residual_mask.001"
        mesh_obj.vertex_groups.remove(group)
    if not plan.cuts:  # the uncut body: without the slots the cuts added
        ours = {bpy.data.materials.get(RED_MATERIAL), bpy.data.materials.get(SKIN_MATERIAL)} - {None}
        for i in reversed(range(len(mesh.materials))):
            if mesh.materials[i] in ours and mesh.materials[i] not in uncut_materials:
                mesh.materials.pop(index=i)
        return
    if not mesh.materials:
        _material_index(mesh, SKIN_MATERIAL, SKIN_RGBA)  # slot 0, which the new faces use
    red = _material_index(mesh, RED_MATERIAL, RESIDUAL_RGBA)
    attribute = mesh.attributes.new(MASK_NAME, "FLOAT", "POINT")
    attribute.data.foreach_set("value", plan.mask.astype(np.float32))
    group = mesh_obj.vertex_groups.new(name=MASK_NAME)
    group.add(np.nonzero(plan.mask)[0].tolist(), 1.0, "REPLACE")
    # kept faces keep the uncut mesh's material, the caps take the skin (0), the residual segments the red;
    # through the attribute: MeshPolygon.material_index has no fast foreach path (8 ms here against 0.1)
    origin = plan.face_origin
    index = np.where(origin >= 0, uncut.material_index[np.maximum(origin, 0)], 0).astype(np.int32)
    index[plan.mask[plan.faces].all(axis=1)] = red
    attribute = mesh.attributes.get("material_index") or mesh.attributes.new("material_index", "INT", "FACE")
    attribute.data.foreach_set("value", index)


# ---------------------------------------------------------------------------------------------------------------
# Public


def _recut(mesh_obj, cuts, measure: bool) -> tuple[dict[str, LimbMeasurements], _Plan]:
    _check_avatar(mesh_obj)
    checked = _check_cuts(mesh_obj, cuts)
    uncut_mesh, made_now = _uncut_mesh(mesh_obj)
    try:
        uncut = _uncut_arrays(uncut_mesh)
        _check_rig_matches(mesh_obj, uncut)
        plan = _plan(mesh_obj, uncut, checked)
        measurements = _measure(plan) if measure else {}
        _write(mesh_obj, uncut_mesh, uncut, plan)
    except BaseException:
        if made_now:
            bpy.data.meshes.remove(uncut_mesh)
        raise
    if made_now:
        uncut_mesh.name = f"{mesh_obj.data.name}_uncut"
        mesh_obj[UNCUT_PROP] = uncut_mesh
    mesh_obj["resihmr_cut"] = json.dumps([{"kind": k.name, "lambda": lam} for k, lam in checked])
    return measurements, plan


def recut(mesh_obj, cuts: list[tuple[str, float]], measure: bool = True) -> dict[str, LimbMeasurements]:
    """Make the avatar's cuts exactly `cuts` ((kind, λ) pairs, cut in that order), starting from its stored uncut
    mesh: the previous cuts are undone, not stacked; `[]` restores the uncut body. Returns each cut limb's
    measurements (core/measure.py, on the rest shape; `measure=False` skips them and returns {}).

    All or nothing: raises CutError (unknown kind, λ outside [0, 1], two kinds on one limb, a cut that cannot be
    sealed, a rig changed since the build) leaving the object, its mesh, groups, keys, materials and record as
    they were.
    """
    cuts = [cuts] if isinstance(cuts, (str, bytes)) else list(cuts)
    if any(not isinstance(c, (tuple, list)) or len(c) != 2 for c in cuts):
        raise CutError(f"cuts must be (kind, λ) pairs, got {cuts!r}")
    return _recut(mesh_obj, cuts, measure)[0]


def cut_residual(mesh_obj, kind_name: str, lam: float, delete_distal_bones: bool = False) -> SealedCut:
    """Add one residual limb to the avatar's cuts (the present ones are re-made from the uncut mesh, the same as
    before). Raises CutError, leaving it as it was. Returns the new limb's SealedCut, relative to the mesh as it
    was with the present cuts (its cap vertices are the mesh's last ones)."""
    try:
        kind = residual_by_name(kind_name)
    except KeyError as exc:
        raise CutError(f"unknown residual kind {kind_name!r}") from exc
    _check_avatar(mesh_obj)
    present = [(d["kind"], d["lambda"]) for d in cut_state(mesh_obj)]
    for done, done_lam in present:
        if residual_by_name(done).limb == kind.limb:
            raise CutError(f"{mesh_obj.name}: the {limb_label(kind.name)} is already cut ({done}, "
                           f"λ = {done_lam:.3f}); use recut to change it")
    _, plan = _recut(mesh_obj, present + [(kind.name, lam)], measure=False)
    if delete_distal_bones:
        _delete_bones(_armature_of(mesh_obj), [JOINT_NAMES[j] for j in plan.limb_cuts[-1].distal])
    return plan.limb_cuts[-1].sealed


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
