"""The photo's silhouette (core/silhouette.py): reading masks, the distance transform, the silhouette stage of the
fit, a residual limb's tilt from its outline, and what reaches result.json and the command line."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import foreign
from resihmr_blender.cli import main
from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.fit import fit_people
from resihmr_blender.core.image import write_png
from resihmr_blender.core.keypoints import KeypointsFile
from resihmr_blender.core.keypoints_io import read_keypoints, write_keypoints
from resihmr_blender.core.pipeline import PersonFailure, Reconstruction, reconstruct, run, run_many
from resihmr_blender.core.raster import mask_iou, silhouette
from resihmr_blender.core.result_json import person_json
from resihmr_blender.core.settings import Settings
from resihmr_blender.core.silhouette import (
    MaskError,
    PersonMask,
    SilhouetteConfig,
    distance_to,
    limb_cue,
    mask_beside,
    read_mask,
    refine_fits,
)

QUARTER = 0.25
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo"


@pytest.fixture(scope="module")
def model():
    return load_body_model()


@pytest.fixture(scope="module")
def cases():
    return foreign.load_cases()


def quarter(camera: Camera) -> Camera:
    return Camera(round(camera.width * QUARTER), round(camera.height * QUARTER), camera.focal_length * QUARTER,
                  (camera.principal_point[0] * QUARTER, camera.principal_point[1] * QUARTER))


def true_mask(case) -> PersonMask:
    return PersonMask(case.mask.astype(np.float32), "benchmark:foreign")


# ---------------------------------------------------------------------------------------------------------------
# Masks in


def test_distance_transform_is_exact():
    rng = np.random.default_rng(3)
    inside = rng.uniform(size=(23, 31)) > 0.93
    ys, xs = np.nonzero(inside)
    yy, xx = np.mgrid[:23, :31]
    brute = np.sqrt((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2).min(-1)
    assert np.allclose(distance_to(inside), brute)


def test_mask_files_are_read_or_refused_on_one_line(tmp_path):
    ok = np.zeros((100, 60), np.uint8)
    ok[20:80, 20:40] = 255
    write_png(tmp_path / "photo_mask.png", ok)
    mask = read_mask(tmp_path / "photo_mask.png", 600, 1000)  # a tenth of the photo: a uniform scale
    assert mask.pixels.shape == (100, 60) and mask.pixels.max() == 1.0 and mask.source.startswith("file:")
    assert mask.scale_for(Camera(600, 1000, 1000.0)) == pytest.approx(0.1)
    # a cut-out with transparency: the alpha channel is the mask
    rgba = np.zeros((100, 60, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[20:80, 20:40, 3] = 255
    write_png(tmp_path / "cutout.png", rgba)
    assert np.array_equal(read_mask(tmp_path / "cutout.png").pixels >= 0.5, ok >= 128)
    bad = {"empty.png": np.zeros((100, 60), np.uint8), "full.png": np.full((100, 60), 255, np.uint8)}
    for name, pixels in bad.items():
        write_png(tmp_path / name, pixels)
    (tmp_path / "text.png").write_text("not a picture")
    for name, size, words in (("empty.png", None, "no pixel"), ("full.png", None, "every pixel"),
                              ("text.png", None, "not an image"), ("photo_mask.png", (1000, 1000), "not the shape"),
                              ("missing.png", None, "no such file")):
        with pytest.raises(MaskError) as err:
            read_mask(tmp_path / name, *(size or (None, None)))
        message = str(err.value)
        assert name in message and words in message and "\n" not in message


def test_mask_beside_a_keypoints_file(tmp_path):
    (tmp_path / "anna_keypoints.json").write_text("{}")
    (tmp_path / "ben.json").write_text("{}")
    assert mask_beside(tmp_path / "anna_keypoints.json") is None
    write_png(tmp_path / "anna_mask.png", np.zeros((8, 8), np.uint8))
    write_png(tmp_path / "ben_mask.png", np.zeros((8, 8), np.uint8))
    assert mask_beside(tmp_path / "anna_keypoints.json") == tmp_path / "anna_mask.png"
    assert mask_beside(tmp_path / "ben.json") == tmp_path / "ben_mask.png"


# ---------------------------------------------------------------------------------------------------------------
# The silhouette stage


def test_silhouette_stage_brings_the_fit_onto_the_true_mask(model, cases):
    """Foreign (Anny) people: the fitted body's outline overlaps the true one more after the stage."""
    chosen = cases[:4]
    people, cameras = [c.keypoints for c in chosen], [c.fit_camera for c in chosen]
    fits = fit_people(model, people, cameras)
    refined = refine_fits(model, people, fits, [true_mask(c) for c in chosen])
    before, after = [], []
    for c, f, r in zip(chosen, fits, refined):
        small = quarter(c.fit_camera)
        for fit, out in ((f, before), (r, after)):
            with torch.no_grad():
                verts = model.forward(**{k: torch.tensor(np.asarray(v)[None], dtype=model.dtype)
                                         for k, v in fit.params().items() if k != "expression"}).vertices[0]
            out.append(mask_iou(silhouette(verts.numpy(), model.faces, small), c.mask))
        assert r.timings_s["silhouette"] > 0 and np.isfinite(r.fit_error_px)
    assert np.mean(after) > np.mean(before) + 0.01, (before, after)
    assert sum(a > b for a, b in zip(after, before)) >= 3


