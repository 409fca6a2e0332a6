"""Procedural prostheses fitted to a cut body (numpy only): socket, pylon, knee/elbow unit, foot, hand or hook.

Everything is built in the rest (T-pose) body frame of the cut mesh (SMPL-X frame: y up, facing +z, subject's
left +x), the space the stump was cut in:

- socket: an offset shell of the stump's own skin. The faces beyond a trim plane perpendicular to the limb axis
  (a fraction of the segment below the upstream joint, as real sockets are trimmed: below the knee, around the
  thigh, the forearm or the upper arm), offset along the vertex normals by GAP (inner surface) and GAP + WALL
  (outer surface), stitched at the rim: closed and consistently wound by construction.
- pylon: a cylinder on the limb axis from inside the socket's distal wall to the next joint of the skeleton —
  the prosthetic ankle/wrist lands on the body's own ankle/wrist joint (the skeleton keeps its distal bones), so
  the avatar stands level and its arms are the same length. Transfemoral/transhumeral limbs get a knee/elbow
  unit on the knee/elbow joint and a second pylon below it.
- terminal device: a foot lofted from slices of the intact foot of the same body (the other side of the uncut
  mesh, mirrored: same length, width, ankle height and sole level); for arms a hand lofted the same way from the
  other hand, or a split hook (two curved fingers on a wrist unit).

Each part carries rest skin weights over the 55 SMPL-X joints: the socket copies the weights of the skin it
covers (it moves with the stump it sits on: on the stump's bone wherever the skin is rigid), every other part is
rigid on one bone (pylon on the stump's bone, the lower pylon and knee/elbow unit on the knee/elbow bone, foot on
the ankle bone and its toes on the foot bone, hand/hook on the wrist bone).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .body_model import JOINT_INDEX, NUM_JOINTS, PARENTS
from .residuals import ResidualKind, residual_by_name

GAP = 0.003  # skin to the socket's inner surface (m)
WALL = 0.004  # socket wall thickness (m)
# trim plane: this fraction of the Jt-Ja distance beyond the upstream joint
TRIM = {"transtibial": 0.12, "transfemoral": 0.32, "transradial": 0.12, "transhumeral": 0.30}
PYLON_RADIUS = {"leg": 0.016, "arm": 0.012}
JOINT_UNIT_RADIUS = {"leg": 0.032, "arm": 0.022}  # knee / elbow unit
TERMINALS = {"leg": ("foot",), "arm": ("hand", "hook")}
RING = 24  # vertices around a pylon, unit or loft section


class ProsthesisError(ValueError):
    """The prosthesis cannot be fitted (e.g. no stump surface beyond the trim plane)."""


@dataclass
class Part:
    name: str  # socket, pylon, knee, elbow, lower_pylon, foot, hand, hook
    vertices: np.ndarray  # (N, 3) rest body frame
    faces: np.ndarray  # (F, 3), outward-facing
    weights: np.ndarray  # (N, 55) rest skin weights, rows sum to one

    @property
    def bones(self) -> list[int]:
        return np.nonzero(self.weights.any(axis=0))[0].tolist()


@dataclass
class Prosthesis:
    kind: ResidualKind
    terminal: str
    parts: list[Part]
    dimensions: dict[str, float] = field(default_factory=dict)
    inner_vertices: np.ndarray | None = None  # socket vertex indices of its inner surface

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vertices, faces, weights, part index per face) of every part in one mesh."""
        verts, faces, weights, index, offset = [], [], [], [], 0
        for i, p in enumerate(self.parts):
            verts.append(p.vertices)
            faces.append(p.faces + offset)
            weights.append(p.weights)
            index.append(np.full(len(p.faces), i))
            offset += len(p.vertices)
        return np.concatenate(verts), np.concatenate(faces), np.concatenate(weights), np.concatenate(index)

    def to_json(self) -> dict:
        return {"kind": self.kind.name, "terminal": self.terminal, "parts": [p.name for p in self.parts],
                **{k: round(float(v), 4) for k, v in self.dimensions.items()}}


def limb_type(kind: ResidualKind | str) -> str:
    kind = residual_by_name(kind) if isinstance(kind, str) else kind
    return kind.limb.split("_")[1]


def default_terminal(kind: ResidualKind | str) -> str:
    return TERMINALS[limb_type(kind)][0]


