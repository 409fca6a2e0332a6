"""The two pictures people check first, without Blender: the fitted body over the photo, and its silhouette.

overlay: the reconstructed (cut and sealed) bodies from the fitted camera over the photo, residual limbs red,
input keypoints green, residual endpoints yellow, fitted keypoints that drove the fit blue.
mask: the binary silhouette of the final meshes, the same size as the image (the paper's mIoU input).
"""
from __future__ import annotations

import numpy as np

from .camera import Camera
from .raster import draw_points, shaded, silhouette

SKIN_RGB = (190.0, 200.0, 215.0)
RED_RGB = (220.0, 40.0, 40.0)


def overlay_picture(camera: Camera, people, results, meshes, background: np.ndarray | None = None) -> np.ndarray:
    if background is not None and background.shape[:2] != (camera.height, camera.width):
        background = None  # a photo of another size cannot be under this camera's pixels
    image = None
    for mesh in meshes:
        if mesh is None or mesh.posed_vertices is None:
            continue
        colors = np.where(mesh.residual_mask[mesh.faces].all(axis=1)[:, None], [RED_RGB], [SKIN_RGB])
        image = shaded(mesh.posed_vertices, mesh.faces, camera,
                       background=image if image is not None else background, face_colors=colors, alpha=0.7)
    if image is None:
        image = np.full((camera.height, camera.width, 3), 235, np.uint8) if background is None else \
            background[..., :3].copy()
    for person, res in zip(people, results):
        draw_points(image, person.body25[person.body25[:, 2] > 0, :2], (30, 160, 60), radius=6)
        draw_points(image, person.residual[person.residual[:, 2] > 0, :2], (250, 190, 0), radius=8)
        if hasattr(res, "body25_2d"):
            draw_points(image, res.body25_2d[res.fit.used], (40, 70, 200), radius=4)
    return image


def mask_picture(camera: Camera, meshes) -> np.ndarray:
    mask = np.zeros((camera.height, camera.width), bool)
    for mesh in meshes:
        if mesh is not None and mesh.posed_vertices is not None:
            mask |= silhouette(mesh.posed_vertices, mesh.faces, camera)
    return mask
