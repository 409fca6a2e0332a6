"""The two pictures people check first, without Blender: the fitted body over the photo, and its silhouette.

overlay: the reconstructed (cut and sealed) bodies from the fitted camera over the photo, residual limbs red,
input keypoints green, residual endpoints yellow, fitted keypoints that drove the fit blue.
mask: the binary silhouette of the final meshes, the same size as the image (the paper's mIoU input).

Both draw only each mesh's bounding box, the overlay at no more than OVERLAY_MESH_PIXELS scaled up, so a 24-MP
photo costs about what a 2-MP one does (raster.shaded_layer).
"""
from __future__ import annotations

import numpy as np

from .camera import Camera
from .colours import (
    BACKGROUND_GREY8,
    ENDPOINT_RGB8,
    FITTED_KEYPOINT_RGB8,
    INPUT_KEYPOINT_RGB8,
    RESIDUAL_RGB8,
    SKIN_RGB8,
)
from .raster import draw_points, shaded_layer, silhouette_in

OVERLAY_MESH_PIXELS = 1_000_000  # the mesh is drawn with at most this many pixels, then scaled up
MASK_MESH_PIXELS = 4_000_000  # the mask is exact up to a 4-MP bounding box, edges within ~2 px above
OVERLAY_ALPHA = 0.7
_ASPECT_TOLERANCE = 0.01


def fit_background(background: np.ndarray | None, camera: Camera) -> np.ndarray | None:
    """The photo as the camera's (H, W, 3) uint8 pixels: as is when the sizes agree, resized when only the
    scale differs (keypoints found on a downscaled copy), None when the shape differs (another photo)."""
    if background is None:
        return None
    height, width = background.shape[:2]
    if (height, width) == (camera.height, camera.width):
        return np.ascontiguousarray(background[..., :3])
    if abs(width / height - camera.width / camera.height) > _ASPECT_TOLERANCE * camera.width / camera.height:
        return None
    from PIL import Image

    resized = Image.fromarray(np.ascontiguousarray(background[..., :3])).resize((camera.width, camera.height),
                                                                                Image.BILINEAR)
    return np.asarray(resized)


def point_radius(camera: Camera, base: int) -> int:
    """Keypoint disc radius: `base` px on a 1-MP image, growing with the image so discs stay visible on 24 MP."""
    return max(base, int(round(base * np.sqrt(camera.width * camera.height / 1e6) / 1.5)))


def overlay_picture(camera: Camera, people, results, meshes, background: np.ndarray | None = None) -> np.ndarray:
    background = fit_background(background, camera)
    if background is None:
        image = np.full((camera.height, camera.width, 3), BACKGROUND_GREY8, np.uint8)
    else:
        image = np.array(background, dtype=np.uint8, copy=True)
    for mesh in meshes:
        if mesh is None or mesh.posed_vertices is None:
            continue
        colors = np.where(mesh.residual_mask[mesh.faces].all(axis=1)[:, None], [RESIDUAL_RGB8], [SKIN_RGB8])
        layer = shaded_layer(mesh.posed_vertices, mesh.faces, camera, face_colors=colors,
                             max_pixels=OVERLAY_MESH_PIXELS)
        if layer is None:
            continue
        (x0, y0), rgba = layer
        region = image[y0:y0 + rgba.shape[0], x0:x0 + rgba.shape[1]]
        covered = rgba[..., 3] > 0  # blend only where the mesh is: a fraction of its bounding box
        alpha = (rgba[..., 3][covered].astype(np.float32) * (OVERLAY_ALPHA / 255.0))[:, None]
        under = region[covered].astype(np.float32)
        region[covered] = (under + (rgba[..., :3][covered] - under) * alpha + 0.5).astype(np.uint8)
    for person, res in zip(people, results):
        draw_points(image, person.body25[person.body25[:, 2] > 0, :2], INPUT_KEYPOINT_RGB8,
                    radius=point_radius(camera, 6))
        draw_points(image, person.residual[person.residual[:, 2] > 0, :2], ENDPOINT_RGB8,
                    radius=point_radius(camera, 8))
        if hasattr(res, "body25_2d"):
            draw_points(image, res.body25_2d[res.fit.used], FITTED_KEYPOINT_RGB8, radius=point_radius(camera, 4))
    return image


def mask_picture(camera: Camera, meshes) -> np.ndarray:
    mask = np.zeros((camera.height, camera.width), bool)
    for mesh in meshes:
        if mesh is not None and mesh.posed_vertices is not None:
            mask |= silhouette_in(mesh.posed_vertices, mesh.faces, camera, MASK_MESH_PIXELS)
    return mask