# ---------------------------------------------------------------------------------------------------------------
# Mesh helpers


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unit)."""
    tri = verts[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(verts)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-12)


def offset_directions(verts: np.ndarray, faces: np.ndarray, limit: float = 1.5) -> np.ndarray:
    """Per vertex, the mitred offset direction: the unit vertex normal m scaled by 1 / min(m · n_f) over its faces,
    so moving the vertex by d along it moves every adjacent face's plane by at least d (at a crease, such as where
    a stump's cap meets its side, the plain normal would leave the side's plane nearly where it was)."""
    tri = verts[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    face_n /= np.maximum(np.linalg.norm(face_n, axis=1, keepdims=True), 1e-30)
    # angle-weighted normals: a crease's normal bisects it whatever the sizes of the faces on either side
    m = np.zeros_like(verts)
    for k in range(3):
        e1, e2 = tri[:, (k + 1) % 3] - tri[:, k], tri[:, (k + 2) % 3] - tri[:, k]
        cos_corner = np.einsum("ij,ij->i", e1, e2) / np.maximum(
            np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1), 1e-30)
        np.add.at(m, faces[:, k], np.arccos(np.clip(cos_corner, -1.0, 1.0))[:, None] * face_n)
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-30)
    cos = np.ones(len(verts))
    for k in range(3):
        np.minimum.at(cos, faces[:, k], np.einsum("ij,ij->i", m[faces[:, k]], face_n))
    return m / np.clip(cos, 1.0 / limit, 1.0)[:, None]


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    tri = verts[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def loft(sections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A closed mesh through K rings of M points (K, M, 3), the two ends closed by fans; outward-facing."""
    k, m = sections.shape[:2]
    verts = np.concatenate([sections.reshape(-1, 3), sections[0].mean(0)[None], sections[-1].mean(0)[None]])
    i = np.arange(m)
    j = np.roll(i, -1)
    faces = []
    for s in range(k - 1):
        a, b = s * m + i, (s + 1) * m + i
        an, bn = s * m + j, (s + 1) * m + j
        faces += [np.stack([a, an, bn], 1), np.stack([a, bn, b], 1)]
    first, last = k * m, k * m + 1
    faces.append(np.stack([np.full(m, first), j, i], 1))
    faces.append(np.stack([np.full(m, last), (k - 1) * m + i, (k - 1) * m + j], 1))
    faces = np.concatenate(faces)
    if signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1]
    return verts, faces


