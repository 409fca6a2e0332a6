"""Residual-limb measurements on a closed, cut mesh (numpy only).

All are taken on the limb's own surface (the faces of the residual segment and its cap), in the rest pose by
default so the pose does not distort them:

- residual length: from the upstream joint Jt to the stump tip, the limb surface's furthest point along the
  limb axis n (n = unit vector from Jt towards the anchor joint);
- stump volume: the volume enclosed by the limb surface beyond the plane through Jt perpendicular to n
  (e.g. below the knee joint line for a transtibial limb), in litres. Computed with the divergence theorem
  using tetrahedra whose apex lies on that plane, so the open cross-section there contributes nothing;
- circumferences: perimeter of the limb surface's cross-section by planes perpendicular to n at 25, 50 and
  75 % of the residual length from Jt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LimbMeasurements:
    residual_length_m: float
    stump_volume_l: float
    circumference_levels: tuple[float, ...]
    circumferences_m: list[float]

    def to_json(self) -> dict:
        return {"residual_length_mesh_m": round(self.residual_length_m, 6),
                "stump_volume_l": round(self.stump_volume_l, 6),
                "circumference_levels": list(self.circumference_levels),
                "circumferences_m": [round(c, 6) for c in self.circumferences_m]}


def _clip_triangle_volume(tri: np.ndarray, origin: np.ndarray, normal: np.ndarray) -> float:
    """Signed volume of the tetrahedra (origin, clipped triangle) for the part of `tri` with <x - o, n> >= 0."""
    d = (tri - origin) @ normal
    above = d >= 0
    if above.all():
        polys = [tri]
    elif not above.any():
        return 0.0
    else:  # clip the triangle to the half-space: Sutherland-Hodgman on three vertices
        pts = []
        for i in range(3):
            a, b, da, db = tri[i], tri[(i + 1) % 3], d[i], d[(i + 1) % 3]
            if da >= 0:
                pts.append(a)
            if (da >= 0) != (db >= 0):
                pts.append(a + (b - a) * (da / (da - db)))
        polys = [np.array([pts[0], pts[k], pts[k + 1]]) for k in range(1, len(pts) - 1)]
    total = 0.0
    for p in polys:
        total += np.dot(p[0] - origin, np.cross(p[1] - origin, p[2] - origin)) / 6.0
    return total


def section_length(verts: np.ndarray, faces: np.ndarray, point: np.ndarray, normal: np.ndarray) -> float:
    """Length of the intersection of the triangles with the plane (point, normal)."""
    tri = verts[faces]
    d = (tri - point) @ normal
    total = 0.0
    crossing = (d.min(axis=1) < 0) & (d.max(axis=1) > 0)
    for t, dd in zip(tri[crossing], d[crossing]):
        pts = []
        for i in range(3):
            da, db = dd[i], dd[(i + 1) % 3]
            if (da < 0) != (db < 0):
                pts.append(t[i] + (t[(i + 1) % 3] - t[i]) * (da / (da - db)))
        if len(pts) == 2:
            total += float(np.linalg.norm(pts[1] - pts[0]))
    return total


def measure_limb(verts: np.ndarray, faces: np.ndarray, limb_faces: np.ndarray, upstream: np.ndarray,
                 axis: np.ndarray, levels: tuple[float, ...] = (0.25, 0.5, 0.75)) -> LimbMeasurements:
    """Measure one residual limb. `limb_faces` selects the faces of the residual segment and its cap."""
    verts, faces = np.asarray(verts, float), np.asarray(faces)
    normal = np.asarray(axis, float) / np.linalg.norm(axis)
    upstream = np.asarray(upstream, float)
    limb = faces[np.asarray(limb_faces, bool)]
    if len(limb) == 0:
        raise ValueError("no limb faces to measure")
    limb_verts = verts[np.unique(limb)]
    length = float(((limb_verts - upstream) @ normal).max())
    volume = sum(_clip_triangle_volume(verts[f], upstream, normal) for f in limb)
    circumferences = [section_length(verts, limb, upstream + f * length * normal, normal) for f in levels]
    return LimbMeasurements(length, abs(volume) * 1000.0, tuple(levels), circumferences)
