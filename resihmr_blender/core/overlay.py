"""The two pictures people check first, without Blender: the fitted body over the photo, and its silhouette.

overlay: the reconstructed (cut and sealed) bodies from the fitted camera over the photo, residual limbs red,
input keypoints green, residual endpoints yellow, fitted keypoints that drove the fit blue.
mask: the binary silhouette of the final meshes, the same size as the image (the paper's mIoU input).
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
from .raster import draw_points, shaded, silhouette


def overlay_picture(camera: Camera, people, results, meshes, background: np.ndarray | None = None) -> np.ndarray:
    if background is not None and background.shape[:2] != (camera.height, camera.width):
        background = None  # a photo of another size cannot be under this camera's pixels
    image = None
    for mesh in meshes:
        if mesh is None or mesh.posed_vertices is None:
            continue
        colors = np.where(mesh.residual_mask[mesh.faces].all(axis=1)[:, None], [RESIDUAL_RGB8], [SKIN_RGB8])
        image = shaded(mesh.posed_vertices, mesh.faces, camera,
                       background=image if image is not None else background, face_colors=colors, alpha=0.7)
    if image is None:
        image = np.full((camera.height, camera.width, 3), BACKGROUND_GREY8, np.uint8) if background is None else \
            background[..., :3].copy()
    for person, res in zip(people, results):
        draw_points(image, person.body25[person.body25[:, 2] > 0, :2], INPUT_KEYPOINT_RGB8, radius=6)
        draw_points(image, person.residual[person.residual[:, 2] > 0, :2], ENDPOINT_RGB8, radius=8)
        if hasattr(res, "body25_2d"):
            draw_points(image, res.body25_2d[res.fit.used], FITTED_KEYPOINT_RGB8, radius=4)
    return image


def mask_picture(camera: Camera, meshes) -> np.ndarray:
    mask = np.zeros((camera.height, camera.width), bool)
    for mesh in meshes:
        if mesh is not None and mesh.posed_vertices is not None:
            mask |= silhouette(mesh.posed_vertices, mesh.faces, camera)
    return mask
