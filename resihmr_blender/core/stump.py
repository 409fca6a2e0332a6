"""Residual-limb geometry as numpy (paper §3.4): body-part segmentation, cut plane, which vertices go.

    eq. 6   p = Ja* + λ* (Jt_init − Ja*)                  cut point
    eq. 7   n = (Ja* − Jt_init) / ||Ja* − Jt_init||         plane normal, pointing away from the body
            φ(v) = <v − p, n>                              signed distance; φ > margin inside the limb = distal

Segmentation comes from the skinning weights: a vertex belongs to the joint with its largest weight. The
"residual segment" of a limb is the part moved by the upstream joint (thigh for transfemoral, shank for
transtibial, ...); everything moved by the anchor joint or its descendants is distal and removed (coarse
prune); inside the residual segment the plane decides (fine cut). The bmesh side (mesh/) seals the hole.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body_model import JOINT_INDEX, PARENTS
from .residuals import LIMBS, ResidualKind, residual_by_name


def descendants(joint: int, parents: tuple[int, ...] = PARENTS) -> list[int]:
    """The joint and every joint below it in the tree."""
    out = [joint]
    for j in range(len(parents)):
        p = parents[j]
        while p >= 0:
            if p == joint:
                out.append(j)
                break
            p = parents[p]
    return sorted(out)


def dominant_joint(weights: np.ndarray) -> np.ndarray:
    """Body-part label per vertex: the joint with the largest skinning weight."""
    return np.asarray(weights).argmax(axis=1)


@dataclass
class CutPlane:
    point: np.ndarray  # p, eq. 6
    normal: np.ndarray  # n, eq. 7
    upstream_offset: float = 0.0  # distance from Jt to p along n: (1 − λ) ||Ja − Jt||

    def signed_distance(self, verts: np.ndarray) -> np.ndarray:
        """φ(v) = <v − p, n>."""
        return (np.asarray(verts) - self.point) @ self.normal


def cut_plane(anchor: np.ndarray, upstream: np.ndarray, lam: float) -> CutPlane:
    """Eq. 6-7 from the optimised anchor Ja*, the initial upstream joint Jt_init and λ*."""
    anchor, upstream = np.asarray(anchor, float), np.asarray(upstream, float)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"λ = {lam} is outside [0, 1]")
    axis = anchor - upstream
    length = np.linalg.norm(axis)
    if length < 1e-9:
        raise ValueError("anchor and upstream joints coincide: no limb direction")
    return CutPlane(point=anchor + lam * (upstream - anchor), normal=axis / length,
                    upstream_offset=(1.0 - lam) * float(length))


def limb_parts(kind: ResidualKind | str) -> tuple[int, list[int]]:
    """(residual segment joint, distal joints) for a residual kind."""
    kind = residual_by_name(kind) if isinstance(kind, str) else kind
    return JOINT_INDEX[kind.upstream_joint], descendants(JOINT_INDEX[kind.anchor_joint])


def removed_vertices(verts: np.ndarray, weights: np.ndarray, kind: ResidualKind | str, plane: CutPlane,
                     margin: float = 0.0) -> np.ndarray:
    """Vertices that go: the distal parts (coarse), plus residual-segment vertices beyond the plane (fine)."""
    segment, distal = limb_parts(kind)
    label = dominant_joint(weights)
    coarse = np.isin(label, distal)
    fine = (label == segment) & (plane.signed_distance(verts) > margin)
    return coarse | fine


def without_joints(weights: np.ndarray, joints: list[int]) -> np.ndarray:
    """Skin weights with the given joints' columns zeroed and rows renormalised (no vertex follows a removed
    part); a row that only followed removed joints moves to the first remaining joint up the tree."""
    weights = np.array(weights, dtype=np.float64)
    weights[:, joints] = 0.0
    total = weights.sum(axis=1)
    orphan = total <= 1e-12
    if orphan.any():
        parent = PARENTS[min(joints)]
        weights[orphan, parent] = 1.0
        total = weights.sum(axis=1)
    return weights / total[:, None]


def residual_segment(verts: np.ndarray, weights: np.ndarray, kind: ResidualKind | str, removed: np.ndarray,
                     plane: CutPlane) -> np.ndarray:
    """The remaining vertices of the residual segment (the red part of the paper's figures): the limb's own
    region (the segment's joint and the one it grows from) beyond the plane through the upstream joint Jt,
    perpendicular to the limb. `plane` is the cut plane; only its normal is used with Jt."""
    segment, _ = limb_parts(kind)
    upstream = plane.point - plane.normal * plane.upstream_offset
    beyond_jt = (np.asarray(verts) - upstream) @ plane.normal > 0
    return np.isin(dominant_joint(weights), [segment, PARENTS[segment]]) & beyond_jt & ~removed


# ---------------------------------------------------------------------------------------------------------------
# Sealing: boundary cleanup, local plane, rings, cap (paper §3.4 "Boundary cleanup and sealing")


class StumpError(ValueError):
    """The cut cannot be sealed (e.g. the plane misses the limb); the mesh is left as it was."""


@dataclass
class SealedCut:
    """A cut and sealed mesh, with what the rig needs to follow it.

    Kept original vertices keep their order; `faces` index [kept originals..., new cap vertices...].
    `new_sources` / `new_source_weights` (N, K) say how to interpolate any per-vertex data (skin weights,
    shape-key offsets, residual mask) for each new vertex from original vertices of the boundary ring.
    """

    keep: np.ndarray  # (V,) bool over the original vertices
    face_keep: np.ndarray  # (F,) bool over the original faces
    faces: np.ndarray  # (F', 3) into the new vertex order
    new_vertices: np.ndarray  # (N, 3)
    new_sources: np.ndarray  # (N, K) original vertex indices
    new_source_weights: np.ndarray  # (N, K) rows sum to one
    boundary_loop: np.ndarray  # original indices of the sealed boundary, in order
    cap_face_start: int  # faces[cap_face_start:] are the cap
    plane_point: np.ndarray
    plane_normal: np.ndarray
    cap_disc: np.ndarray  # (cap faces, 3, 2) each cap corner on the unit disc (cap_disc_coordinates)

    def vertices(self, original: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(original)[self.keep], self.new_vertices])

    def interpolate(self, per_vertex: np.ndarray) -> np.ndarray:
        """Per-vertex data on the new mesh: kept rows copied, new rows interpolated from their sources."""
        per_vertex = np.asarray(per_vertex)
        new = np.einsum("nk,nk...->n...", self.new_source_weights, per_vertex[self.new_sources])
        return np.concatenate([per_vertex[self.keep], new.astype(per_vertex.dtype)])


def _half_edges(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) directed edges; edge k of face f is row k * F + f."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)


def _boundary_mask(half: np.ndarray) -> np.ndarray:
    """True for half-edges (a, b) whose twin (b, a) is missing."""
    n = int(half.max()) + 1 if len(half) else 1
    return ~np.isin(half[:, 1] * n + half[:, 0], half[:, 0] * n + half[:, 1])


def _boundary_half_edges(faces: np.ndarray) -> np.ndarray:
    half = _half_edges(faces)
    return half[_boundary_mask(half)]


def _loops(half_edges: np.ndarray) -> list[list[int]]:
    """Chain boundary half-edges into closed loops; raises on a non-manifold (branching) boundary."""
    nxt: dict[int, int] = {}
    for a, b in half_edges.tolist():
        if a in nxt:
            raise StumpError("the cut boundary branches (a vertex touches the hole twice)")
        nxt[a] = b
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            if v not in nxt:
                raise StumpError("the cut boundary is open")
            v = nxt[v]
        loops.append(loop)
    return loops


def clean_boundary(faces: np.ndarray, face_keep: np.ndarray, candidates: np.ndarray,
                   max_rounds: int = 20) -> np.ndarray:
    """Prune spikes on the hole's rim: drop kept faces (among `candidates`) with two or more boundary edges, and
    faces around vertices where the rim touches itself, until the rim is a set of simple loops."""
    face_keep = face_keep.copy()
    for _ in range(max_rounds):
        kept_index = np.nonzero(face_keep)[0]
        kept = faces[kept_index]
        half = _half_edges(kept)
        rim = _boundary_mask(half)
        if not rim.any():
            return face_keep
        rim_edges_per_face = rim.reshape(3, -1).sum(axis=0)
        spikes = kept_index[(rim_edges_per_face >= 2) & candidates[kept_index]]
        starts, counts = np.unique(half[rim, 0], return_counts=True)
        pinched = starts[counts > 1]  # the rim passes through this vertex twice
        pinch_faces = kept_index[np.isin(kept, pinched).any(axis=1) & candidates[kept_index]]
        drop = np.union1d(spikes, pinch_faces)
        if len(drop) == 0:
            return face_keep
        face_keep[drop] = False
    return face_keep


def _smooth_loop(points: np.ndarray, rounds: int = 8) -> np.ndarray:
    for _ in range(rounds):
        points = 0.5 * points + 0.25 * (np.roll(points, 1, axis=0) + np.roll(points, -1, axis=0))
    return points


def cut_and_seal(verts: np.ndarray, faces: np.ndarray, removed: np.ndarray, limb_region: np.ndarray,
                 plane: CutPlane, rings: int = 2, dome: float = 0.45) -> SealedCut:
    """Remove `removed` vertices, clean the rim inside `limb_region`, and close the hole with a dome cap.

    The cap: the rim's centroid c and least-squares plane (normal n oriented like the cut normal); two rings at
    angles 30° and 60° of a quarter ellipse, ring_k = c + cos(a_k)·(smoothed rim − c) + H·sin(a_k)·n, and an apex
    at c + H·n, with H = dome × the rim's mean radius. Rings follow the smoothed rim, so the cap is convex in
    projection wherever the rim is, and every cap vertex lies beyond the rim's plane.
    """
    verts, faces, removed = np.asarray(verts, float), np.asarray(faces), np.asarray(removed, bool)
    if not removed.any():
        raise StumpError("the cut plane removes nothing: it misses the limb")
    face_keep = ~removed[faces].any(axis=1)
    candidates = limb_region[faces].any(axis=1)
    face_keep = clean_boundary(faces, face_keep, candidates)
    kept_faces = faces[face_keep]
    old_boundary = _boundary_half_edges(faces)
    if len(old_boundary):
        raise StumpError("the input mesh is not closed; cannot tell the new hole from existing ones")
    loops = _loops(_boundary_half_edges(kept_faces))
    if len(loops) != 1:
        raise StumpError(f"the cut left {len(loops)} holes instead of one (the plane crosses the limb badly)")
    loop = np.array(loops[0])
    if len(loop) < 3:
        raise StumpError("the cut hole is degenerate")

    used = np.zeros(len(verts), bool)
    used[kept_faces.ravel()] = True
    keep = used
    new_index = -np.ones(len(verts), np.int64)
    new_index[keep] = np.arange(keep.sum())
    rim = verts[loop]
    centre = rim.mean(axis=0)
    _, _, vt = np.linalg.svd(rim - centre)
    normal = vt[2] if np.dot(vt[2], plane.normal) >= 0 else -vt[2]
    smooth = _smooth_loop(rim - centre)
    smooth -= np.outer(smooth @ normal, normal)  # flatten into the rim's plane
    radius = np.linalg.norm(rim - centre, axis=1).mean()
    height = dome * radius
    # the cap starts from the rim's furthest point along n, so it never dips back into the limb
    base = centre + normal * max(0.0, float(((rim - centre) @ normal).max()))
    m = len(loop)
    new_vertices, sources, weights = [], [], []
    neighbours = np.stack([np.roll(loop, 1), loop, np.roll(loop, -1)], axis=1)
    for k in range(1, rings + 1):
        angle = k * (np.pi / 2) / (rings + 1)
        new_vertices.append(base + np.cos(angle) * smooth + height * np.sin(angle) * normal)
        sources.append(neighbours)
        weights.append(np.tile([0.25, 0.5, 0.25], (m, 1)))
    apex = base + height * normal
    new_vertices = np.concatenate(new_vertices + [apex[None]])
    # the apex blends the whole rim equally; pad the ring rows to the same width
    width = m
    src = np.zeros((len(new_vertices), width), np.int64)
    wts = np.zeros((len(new_vertices), width))
    for k in range(rings):
        src[k * m:(k + 1) * m, :3], wts[k * m:(k + 1) * m, :3] = sources[k], weights[k]
    src[-1], wts[-1] = loop, 1.0 / m

    first_new = int(keep.sum())
    ring_ids = [new_index[loop]] + [first_new + k * m + np.arange(m) for k in range(rings)]
    apex_id = first_new + rings * m
    cap = []
    for outer, inner in zip(ring_ids[:-1], ring_ids[1:]):
        o_next, i_next = np.roll(outer, -1), np.roll(inner, -1)
        # the kept faces hold rim half-edges outer[i] -> outer[i+1]; the cap uses them reversed
        cap.append(np.stack([o_next, outer, inner], axis=1))
        cap.append(np.stack([o_next, inner, i_next], axis=1))
    last = ring_ids[-1]
    cap.append(np.stack([np.roll(last, -1), last, np.full(m, apex_id)], axis=1))
    cap = np.concatenate(cap)
    disc = cap_disc_coordinates(rim, rings)
    # the same vertex ids, numbered ring by ring from the rim in: rim, ring 1, ..., apex
    disc_row = {int(v): i for i, v in enumerate(np.concatenate(ring_ids + [[apex_id]]))}
    cap_disc = disc[np.vectorize(disc_row.__getitem__)(cap)]
    all_faces = np.concatenate([new_index[kept_faces], cap])
    return SealedCut(keep=keep, face_keep=face_keep, faces=all_faces, new_vertices=new_vertices, new_sources=src,
                     new_source_weights=wts, boundary_loop=loop, cap_face_start=len(kept_faces),
                     plane_point=base, plane_normal=normal, cap_disc=cap_disc)


# ---------------------------------------------------------------------------------------------------------------
# Texture coordinates: kept faces keep theirs, each cap gets an island of its own


def cap_disc_coordinates(rim: np.ndarray, rings: int) -> np.ndarray:
    """The cap flattened onto the unit disc, one row per cap vertex in the order rim, ring 1..rings, apex.

    A polar version of the cap's planar projection: rim vertex i sits on the unit circle at the angle of its
    arc length along the rim (so uneven rim spacing is kept and the angles always increase), ring k at radius
    cos(k·90°/(rings+1)) — where the planar projection puts it relative to the rim (cut_and_seal builds ring k
    as cos(angle_k) × the smoothed rim) — and the apex at the centre. Concentric rings with increasing angles cannot
    fold, so no cap triangle is flipped or degenerate. Angles run clockwise in (u, v) along the loop, which
    makes the cap's triangles counter-clockwise in UV space, as the body's are."""
    steps = np.linalg.norm(np.roll(rim, -1, axis=0) - rim, axis=1)
    theta = 2.0 * np.pi * np.concatenate([[0.0], np.cumsum(steps)[:-1]]) / steps.sum()
    circle = np.stack([np.cos(theta), -np.sin(theta)], axis=1)
    radii = np.cos(np.arange(rings + 1) * (np.pi / 2) / (rings + 1))
    return np.concatenate([r * circle for r in radii] + [np.zeros((1, 2))])


CAP_ISLAND_RADIUS = 0.225  # in a 0.5 x 0.5 quadrant: 0.025 margin on every side


def cap_uv_tile(body_corner_uvs: np.ndarray) -> int:
    """The UV tile (u from this integer to the next) that holds the caps: the first one right of the body's
    UVs (u 1..2, UDIM 1002, for the SMPL-X and MakeHuman layouts, which fill 0..1)."""
    return max(1, int(np.ceil(float(np.max(body_corner_uvs[..., 0])) - 1e-6)))


def cap_island(cap_disc: np.ndarray, kind: ResidualKind | str, tile: int) -> np.ndarray:
    """Cap UVs in the limb's own quadrant of `tile`: arms on top (right, left), legs below (right, left).
    One fixed place per limb, so the islands of several caps never overlap and a texture painted on a cap
    stays on it when λ changes."""
    kind = residual_by_name(kind) if isinstance(kind, str) else kind
    i = LIMBS.index(kind.limb)
    centre = np.array([tile + 0.25 + 0.5 * (i % 2), 0.75 - 0.5 * (i // 2)])
    return centre + CAP_ISLAND_RADIUS * np.asarray(cap_disc)


def carry_corner_uvs(corner_uvs: np.ndarray, sealed: SealedCut, kind: ResidualKind | str,
                     tile: int) -> np.ndarray:
    """(F', 3, 2) UVs of the sealed mesh's face corners: the kept faces' own, then the cap's island."""
    return np.concatenate([np.asarray(corner_uvs)[sealed.face_keep], cap_island(sealed.cap_disc, kind, tile)])


@dataclass
class LimbCut:
    """One residual limb cut and sealed, with the rig data carried over (what both the numpy and the bmesh
    side need). Arrays over vertices are in the sealed mesh's order: kept originals, then the cap."""

    kind: ResidualKind
    plane: CutPlane
    sealed: SealedCut
    weights: np.ndarray  # (N, J) interpolated to the cap, distal joints removed
    residual: np.ndarray  # (N,) bool: residual segment and cap (the red part)
    limb_surface: np.ndarray  # (N,) bool: segment, the region it grows out of, and cap (measured surface)
    distal: list[int]


def cut_limb(verts: np.ndarray, faces: np.ndarray, weights: np.ndarray, kind: ResidualKind | str,
             anchor: np.ndarray, upstream: np.ndarray, lam: float) -> LimbCut:
    """Eq. 6-7 plane, coarse + fine removal, rim cleanup and cap, rig transfer; raises StumpError/ValueError."""
    kind = residual_by_name(kind) if isinstance(kind, str) else kind
    plane = cut_plane(anchor, upstream, lam)
    removed = removed_vertices(verts, weights, kind, plane)
    segment, distal = limb_parts(kind)
    label = dominant_joint(weights)
    sealed = cut_and_seal(verts, faces, removed, np.isin(label, [segment, *distal]), plane)
    n_new = len(sealed.new_vertices)
    red = residual_segment(verts, weights, kind, removed, plane)
    surface = np.isin(label, [segment, PARENTS[segment]]) & ~removed
    return LimbCut(kind=kind, plane=plane, sealed=sealed,
                   weights=without_joints(sealed.interpolate(weights), distal),
                   residual=np.concatenate([red[sealed.keep], np.ones(n_new, bool)]),
                   limb_surface=np.concatenate([surface[sealed.keep], np.ones(n_new, bool)]), distal=distal)
