"""Measurements on meshes with known answers: a closed cylinder and a cut body limb."""
from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from resihmr_blender.core.measure import measure_limb, section_length


def cylinder(radius=0.05, height=0.3, sections=256):
    mesh = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    verts = np.asarray(mesh.vertices) + [0.0, 0.0, height / 2]  # base at z = 0, tip at z = height
    return verts, np.asarray(mesh.faces)


def test_cut_cylinder_has_known_length_volume_and_circumferences():
    r, h = 0.05, 0.3
    verts, faces = cylinder(r, h)
    m = measure_limb(verts, faces, np.ones(len(faces), bool), upstream=np.zeros(3), axis=np.array([0, 0, 1.0]))
    assert m.residual_length_m == pytest.approx(h, rel=1e-6)
    assert m.stump_volume_l == pytest.approx(math.pi * r * r * h * 1000, rel=1e-3)
    for c in m.circumferences_m:
        assert c == pytest.approx(2 * math.pi * r, rel=1e-3)


def test_volume_counts_only_beyond_the_plane():
    r, h = 0.04, 0.4
    verts, faces = cylinder(r, h)
    # the plane through z = 0.1: only 0.3 m of the cylinder lies beyond it
    m = measure_limb(verts, faces, np.ones(len(faces), bool), upstream=np.array([0, 0, 0.1]),
                     axis=np.array([0, 0, 1.0]))
    assert m.stump_volume_l == pytest.approx(math.pi * r * r * 0.3 * 1000, rel=1e-3)
    assert m.residual_length_m == pytest.approx(0.3, rel=1e-6)


def test_a_cone_has_shrinking_circumferences():
    mesh = trimesh.creation.cone(radius=0.06, height=0.3, sections=256)
    verts, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    m = measure_limb(verts, faces, np.ones(len(faces), bool), upstream=np.zeros(3), axis=np.array([0, 0, 1.0]))
    expected = [2 * math.pi * 0.06 * (1 - f) for f in (0.25, 0.5, 0.75)]
    assert np.allclose(m.circumferences_m, expected, rtol=2e-3)
    assert m.stump_volume_l == pytest.approx(math.pi * 0.06**2 * 0.3 / 3 * 1000, rel=2e-3)


def test_section_of_a_plane_missing_the_mesh_is_zero():
    verts, faces = cylinder()
    assert section_length(verts, faces, np.array([0, 0, 5.0]), np.array([0, 0, 1.0])) == 0.0