def test_each_person_is_its_own_problem_with_masks(model, cases):
    """A person fitted with its mask alone or beside others gets the same body and λ: the silhouette stage exactly
    (from the same keypoint fit), the whole pipeline to 1e-7 (the keypoint fit's LM solves differ by ~1e-13
    between batch sizes, and the stage's 8 rounds of L-BFGS grow that to ~1e-8; people that shared anything
    would differ by 1e-3 and more)."""
    chosen = cases[4:7]
    people, cameras = [c.keypoints for c in chosen], [c.fit_camera for c in chosen]
    masks = [true_mask(c) for c in chosen]
    fits = fit_people(model, people, cameras)
    stage_together = refine_fits(model, people, fits, masks)[1]
    stage_alone = refine_fits(model, people[1:2], fits[1:2], masks[1:2])[0]
    assert np.array_equal(stage_together.body_pose, stage_alone.body_pose)
    assert np.array_equal(stage_together.betas, stage_alone.betas)
    together = reconstruct(model, people, cameras, masks=masks)
    alone = reconstruct(model, people[1:2], cameras[1:2], masks=masks[1:2])[0]
    both = together[1]
    assert not isinstance(both, PersonFailure)
    assert np.abs(both.fit.body_pose - alone.fit.body_pose).max() < 1e-7
    assert np.abs(both.fit.betas - alone.fit.betas).max() < 1e-7
    assert [r.lam for r in both.residuals] == pytest.approx([r.lam for r in alone.residuals], abs=1e-7)


def test_a_mask_of_the_wrong_shape_is_its_files_error_not_the_batchs(model):
    """In one batch, the file whose mask is not the picture's shape gets its MaskError; the other file is fitted
    (without its mask entry being consulted) and keeps its place in the list."""
    demo = read_keypoints(str(EXAMPLE / "keypoints.json"))
    wrong = PersonMask(np.ones((10, 40), np.float32), "wrong.png")  # 4:1, the demo's photo is 9:16
    done = run_many(model, [demo, demo], Settings(), masks=[wrong, None])
    assert isinstance(done[0], MaskError) and "wrong.png" in str(done[0])
    assert isinstance(done[1], Reconstruction) and len(done) == 2


# ---------------------------------------------------------------------------------------------------------------
# A residual limb's tilt from its outline


def _tube(radius: float, length: float, segments: int = 48, rings: int = 24):
    """An open tube along +z from 0 to `length` (vertices, faces)."""
    angle = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    z = np.linspace(0, length, rings)
    verts = np.array([[radius * np.cos(a), radius * np.sin(a), zz] for zz in z for a in angle])
    faces = []
    for r in range(rings - 1):
        for s in range(segments):
            a, b = r * segments + s, r * segments + (s + 1) % segments
            faces += [[a, b, b + segments], [a, b + segments, a + segments]]
    return verts, np.array(faces)


@pytest.mark.parametrize("tilt_deg", [0.0, 30.0, 60.0])
def test_the_outline_shows_a_cut_limbs_tilt(tilt_deg):
    """A cut limb (an open tube, radius 5 cm) tilted out of the image plane: the outline's extent beyond the cut
    centre over its half-width is sin θ (cap_height 0), read from a mask at a quarter of the image."""
    camera = Camera(1000, 1000, 2000.0)
    verts, faces = _tube(0.05, 0.4)
    t = math.radians(tilt_deg)
    # the tube's axis in the y-z plane, tilted t out of the image plane; the cut end at z = 0 of the tube
    turn = np.array([[1, 0, 0], [0, math.cos(t), math.sin(t)], [0, -math.sin(t), math.cos(t)]]) @ \
        np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # tube +z -> image up (−y), then tilted
    end = np.array([0.0, 0.1, 3.0])
    posed = verts @ turn.T + end
    mask = silhouette(posed, faces, quarter(camera))
    upstream = end + turn @ np.array([0.0, 0.0, 0.4])
    cue = limb_cue(PersonMask(mask.astype(np.float32), "test"), camera, "left_transtibial",
                   camera.project_np(upstream), camera.project_np(end), camera.project_np(end), 0.05 * 2000 / 3.0)
    assert cue.sin_tilt is not None, cue.note
    assert cue.radius_px == pytest.approx(0.05 * 2000 / 3.0, rel=0.15)
    assert cue.sin_tilt == pytest.approx(math.sin(t), abs=0.12)


