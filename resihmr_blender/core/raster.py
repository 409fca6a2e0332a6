"""Rasterise a mesh through the camera without Blender: silhouette masks (IoU) and shaded previews.

Each triangle is sampled on a barycentric grid dense enough (< 0.7 px between samples) to cover every pixel
it overlaps, and the samples are splatted into the image with a depth test. Accurate to about half a pixel
along silhouette edges, which is what mask IoU needs; Blender's Workbench does the pretty overlay.
"""
from __future__ import annotations

import numpy as np

from .camera import Camera
from .colours import DEFAULT_FACE_RGB8

_GRIDS: dict[int, np.ndarray] = {}


def _barycentric_grid(n: int) -> np.ndarray:
    if n not in _GRIDS:
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = i + j <= n
        a, b = i[keep] / n, j[keep] / n
        _GRIDS[n] = np.stack([1 - a - b, a, b], axis=1)
    return _GRIDS[n]


def splat(verts_cam: np.ndarray, faces: np.ndarray, camera: Camera, max_samples: int = 4_000_000):
    """Depth-tested splat. Returns (covered bool HxW, index into `faces` per pixel (-1 = background))."""
    width, height = camera.width, camera.height
    front = verts_cam[:, 2] > 1e-3
    uv = camera.project_np(np.where(front[:, None], verts_cam, 1.0))
    tri = uv[faces]  # (F, 3, 2)
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    # keep triangles in front of the camera that overlap the image
    keep = front[faces].all(axis=1) & (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] < width) & (lo[:, 1] < height)
    face_ids = np.nonzero(keep)[0]
    faces, tri = faces[keep], tri[keep]
    edge = np.max(np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2), axis=1)
    subdiv = np.clip(np.ceil(edge / 0.7).astype(int), 1, 400)
    depth_of = verts_cam[:, 2]
    zbuf = np.full(height * width, np.inf)
    fbuf = np.full(height * width, -1, dtype=np.int64)
    for n in np.unique(subdiv):
        sel = np.nonzero(subdiv == n)[0]
        grid = _barycentric_grid(int(n))
        step = max(1, max_samples // len(grid))
        for start in range(0, len(sel), step):
            part = sel[start:start + step]
            pts = np.einsum("sk,fkd->fsd", grid, tri[part])  # (f, s, 2)
            z = np.einsum("sk,fk->fs", grid, depth_of[faces[part]])
            px = np.floor(pts).astype(np.int64)
            ok = (px[..., 0] >= 0) & (px[..., 0] < width) & (px[..., 1] >= 0) & (px[..., 1] < height)
            flat = (px[..., 1] * width + px[..., 0])[ok]
            zs = z[ok]
            fid = np.broadcast_to(face_ids[part][:, None], ok.shape)[ok]
            order = np.lexsort((zs, flat))  # nearest sample first per pixel
            flat, zs, fid = flat[order], zs[order], fid[order]
            first = np.ones(len(flat), bool)
            first[1:] = flat[1:] != flat[:-1]
            flat, zs, fid = flat[first], zs[first], fid[first]
            closer = zs < zbuf[flat]
            zbuf[flat[closer]] = zs[closer]
            fbuf[flat[closer]] = fid[closer]
    return np.isfinite(zbuf).reshape(height, width), fbuf.reshape(height, width)


def silhouette(verts_cam: np.ndarray, faces: np.ndarray, camera: Camera) -> np.ndarray:
    """Binary mask (H, W) of the mesh seen through the camera."""
    return splat(verts_cam, faces, camera)[0]


def shaded(verts_cam: np.ndarray, faces: np.ndarray, camera: Camera, background: np.ndarray | None = None,
           face_colors: np.ndarray | None = None, alpha: float = 0.85) -> np.ndarray:
    """RGB uint8 preview: faces lit from the camera, optionally coloured per face, over a background."""
    covered, face_index = splat(verts_cam, faces, camera)
    height, width = covered.shape
    if background is None:
        image = np.full((height, width, 3), 235.0)
    else:
        image = background[..., :3].astype(np.float64).copy()
    tri = verts_cam[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    view = -tri.mean(axis=1)
    view /= np.linalg.norm(view, axis=1, keepdims=True) + 1e-12
    light = 0.25 + 0.75 * np.abs((normal * view).sum(axis=1))
    if face_colors is None:
        colors = np.tile(np.array(DEFAULT_FACE_RGB8, dtype=np.float64), (len(faces), 1))
    else:
        colors = np.asarray(face_colors, dtype=np.float64)
    fi = face_index[covered]
    image[covered] = (1 - alpha) * image[covered] + alpha * colors[fi] * light[fi, None]
    return image.clip(0, 255).astype(np.uint8)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same size."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def draw_points(image: np.ndarray, points: np.ndarray, color, radius: int = 4) -> None:
    """Filled discs in place (clipped to the image)."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = xx**2 + yy**2 <= radius**2
    for x, y in np.asarray(points, dtype=np.float64):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        cx, cy = int(round(x)), int(round(y))
        ys, xs = cy + yy[disc], cx + xx[disc]
        ok = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        image[ys[ok], xs[ok]] = color