def _frame(axis: np.ndarray, hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to `axis`, the first as close to `hint` as possible."""
    axis = axis / np.linalg.norm(axis)
    u = hint - (hint @ axis) * axis
    if np.linalg.norm(u) < 1e-6:
        u = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    return u, np.cross(axis, u)


def ring(centre, u, v, a: float, b: float, m: int = RING, exponent: float = 2.0) -> np.ndarray:
    """A superellipse around `centre` in the plane (u, v) with half-axes a, b (exponent 2: an ellipse)."""
    t = np.linspace(0.0, 2.0 * np.pi, m, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    cu = np.sign(c) * np.abs(c) ** (2.0 / exponent)
    sv = np.sign(s) * np.abs(s) ** (2.0 / exponent)
    return np.asarray(centre) + a * cu[:, None] * u + b * sv[:, None] * v


def cylinder(start, end, radius: float, hint=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    start, end = np.asarray(start, float), np.asarray(end, float)
    u, v = _frame(end - start, np.asarray(hint, float))
    return loft(np.stack([ring(start, u, v, radius, radius), ring(end, u, v, radius, radius)]))


def tube(path: np.ndarray, radius: float, hint) -> tuple[np.ndarray, np.ndarray]:
    """A closed tube along a polyline (rounded by its end fans)."""
    sections = []
    for i, p in enumerate(path):
        tangent = path[min(i + 1, len(path) - 1)] - path[max(i - 1, 0)]
        u, v = _frame(tangent, np.asarray(hint, float))
        sections.append(ring(p, u, v, radius, radius, m=12))
    return loft(np.array(sections))


def _one_hot(n: int, joint: str) -> np.ndarray:
    w = np.zeros((n, NUM_JOINTS))
    w[:, JOINT_INDEX[joint]] = 1.0
    return w


def _rigid(name: str, mesh: tuple[np.ndarray, np.ndarray], joint: str) -> Part:
    return Part(name, mesh[0], mesh[1].astype(np.int64), _one_hot(len(mesh[0]), joint))


def _join(meshes) -> tuple[np.ndarray, np.ndarray]:
    verts, faces, offset = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


# ---------------------------------------------------------------------------------------------------------------
# Distances (tests and the fit's own check): point to triangle mesh, signed by the nearest face's side


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point on triangle (a, b, c) to p, row by row (Ericson, Real-Time Collision Detection 5.1.5)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp = p - b
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    cp = p - c
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < 1e-30, 1e-30, denom)
    v, w = vb / denom, vc / denom
    out = a + ab * v[:, None] + ac * w[:, None]  # inside the face
    with np.errstate(divide="ignore", invalid="ignore"):
        # edges (later assignments win over earlier ones only where their region applies)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        m = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
        out[m] = (b + (c - b) * t_bc[:, None])[m]
        t_ac = d2 / (d2 - d6)
        m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        out[m] = (a + ac * t_ac[:, None])[m]
        t_ab = d1 / (d1 - d3)
        m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        out[m] = (a + ab * t_ab[:, None])[m]
    out[(d6 >= 0) & (d5 <= d6)] = c[(d6 >= 0) & (d5 <= d6)]
    out[(d3 >= 0) & (d4 <= d3)] = b[(d3 >= 0) & (d4 <= d3)]
    out[(d1 <= 0) & (d2 <= 0)] = a[(d1 <= 0) & (d2 <= 0)]
    return out


def signed_distance(points: np.ndarray, verts: np.ndarray, faces: np.ndarray, neighbours: int = 8,
                    reach: float = 0.05) -> np.ndarray:
    """Distance from each point to the mesh, negative inside (by the nearest face's normal). The candidate faces
    are those around the `neighbours` nearest mesh vertices: exact on a fine mesh near its surface, up to
    `reach` (further points get at least `reach`)."""
    points, verts, faces = np.asarray(points, float), np.asarray(verts, float), np.asarray(faces)
    # only the part of the mesh within `reach` of the points' box takes part (exact up to that distance)
    lo, hi = points.min(axis=0) - reach, points.max(axis=0) + reach
    inside = ((verts >= lo) & (verts <= hi)).all(axis=1)
    keep = inside[faces].any(axis=1)
    if keep.sum() >= 1:
        used, local = np.unique(faces[keep], return_inverse=True)
        verts, faces = verts[used], local.reshape(-1, 3)
    vertex_faces = [[] for _ in range(len(verts))]
    for f, tri in enumerate(faces.tolist()):
        for v in tri:
            vertex_faces[v].append(f)
    width = max(len(x) for x in vertex_faces)
    table = np.full((len(verts), width), -1)
    for v, fs in enumerate(vertex_faces):
        table[v, :len(fs)] = fs
    face_n = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    face_n /= np.maximum(np.linalg.norm(face_n, axis=1, keepdims=True), 1e-30)
    out = np.empty(len(points))
    k = min(neighbours, len(verts))
    for start in range(0, len(points), 256):
        p = points[start:start + 256]
        d2 = ((p[:, None, :] - verts[None]) ** 2).sum(-1)
        near = np.argpartition(d2, k - 1, axis=1)[:, :k]
        cand = table[near].reshape(len(p), -1)
        q = np.repeat(p, cand.shape[1], axis=0)
        f = cand.ravel()
        valid = f >= 0
        f = np.where(valid, f, 0)
        tri = verts[faces[f]]
        closest = _closest_on_triangles(q, tri[:, 0], tri[:, 1], tri[:, 2])
        delta = q - closest
        dist = np.linalg.norm(delta, axis=1)
        dist[~valid] = np.inf
        dist = dist.reshape(len(p), -1)
        # on a shared edge or vertex several faces tie: the one the point lies most squarely in front of decides
        side = np.einsum("ij,ij->i", delta, face_n[f]).reshape(len(p), -1)
        tie = dist <= dist.min(axis=1, keepdims=True) + 1e-9
        score = np.where(tie, np.abs(side) / np.maximum(dist, 1e-12), -1.0)
        best = score.argmax(axis=1)
        rows = np.arange(len(p))
        out[start:start + 256] = np.sign(side[rows, best] + 0.0) * dist[rows, best]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Socket


def _region_from(faces: np.ndarray, face_ok: np.ndarray, seed_vertex: int) -> np.ndarray:
    """Faces reachable from `seed_vertex` through selected faces sharing a vertex (a breadth-first walk)."""
    selected = np.nonzero(face_ok)[0]
    vertex_faces: dict[int, list[int]] = {}
    for f in selected.tolist():
        for v in faces[f].tolist():
            vertex_faces.setdefault(v, []).append(f)
    seen_f, seen_v = set(), {seed_vertex}
    queue = deque([seed_vertex])
    while queue:
        v = queue.popleft()
        for f in vertex_faces.get(v, ()):
            if f not in seen_f:
                seen_f.add(f)
                for w in faces[f].tolist():
                    if w not in seen_v:
                        seen_v.add(w)
                        queue.append(w)
    return np.array(sorted(seen_f), np.int64)


def _rim_half_edges(faces: np.ndarray) -> np.ndarray:
    half = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    n = int(half.max()) + 1
    return half[~np.isin(half[:, 1] * n + half[:, 0], half[:, 0] * n + half[:, 1])]


def _widened(verts, faces, region, used, local, directions, rounds: int = 4) -> np.ndarray:
    """Per covered vertex, how much further than GAP it moves: where an offset face's centre comes nearer than
    GAP / 2 to the skin (over a crease or a dent the faces' planes cut corners), its vertices move 25 % further,
    a few rounds. Checked against the covered skin and the ring of faces around it."""
    touching = np.isin(faces, used).any(axis=1)
    near_faces = faces[touching]
    near_used, near_local = np.unique(near_faces, return_inverse=True)
    skin_v, skin_f = verts[near_used], near_local.reshape(-1, 3)
    scale = np.ones(len(used))
    for _ in range(rounds):
        inner = verts[used] + GAP * scale[:, None] * directions
        centres = inner[local].mean(axis=1)
        close = signed_distance(centres, skin_v, skin_f) < 0.5 * GAP
        if not close.any():
            break
        grow = np.unique(local[close])
        scale[grow] = np.minimum(scale[grow] * 1.25, 2.0)
    return scale


def socket_shell(verts, faces, weights, upstream, axis, trim: float, tip_vertex: int, segment: int):
    """The socket (see the module docstring) and its geometry along the axis: (Part, inner vertex indices, the
    stump faces it covers). Only skin of the stump's own segment is covered (near the crotch or the armpit the
    trim plane also crosses the other thigh or the torso)."""
    s = (verts - upstream) @ axis
    own = weights.argmax(axis=1) == segment
    region = _region_from(faces, ((s[faces] >= trim) & own[faces]).all(axis=1), tip_vertex)
    if len(region) < 8:
        raise ProsthesisError(f"no stump surface beyond the socket's trim plane ({trim:.3f} m below the joint)")
    covered = faces[region]
    used, local = np.unique(covered, return_inverse=True)
    local = local.reshape(-1, 3)
    rim = _rim_half_edges(local)
    heads, counts = np.unique(rim[:, 0], return_counts=True)
    if len(rim) == 0 or (counts > 1).any():
        raise ProsthesisError("the stump surface beyond the trim plane is not a single tube (its rim branches)")
    normals = offset_directions(verts, faces)[used]
    n = len(used)
    inner = verts[used] + GAP * _widened(verts, faces, region, used, local, normals)[:, None] * normals
    outer = verts[used] + (GAP + WALL) * normals
    a, b = rim[:, 0], rim[:, 1]
    stitch = np.concatenate([np.stack([b, a, a + n], 1), np.stack([b, a + n, b + n], 1)])
    shell_faces = np.concatenate([local, local[:, ::-1] + n, stitch])
    shell_w = np.concatenate([weights[used], weights[used]])
    part = Part("socket", np.concatenate([outer, inner]), shell_faces.astype(np.int64),
                shell_w / shell_w.sum(axis=1, keepdims=True))
    return part, np.arange(n, 2 * n), region


CLEARANCE = 0.01  # socket surface to any skin it does not cover, vertex to vertex (body edges are ~1 cm)


def _clear_socket(verts, faces, weights, jt, axis, trim, tip_vertex, segment, stump_length):
    """The socket, its trim moved down 1 cm at a time while its outside comes nearer than CLEARANCE to skin of
    another limb or the trunk (a short thigh's socket at the crotch, an upper arm's at the armpit). The segment
    the stump grows from is not counted: its skin continues the stump's above the rim."""
    others = ~np.isin(weights.argmax(axis=1), [segment, PARENTS[segment]])
    while True:
        socket, inner, _ = socket_shell(verts, faces, weights, jt, axis, trim, tip_vertex, segment)
        lo, hi = socket.vertices.min(0) - CLEARANCE, socket.vertices.max(0) + CLEARANCE
        near = verts[others & (verts >= lo).all(1) & (verts <= hi).all(1)]
        outside = socket.vertices[:len(inner)]
        if not len(near) or _min_distance(outside, near) >= CLEARANCE:
            return socket, inner
        trim += 0.01
        if trim > stump_length - 0.02:
            raise ProsthesisError("the stump is too short for a socket clear of the rest of the body")


def _min_distance(a: np.ndarray, b: np.ndarray) -> float:
    best = np.inf
    for start in range(0, len(a), 512):
        d2 = ((a[start:start + 512, None] - b[None]) ** 2).sum(-1)
        best = min(best, float(d2.min()))
    return float(np.sqrt(best))


# ---------------------------------------------------------------------------------------------------------------
# Terminal devices from the intact side


def _side(kind: ResidualKind) -> tuple[str, str]:
    side = kind.limb.split("_")[0]
    return side, "left" if side == "right" else "right"


def _slices(points: np.ndarray, along: np.ndarray, count: int, lo: float, hi: float):
    """Per slab along `along` between lo and hi: the points' coordinates in it (or the nearest slab's)."""
    t = points @ along
    edges = np.linspace(lo, hi, count + 1)
    out = []
    for i in range(count):
        inside = (t >= edges[i]) & (t <= edges[i + 1])
        if inside.sum() < 3:
            centre = 0.5 * (edges[i] + edges[i + 1])
            inside = np.argsort(np.abs(t - centre))[:6]
        out.append(points[inside])
    return edges, out


def foot(intact_verts, intact_weights, joints, kind: ResidualKind) -> tuple[Part, dict]:
    """A foot lofted from heel to toe through slabs of the other (intact) foot, mirrored onto this ankle."""
    side, other = _side(kind)
    labels = intact_weights.argmax(axis=1)
    region = np.isin(labels, [JOINT_INDEX[f"{other}_ankle"], JOINT_INDEX[f"{other}_foot"]])
    ankle_o = joints[JOINT_INDEX[f"{other}_ankle"]]
    ankle = joints[JOINT_INDEX[f"{side}_ankle"]]
    rel = intact_verts[region] - ankle_o
    rel[:, 0] *= -1.0  # mirrored onto this side
    rel = rel[rel[:, 1] < 0.04]  # the foot, not the lower shank the ankle also moves
    z_lo, z_hi = rel[:, 2].min(), rel[:, 2].max()
    sole = rel[:, 1].min()
    edges, slabs = _slices(rel, np.array([0.0, 0.0, 1.0]), 14, z_lo, z_hi)
    sections = []
    count = len(slabs)
    for i, slab in enumerate(slabs):
        z = edges[i] if i == 0 else edges[i + 1] if i == count - 1 else 0.5 * (edges[i] + edges[i + 1])
        x_lo, x_hi = slab[:, 0].min(), slab[:, 0].max()
        top = min(slab[:, 1].max(), 0.02)
        half_w, half_h = max(0.5 * (x_hi - x_lo), 0.01), max(0.5 * (top - sole), 0.008)
        centre = ankle + np.array([0.5 * (x_lo + x_hi), sole + half_h, z])
        sections.append(ring(centre, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), half_w, half_h, exponent=3.0))
    verts, faces = loft(np.array(sections))
    # the toes bend with the foot bone (the ball of the foot), the rest with the ankle
    ball = joints[JOINT_INDEX[f"{side}_foot"]]
    weights = _one_hot(len(verts), f"{side}_ankle")
    toes = verts[:, 2] > ball[2]
    weights[toes] = _one_hot(int(toes.sum()), f"{side}_foot")
    dims = {"foot_length_m": float(z_hi - z_lo), "foot_width_m": float(np.ptp(rel[:, 0])),
            "ankle_height_m": float(-sole)}
    return Part("foot", verts, faces.astype(np.int64), weights), dims


def _hand_frame(joints, side: str):
    elbow, wrist = joints[JOINT_INDEX[f"{side}_elbow"]], joints[JOINT_INDEX[f"{side}_wrist"]]
    axis = (wrist - elbow) / np.linalg.norm(wrist - elbow)
    u, v = _frame(axis, np.array([0.0, 0.0, 1.0]))  # u: towards the front (hand width), v: thickness
    return wrist, axis, u, v


def hand(intact_verts, intact_weights, joints, kind: ResidualKind) -> tuple[Part, dict]:
    """A mitten lofted along the forearm axis through slabs of the other (intact) hand, mirrored."""
    side, other = _side(kind)
    labels = intact_weights.argmax(axis=1)
    fingers = [JOINT_INDEX[f"{other}_wrist"]] + [i for n, i in JOINT_INDEX.items()
                                                 if n.startswith(other) and n[len(other) + 1:-1] in
                                                 ("index", "middle", "pinky", "ring", "thumb")]
    wrist_o, axis_o, u_o, v_o = _hand_frame(joints, other)
    local = intact_verts[np.isin(labels, fingers)] - wrist_o
    coords = np.stack([local @ axis_o, local @ u_o, local @ v_o], axis=1)  # along, width, thickness
    coords = coords[coords[:, 0] > 0.0]
    wrist, axis, u, v = _hand_frame(joints, side)
    # mirroring x flips the handedness of (axis, u, v) frames built the same way: the width axis keeps pointing
    # forward on both sides, thickness too, so coordinates carry over as they are
    length = coords[:, 0].max()
    edges, slabs = _slices(coords, np.array([1.0, 0.0, 0.0]), 12, 0.0, length)
    sections = []
    for i, slab in enumerate(slabs):
        t = edges[i] if i == 0 else edges[i + 1] if i == len(slabs) - 1 else 0.5 * (edges[i] + edges[i + 1])
        w_lo, w_hi = slab[:, 1].min(), slab[:, 1].max()
        h_lo, h_hi = slab[:, 2].min(), slab[:, 2].max()
        centre = wrist + t * axis + 0.5 * (w_lo + w_hi) * u + 0.5 * (h_lo + h_hi) * v
        sections.append(ring(centre, u, v, max(0.5 * (w_hi - w_lo), 0.008), max(0.5 * (h_hi - h_lo), 0.006),
                             exponent=2.5))
    verts, faces = loft(np.array(sections))
    dims = {"hand_length_m": float(length), "hand_width_m": float(np.ptp(coords[:, 1]))}
    return Part("hand", verts, faces.astype(np.int64), _one_hot(len(verts), f"{side}_wrist")), dims


def hook(intact_verts, intact_weights, joints, kind: ResidualKind) -> tuple[Part, dict]:
    """A split hook: a wrist unit and two curved fingers meeting at the tip, about 0.75 of the intact hand long."""
    side, _ = _side(kind)
    _, hand_dims = hand(intact_verts, intact_weights, joints, kind)
    length = 0.75 * hand_dims["hand_length_m"]
    wrist, axis, u, v = _hand_frame(joints, side)
    base_len = 0.3 * length
    meshes = [cylinder(wrist, wrist + base_len * axis, 0.02, hint=u)]
    radius = 0.45 * (length - base_len)
    for sign in (1.0, -1.0):  # the two fingers bow apart along u and meet at the tip
        t = np.linspace(0.0, np.pi, 14)
        start = wrist + base_len * axis
        path = start + ((1 - np.cos(t)) * 0.5 * (length - base_len))[:, None] * axis \
            + (sign * 0.6 * radius * np.sin(t))[:, None] * u
        path[-1] -= 0.004 * sign * u  # the tips stay apart by a few mm (a closed hook, not one solid)
        meshes.append(tube(path, 0.006 if sign > 0 else 0.005, hint=v))
    verts, faces = _join(meshes)
    dims = {"hook_length_m": float(length)}
    return Part("hook", verts, faces.astype(np.int64), _one_hot(len(verts), f"{side}_wrist")), dims


TERMINAL_BUILDERS = {"foot": foot, "hand": hand, "hook": hook}


def cover(intact_verts, intact_weights, joints, side: str, segment: str, child: str, s_from: float, s_to: float,
          name: str) -> Part | None:
    """A cosmetic cover over the pylon: the other side's segment (`segment` -> `child`, e.g. knee -> ankle for the
    shank) mirrored onto this side, lofted through its cross-sections between s_from and s_to along this side's
    segment axis; rigid on the segment's bone. None when the span is too short to be worth a part."""
    if s_to - s_from < 0.02:
        return None
    other = "left" if side == "right" else "right"
    labels = intact_weights.argmax(axis=1)
    region = np.isin(labels, [JOINT_INDEX[f"{other}_{segment}"], JOINT_INDEX[f"{other}_{child}"]])
    mirror_x = 2.0 * joints[0, 0]  # about the pelvis
    pts = intact_verts[region].copy()
    pts[:, 0] = mirror_x - pts[:, 0]
    j0, j1 = joints[JOINT_INDEX[f"{side}_{segment}"]], joints[JOINT_INDEX[f"{side}_{child}"]]
    length = float(np.linalg.norm(j1 - j0))
    axis = (j1 - j0) / length
    u, v = _frame(axis, np.array([0.0, 0.0, 1.0]))
    rel = pts - j0
    t, a, b = rel @ axis, rel @ u, rel @ v
    inside = (t >= 0.0) & (t <= length)
    t, a, b = t[inside], a[inside], b[inside]
    levels = np.linspace(s_from, s_to, max(4, int((s_to - s_from) / 0.03) + 2))
    half = max(0.5 * (levels[1] - levels[0]), 0.012)
    bins = RING
    sections = []
    for level in levels:
        sel = np.abs(t - level) < half
        if sel.sum() < 12:
            sel = np.argsort(np.abs(t - level))[:24]
        ca, cb = 0.5 * (a[sel].min() + a[sel].max()), 0.5 * (b[sel].min() + b[sel].max())
        theta = np.arctan2(b[sel] - cb, a[sel] - ca)
        r = np.hypot(a[sel] - ca, b[sel] - cb)
        index = ((theta + np.pi) / (2 * np.pi) * bins).astype(int) % bins
        radius = np.zeros(bins)
        np.maximum.at(radius, index, r)
        filled = radius > 0
        if filled.sum() < 3:
            radius[:] = r.max()
        else:  # empty angle bins: interpolated around the circle from their neighbours
            k = np.arange(bins)
            radius = np.interp(k, k[filled], radius[filled], period=bins)
        radius = 0.5 * radius + 0.25 * (np.roll(radius, 1) + np.roll(radius, -1))
        angle = (np.arange(bins) + 0.5) / bins * 2 * np.pi - np.pi
        sections.append(j0 + level * axis + (ca + radius * np.cos(angle))[:, None] * u
                        + (cb + radius * np.sin(angle))[:, None] * v)
    verts, faces = loft(np.array(sections))
    return _rigid(name, (verts, faces), f"{side}_{segment}")


# ---------------------------------------------------------------------------------------------------------------
# The whole device


def fit_prosthesis(kind: ResidualKind | str, verts: np.ndarray, faces: np.ndarray, weights: np.ndarray,
                   joints: np.ndarray, intact_verts: np.ndarray, intact_weights: np.ndarray,
                   terminal: str | None = None, with_cover: bool = False) -> Prosthesis:
    """The prosthesis for one cut limb of a body.

    verts, faces, weights: the cut, sealed rest mesh (body frame) with its skin weights; joints: the 55 rest joints
    (the skeleton keeps its distal joints); intact_verts, intact_weights: the same body uncut (the other side's
    foot or hand gives the terminal device its size, its limb the cover's shape). with_cover: a cosmetic cover
    shaped like the other limb over the pylon(s)."""
    kind = residual_by_name(kind) if isinstance(kind, str) else kind
    limb = limb_type(kind)
    terminal = terminal or default_terminal(kind)
    if terminal not in TERMINALS[limb]:
        raise ProsthesisError(f"{kind.name}: terminal device {terminal!r} unknown for the "
                              f"{kind.limb.replace('_', ' ')} (use {' or '.join(TERMINALS[limb])})")
    verts, faces, weights = np.asarray(verts, float), np.asarray(faces, np.int64), np.asarray(weights, float)
    joints = np.asarray(joints, float)
    jt, ja = joints[JOINT_INDEX[kind.upstream_joint]], joints[JOINT_INDEX[kind.anchor_joint]]
    segment_length = float(np.linalg.norm(ja - jt))
    axis = (ja - jt) / segment_length
    segment = JOINT_INDEX[kind.upstream_joint]
    on_limb = weights.argmax(axis=1) == segment
    if not on_limb.any():
        raise ProsthesisError(f"{kind.name}: no skin on the {kind.upstream_joint} segment")
    s = (verts - jt) @ axis
    tip_vertex = int(np.nonzero(on_limb)[0][np.argmax(s[on_limb])])
    stump_length = float(s[tip_vertex])
    # the trim plane stays inside the stump: a very short stump gets a socket over its distal 60 %
    trim = min(TRIM[kind.name.split("_")[1]] * segment_length, 0.4 * stump_length)
    socket, inner = _clear_socket(verts, faces, weights, jt, axis, trim, tip_vertex, segment, stump_length)
    trim = float(((socket.vertices[inner] - jt) @ axis).min())
    parts = [socket]

    # the pylon starts inside the socket's distal wall: just beyond its inner surface (and the skin) over its
    # top disc, widened by 2.5 cm for the faces between the vertices
    radius = PYLON_RADIUS[limb]
    pts = np.concatenate([socket.vertices[inner], verts[on_limb] + GAP * axis])
    off_axis = np.linalg.norm((pts - jt) - np.outer((pts - jt) @ axis, axis), axis=1)
    s_pts = (pts - jt) @ axis
    near = off_axis < radius + 0.025
    top_s = (s_pts[near].max() if near.any() else s_pts.max()) + 0.001
    socket_end = float(((socket.vertices - jt) @ axis).max())
    top = jt + top_s * axis
    dims = {"stump_length_m": stump_length, "socket_length_m": socket_end - trim, "socket_trim_m": trim,
            "socket_gap_m": GAP, "socket_wall_m": WALL, "pylon_radius_m": radius}
    side = kind.limb.split("_")[0]
    distal = f"{side}_ankle" if limb == "leg" else f"{side}_wrist"
    end = joints[JOINT_INDEX[distal]]
    hint = np.array([0.0, 0.0, 1.0])
    if kind.name.endswith(("transfemoral", "transhumeral")):
        # knee / elbow unit on the skeleton's own knee / elbow; it and what hangs below bend with that bone
        unit_joint = kind.anchor_joint
        unit_r = JOINT_UNIT_RADIUS[limb]
        centre = ja if top_s + unit_r <= segment_length else jt + (top_s + unit_r) * axis
        unit_axis = np.array([1.0, 0.0, 0.0]) if limb == "leg" else np.array([0.0, 1.0, 0.0])
        half = 0.9 * unit_r if limb == "leg" else 0.8 * unit_r
        unit = cylinder(centre - half * unit_axis, centre + half * unit_axis, unit_r, hint=axis)
        parts.append(_rigid("pylon", cylinder(top, centre, radius, hint), kind.upstream_joint))
        parts.append(_rigid("knee" if limb == "leg" else "elbow", unit, unit_joint))
        parts.append(_rigid("lower_pylon", cylinder(centre, end, radius, hint), unit_joint))
        dims["pylon_length_m"] = float(np.linalg.norm(centre - top))
        dims["lower_pylon_length_m"] = float(np.linalg.norm(end - centre))
        dims[f"{'knee' if limb == 'leg' else 'elbow'}_unit_radius_m"] = unit_r
    else:
        parts.append(_rigid("pylon", cylinder(top, end, radius, hint), kind.upstream_joint))
        dims["pylon_length_m"] = float(np.linalg.norm(end - top))
    intact_verts, intact_weights = np.asarray(intact_verts, float), np.asarray(intact_weights, float)
    if with_cover:
        # from just beyond the socket to the distal joint, split at the knee / elbow unit so it bends there
        lower_joint = "ankle" if limb == "leg" else "wrist"
        if kind.name.endswith(("transfemoral", "transhumeral")):
            upper, middle = kind.upstream_joint.split("_", 1)[1], kind.anchor_joint.split("_", 1)[1]
            unit_s = float((centre - jt) @ axis)
            spans = [(upper, middle, socket_end + 0.003, unit_s - unit_r, "cover"),
                     (middle, lower_joint, unit_r, float(np.linalg.norm(end - ja)) - 0.01, "lower_cover")]
        else:
            spans = [(kind.upstream_joint.split("_", 1)[1], lower_joint, socket_end + 0.003, segment_length - 0.01,
                      "cover")]
        for seg, child, s_from, s_to, name in spans:
            piece = cover(intact_verts, intact_weights, joints, side, seg, child, s_from, s_to, name)
            if piece is not None:
                parts.append(piece)
                dims[f"{name}_length_m"] = s_to - s_from
    device, terminal_dims = TERMINAL_BUILDERS[terminal](intact_verts, intact_weights, joints, kind)
    parts.append(device)
    dims.update(terminal_dims)
    dims["limb_length_m"] = float(np.linalg.norm(end - jt) if limb == "arm" else
                                  np.linalg.norm(joints[JOINT_INDEX[f"{side}_knee"]]
                                                 - joints[JOINT_INDEX[f"{side}_hip"]])
                                  + np.linalg.norm(end - joints[JOINT_INDEX[f"{side}_knee"]]))
    return Prosthesis(kind, terminal, parts, dims, inner)