def test_the_true_mask_narrows_lambda_where_the_outline_shows_the_tilt(model, cases):
    """Foreign people whose limbs' outlines give a cue: with the tilt their outline shows, RAFO's λ interval is
    narrower (the outline settles part of what the tilt prior leaves open) and λ is no farther from the truth
    (the outline's cue only: the body stage is tested above). Without a mask the interval spans the λ of a low
    and a steep tilt; the cue outweighs the prior's hypotheses, so they close in."""
    chosen = [c for c in cases[:12]]
    people, cameras = [c.keypoints for c in chosen], [c.fit_camera for c in chosen]
    plain = reconstruct(model, people, cameras)
    masked = reconstruct(model, people, cameras, masks=[true_mask(c) for c in chosen],
                         silhouette=SilhouetteConfig(fit_body=False))
    err_plain, err_mask, width_plain, width_mask = [], [], [], []
    for c, p, m in zip(chosen, plain, masked):
        assert m.silhouette is not None and m.silhouette.source == "benchmark:foreign"
        lam_p, lam_m = {r.kind: r for r in p.residuals}, {r.kind: r for r in m.residuals}
        for kind, truth in c.residuals.items():
            cue = m.silhouette.cues[kind]
            if cue.sin_tilt is None:
                continue
            err_plain.append(abs(lam_p[kind].lam - truth))
            err_mask.append(abs(lam_m[kind].lam - truth))
            width_plain.append(np.subtract(*lam_p[kind].lam_interval[::-1]))
            width_mask.append(np.subtract(*lam_m[kind].lam_interval[::-1]))
    assert len(err_mask) >= 8
    assert np.mean(width_mask) < 0.9 * np.mean(width_plain), (np.mean(width_plain), np.mean(width_mask))
    assert np.mean(err_mask) <= 1.05 * np.mean(err_plain), (np.mean(err_plain), np.mean(err_mask))


# ---------------------------------------------------------------------------------------------------------------
# What reaches the user


def test_result_json_records_the_mask_and_the_cli_takes_one(model, cases, tmp_path, capsys):
    case = cases[0]
    kfile = KeypointsFile(path=None, people=[case.keypoints], image_width=case.camera.width,
                          image_height=case.camera.height, focal_length_px=case.camera.focal_length)
    rec = run(model, kfile, Settings(), mask=true_mask(case))
    entry = person_json(rec.people[0])["silhouette"]
    assert entry["used"] and entry["source"] == "benchmark:foreign" and set(entry["limbs"]) == set(case.residuals)
    off = run(model, kfile, Settings.from_values(use_silhouette=False), mask=true_mask(case))
    assert person_json(off.people[0])["silhouette"] == {"used": False}

    write_keypoints(tmp_path / "anna.json", kfile)
    write_png(tmp_path / "anna_mask.png", (case.mask * 255).astype(np.uint8))  # found beside the keypoints
    assert main(["run", str(tmp_path / "anna.json"), "--out", str(tmp_path / "out"), "--formats", "json"]) == 0
    person = json.loads((tmp_path / "out" / "anna" / "result.json").read_text())["people"][0]
    assert person["silhouette"]["used"] and person["silhouette"]["source"].endswith("anna_mask.png")
    assert main(["run", str(tmp_path / "anna.json"), "--out", str(tmp_path / "out2"), "--formats", "json",
                 "--no-silhouette"]) == 0
    assert json.loads((tmp_path / "out2" / "anna" / "result.json").read_text())["people"][0]["silhouette"] == \
        {"used": False}
    # a mask of another shape: that file fails with one line naming the mask
    write_png(tmp_path / "square.png", np.full((50, 50), 255, np.uint8) * (np.arange(50) > 25))
    capsys.readouterr()
    assert main(["run", str(tmp_path / "anna.json"), "--out", str(tmp_path / "out3"), "--formats", "json",
                 "--mask", str(tmp_path / "square.png")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "square.png" in line]
    assert len(err) == 1 and "not the shape" in err[0]
