"""The issue's check, as a user coming from OpenPose would run it: a folder laid out the way OpenPose writes it
(`<stem>_keypoints.json` beside `<stem>.jpg`), real files, no flags. Every file gives its outputs or a one-line
reason; bodies are near and of human proportions; the overlay is drawn over the real photo."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from resihmr_blender.cli import main
from resihmr_blender.core.image import read_image

DATA = Path(__file__).parent / "data"
STEM = "pexels-anete-lusina-4793258"


def test_a_real_openpose_folder_with_no_flags(tmp_path, capsys):
    folder = tmp_path / "openpose_output"
    folder.mkdir()
    # the real photo (downsized) beside its real OpenPose keypoints (scaled to it), as OpenPose names them
    shutil.copy(DATA / "real_openpose" / "derived_prohmr_427x640_keypoints.json", folder / f"{STEM}_keypoints.json")
    shutil.copy(DATA / "real_photos" / "lunge_pexels.jpg", folder / f"{STEM}.jpg")
    # OpenPose 1.0 output of two people with no photo and no size: refused with the reason, the others go on
    shutil.copy(DATA / "real_openpose" / "hmr_random_keypoints.json", folder / "random_keypoints.json")
    out = tmp_path / "out"
    status = main(["run", str(folder), "--out", str(out)])
    printed = capsys.readouterr()
    assert status == 1  # documented: 1 when some file failed
    errors = [line for line in printed.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "random_keypoints.json" in errors[0] and "image size unknown" in errors[0]
    assert "Traceback" not in printed.err
    done = out / f"{STEM}_keypoints"  # DIR/<the file's stem>
    result = json.loads((done / "result.json").read_text())
    assert result["image"]["width"] == 427 and result["image"]["height"] == 640  # from the photo beside it
    for person in result["people"]:
        assert person["plausible"], person["problems"]  # human height and bone lengths, a sane distance
        assert person["distance_m"] < 30.0
    # the overlay is the photo where the body is not: the corners agree with the JPEG pixel for pixel (±2)
    photo = read_image(folder / f"{STEM}.jpg")[..., :3].astype(int)
    overlay = read_image(done / "overlay.png")[..., :3].astype(int)
    assert overlay.shape == photo.shape
    for rows, cols in ((slice(0, 40), slice(0, 40)), (slice(-40, None), slice(-40, None))):
        assert np.abs(overlay[rows, cols] - photo[rows, cols]).max() <= 2
    assert (np.abs(overlay - photo).sum(axis=2) > 60).mean() > 0.02  # and the body is drawn over it
    mask = read_image(done / "mask.png")
    assert mask.shape[:2] == photo.shape[:2] and 0.02 < (mask[..., 0] > 0).mean() < 0.6
