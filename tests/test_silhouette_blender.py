"""The sidebar's "Use photo silhouette": the Fit operator uses the mask beside the keypoints (or the one named in
the panel), the avatar says which, unticking it fits the keypoints alone, and a bad mask file is one error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import bpy
import numpy as np
import pytest
import torch

from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.image import write_png
from resihmr_blender.core.raster import silhouette

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo"


pytestmark = pytest.mark.usefixtures("registered_addon")


@pytest.fixture()
def folder(tmp_path):
    """The demo's photo and keypoints, with the true body's mask at a quarter size as keypoints_mask.png."""
    for name in ("photo_synthetic.png", "keypoints.json"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    truth = json.loads((EXAMPLE / "ground_truth.json").read_text())
    model = load_body_model()
    params = {k: torch.tensor(np.asarray(v, np.float64)[None], dtype=model.dtype) for k, v in truth["params"].items()
              if k in ("betas", "global_orient", "body_pose", "transl")}
    with torch.no_grad():
        verts = model.forward(**params).vertices[0].numpy()
    focal = json.loads((EXAMPLE / "keypoints.json").read_text())["camera"]["focal_length_px"]
    mask = silhouette(verts, model.faces, Camera(270, 480, focal / 4, (135.0, 240.0)))
    write_png(tmp_path / "keypoints_mask.png", mask.astype(np.uint8) * 255)
    return tmp_path


def _avatar(scene):
    return next(o for o in scene.objects if o.get("resihmr_avatar") and o.type == "MESH")


def test_the_fit_uses_the_photo_silhouette_when_ticked(folder):
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    bpy.ops.resihmr.load_photo(filepath=str(folder / "photo_synthetic.png"))
    bpy.ops.resihmr.load_keypoints(filepath=str(folder / "keypoints.json"))
    assert scene.resihmr.use_silhouette  # on by default: used whenever a mask is there
    assert bpy.ops.resihmr.fit() == {"FINISHED"}
    avatar = _avatar(scene)
    assert avatar.resihmr.silhouette_source.endswith("keypoints_mask.png")
    person = json.loads(avatar.resihmr.result_json)["people"][0]
    assert person["silhouette"]["used"] and set(person["silhouette"]["limbs"]) == {"right_transradial",
                                                                                   "left_transtibial"}
    scene.resihmr.use_silhouette = False
    assert bpy.ops.resihmr.fit() == {"FINISHED"}
    avatar = _avatar(scene)
    assert avatar.resihmr.silhouette_source == ""
    assert json.loads(avatar.resihmr.result_json)["people"][0]["silhouette"] == {"used": False}
    # a mask named in the panel that is not the photo's shape: the fit refuses it, naming the file
    scene.resihmr.use_silhouette = True
    write_png(folder / "square.png", (np.arange(64)[None, :] > 30).repeat(64, 0).astype(np.uint8) * 255)
    scene.resihmr.mask_path = str(folder / "square.png")
    with pytest.raises(RuntimeError, match="square.png.*not the shape"):
        bpy.ops.resihmr.fit()
