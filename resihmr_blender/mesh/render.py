"""The overlay people check first, rendered by Blender's Workbench (fast): the avatar from the fitted camera over
the photo, residual limbs red, the same size as the photo. The render has a transparent film; the photo is
composited under it with numpy so no compositor setup is needed."""
from __future__ import annotations

import tempfile
from pathlib import Path

import bpy
import numpy as np

from ..core.image import read_png, write_png


def render_overlay(scene, path: str | Path, photo: np.ndarray | None = None, opacity: float = 0.75) -> Path:
    if scene.camera is None:
        raise ValueError("the scene has no camera: load the photo or the keypoints first")
    render = scene.render
    saved = (render.engine, render.film_transparent, render.filepath, render.image_settings.file_format,
             render.image_settings.color_mode)
    shading = scene.display.shading
    saved_shading = (shading.light, shading.color_type)
    try:
        render.engine = "BLENDER_WORKBENCH"
        render.film_transparent = True
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGBA"
        shading.light, shading.color_type = "STUDIO", "MATERIAL"
        with tempfile.TemporaryDirectory() as tmp:
            render.filepath = str(Path(tmp) / "overlay.png")
            bpy.ops.render.render(write_still=True)
            layer = read_png(render.filepath).astype(np.float64)
    finally:
        render.engine, render.film_transparent, render.filepath = saved[:3]
        render.image_settings.file_format, render.image_settings.color_mode = saved[3:]
        shading.light, shading.color_type = saved_shading
    if layer.shape[2] == 3:
        layer = np.concatenate([layer, np.full(layer.shape[:2] + (1,), 255.0)], axis=2)
    if photo is None or photo.shape[:2] != layer.shape[:2]:
        photo = np.full(layer.shape[:2] + (3,), 235.0)
    alpha = layer[..., 3:4] / 255.0 * opacity
    image = (1 - alpha) * photo[..., :3].astype(np.float64) + alpha * layer[..., :3]
    write_png(path, image.clip(0, 255).astype(np.uint8))
    return Path(path)
