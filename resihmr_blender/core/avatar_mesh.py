"""The reconstructed mesh of one person without Blender: rest shape -> cuts + seals -> measurements -> posed.

Used by `result.json` (measurements), masks and the benchmark's silhouette IoU; the Blender side (mesh/) does
the same cut on the live object with bmesh. Cuts are made in the rest (T-pose) space along the rest segment,
where the pose does not distort them; RAFO's pose feedback already turned the segment towards the optimised
anchor, so the posed stump lands where the photo shows it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .body_model import JOINT_INDEX, BodyModel
from .measure import LimbMeasurements, measure_limb
from .residuals import residual_by_name
from .stump import cut_limb


@dataclass
class AvatarMesh:
    rest_vertices: np.ndarray  # (N, 3) SMPL-X body frame, T-pose
    faces: np.ndarray
    weights: np.ndarray  # (N, 55)
    residual_mask: np.ndarray  # (N,) bool: residual segments and caps
    posed_vertices: np.ndarray | None = None  # (N, 3) camera frame
    measurements: dict[str, LimbMeasurements] = field(default_factory=dict)


def build_mesh(model: BodyModel, params: dict, cuts: list[tuple[str, float]], pose: bool = True) -> AvatarMesh:
    """Cut every (kind, λ) in turn on the rest mesh, measure each limb, then pose with the parameters."""
    to_t = {k: torch.tensor(np.asarray(v, dtype=np.float64)[None], dtype=model.dtype) for k, v in params.items()
            if k in ("betas", "expression", "global_orient", "body_pose", "transl")}
    with torch.no_grad():
        rest_out = model.forward(betas=to_t.get("betas"), expression=to_t.get("expression"))
        posed_out = model.forward(**to_t) if pose else None
    verts = rest_out.vertices[0].double().numpy()
    rest_joints = rest_out.rest_joints[0].double().numpy()
    faces = np.asarray(model.faces)
    weights = model.weights.double().numpy()
    posed_orig = posed_out.vertices[0].double().numpy() if pose else None
    origin = np.arange(len(verts))  # which original vertex each current vertex is (-1 for new ones)
    mask = np.zeros(len(verts), bool)
    limb_masks: dict[str, np.ndarray] = {}
    for kind_name, lam in cuts:
        kind = residual_by_name(kind_name)
        cut = cut_limb(verts, faces, weights, kind, rest_joints[JOINT_INDEX[kind.anchor_joint]],
                       rest_joints[JOINT_INDEX[kind.upstream_joint]], lam)
        sealed, n_new = cut.sealed, len(cut.sealed.new_vertices)
        verts, faces, weights = sealed.vertices(verts), sealed.faces, cut.weights
        origin = np.concatenate([origin[sealed.keep], -np.ones(n_new, np.int64)])
        mask = np.concatenate([mask[sealed.keep], np.zeros(n_new, bool)]) | cut.residual
        limb_masks = {k: np.concatenate([m[sealed.keep], np.zeros(n_new, bool)]) for k, m in limb_masks.items()}
        limb_masks[kind.name] = cut.limb_surface
    mesh = AvatarMesh(rest_vertices=verts, faces=faces, weights=weights, residual_mask=mask)
    for kind_name, _ in cuts:
        kind = residual_by_name(kind_name)
        jt, ja = rest_joints[JOINT_INDEX[kind.upstream_joint]], rest_joints[JOINT_INDEX[kind.anchor_joint]]
        limb_faces = limb_masks[kind.name][faces].all(axis=1)
        mesh.measurements[kind.name] = measure_limb(verts, faces, limb_faces, jt, ja - jt)
    if pose:
        transforms = posed_out.transforms[0].double().numpy()  # (55, 4, 4) rest -> posed (camera frame)
        blended = np.einsum("vj,jab->vab", weights, transforms)
        posed = np.einsum("vab,vb->va", blended[:, :3, :3], verts) + blended[:, :3, 3]
        if to_t.get("transl") is not None:
            posed = posed + to_t["transl"][0].double().numpy()
        kept = origin >= 0
        posed[kept] = posed_orig[origin[kept]]  # original vertices: exactly the model's forward
        mesh.posed_vertices = posed
    return mesh
