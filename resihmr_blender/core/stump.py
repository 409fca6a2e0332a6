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
from .keypoints import ResidualKind, residual_by_name


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
    return CutPlane(point=anchor + lam * (upstream - anchor), normal=axis / length)


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


def residual_segment(weights: np.ndarray, kind: ResidualKind | str, removed: np.ndarray) -> np.ndarray:
    """The vertices of the residual segment that remain (the red part of the paper's figures)."""
    segment, _ = limb_parts(kind)
    return (dominant_joint(weights) == segment) & ~removed
