"""Cut and seal geometry (core/stump.py) on the embedded body: watertight, oriented, convex caps, rig data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from resihmr_blender.core.body_model import JOINT_INDEX, load_body_model
from resihmr_blender.core.residuals import RESIDUALS, residual_by_name
from resihmr_blender.core.stump import (
    StumpError,
    cut_and_seal,
    cut_plane,
    dominant_joint,
    limb_parts,
    removed_vertices,
    residual_segment,
)


@pytest.fixture(scope="module")
def model():
    return load_body_model(dtype=torch.float64)


def body(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    betas = torch.randn(1, 10, generator=g, dtype=torch.float64)
    out = model.forward(betas=betas)  # rest (T) pose: the live object is cut in its rest space
    return out.vertices[0].numpy(), out.joints[0].numpy()


def seal(model, verts, joints, weights, faces, kind_name, lam):
    kind = residual_by_name(kind_name)
    plane = cut_plane(joints[JOINT_INDEX[kind.anchor_joint]], joints[JOINT_INDEX[kind.upstream_joint]], lam)
    removed = removed_vertices(verts, weights, kind, plane)
    segment, distal = limb_parts(kind)
    region = np.isin(dominant_joint(weights), [segment, *distal])
    return cut_and_seal(verts, faces, removed, region, plane), plane, region


def check_closed(verts, faces):
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    area = np.linalg.norm(np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]]),
                          axis=1) / 2
    assert area.min() > 1e-10, "degenerate face"


def check_convex_cap(result, new_verts):
    cap = np.unique(result.faces[result.cap_face_start:])
    n_kept = int(result.keep.sum())
    new = cap[cap >= n_kept]
    rim_heights = (new_verts[np.arange(n_kept)][np.isin(np.arange(n_kept), cap)] - result.plane_point) \
        @ result.plane_normal
    heights = (new_verts[new] - result.plane_point) @ result.plane_normal
    # every new cap vertex lies beyond the plane through the rim's furthest point, the whole rim on this side
    assert heights.min() > 0 and rim_heights.max() <= 1e-9
    # every ring projects to a convex polygon around the apex
    m = len(result.boundary_loop)
    u = np.cross(result.plane_normal, [1.0, 0.0, 0.0] if abs(result.plane_normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(result.plane_normal, u)
    for start in range(0, len(result.new_vertices) - 1, m):
        ring = result.new_vertices[start:start + m] - result.plane_point
        p = np.stack([ring @ u, ring @ v], axis=1)
        edge = np.roll(p, -1, axis=0) - p
        turn = edge[:, 0] * np.roll(edge, -1, axis=0)[:, 1] - edge[:, 1] * np.roll(edge, -1, axis=0)[:, 0]
        assert (turn > -1e-12).all() or (turn < 1e-12).all(), "cap ring is not convex"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", [k.name for k in RESIDUALS])
def test_every_kind_and_level_seals_watertight(model, kind, seed):
    verts, joints = body(model, seed)
    weights, faces = model.weights.numpy(), model.faces
    for lam in (0.05, 0.3, 0.7, 0.95):
        result, plane, region = seal(model, verts, joints, weights, faces, kind, lam)
        new_verts = result.vertices(verts)
        check_closed(new_verts, result.faces)
        kept_limb = result.keep & region
        assert (plane.signed_distance(verts[kept_limb]) <= 1e-9).all(), "limb vertex left beyond the cut"
        check_convex_cap(result, new_verts)
        # interpolated rig data: weights still sum to one, and no vertex follows a removed joint
        new_weights = result.interpolate(weights)
        assert np.allclose(new_weights.sum(axis=1), 1.0)
        _, distal = limb_parts(kind)
        assert new_weights[:, distal].max() < 0.5  # the residual segment, not the distal part, drives them


def test_one_to_four_limbs_on_one_body(model):
    verts, joints = body(model, 3)
    weights, faces = model.weights.numpy(), model.faces
    extra = np.arange(len(verts), dtype=float)[:, None]  # any per-vertex data rides along
    for kind, lam in (("left_transtibial", 0.4), ("right_transhumeral", 0.6), ("right_transfemoral", 0.3),
                      ("left_transradial", 0.8)):
        result, _, _ = seal(model, verts, joints, weights, faces, kind, lam)
        verts, faces = result.vertices(verts), result.faces
        weights, extra = result.interpolate(weights), result.interpolate(extra)
        check_closed(verts, faces)
    assert len(verts) == len(weights) == len(extra)


def test_residual_segment_is_what_remains_of_the_segment(model):
    verts, joints = body(model, 0)
    weights = model.weights.numpy()
    kind = residual_by_name("left_transfemoral")
    plane = cut_plane(joints[JOINT_INDEX["left_knee"]], joints[JOINT_INDEX["left_hip"]], 0.5)
    removed = removed_vertices(verts, weights, kind, plane)
    red = residual_segment(verts, weights, kind, removed, plane)
    assert red.sum() > 50 and not (red & removed).any()
    assert np.isin(dominant_joint(weights)[red], [JOINT_INDEX["left_hip"], JOINT_INDEX["pelvis"]]).all()
    hip, knee = joints[JOINT_INDEX["left_hip"]], joints[JOINT_INDEX["left_knee"]]
    assert ((verts[red] - hip) @ (knee - hip) > 0).all()  # all below the hip joint, along the thigh


def test_plane_that_misses_the_limb_is_refused(model):
    verts, joints = body(model, 0)
    weights = model.weights.numpy()
    kind = residual_by_name("left_transtibial")
    far = cut_plane(joints[JOINT_INDEX["left_ankle"]] + [0, -5.0, 0], joints[JOINT_INDEX["left_knee"]] + [0, -5.0, 0],
                    0.5)
    segment, _ = limb_parts(kind)
    removed = (dominant_joint(weights) == segment) & (far.signed_distance(verts) > 0)
    with pytest.raises(StumpError, match="misses the limb"):
        cut_and_seal(verts, model.faces, removed, dominant_joint(weights) == segment, far)


def test_lambda_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="outside"):
        cut_plane(np.zeros(3), np.ones(3), 1.2)
