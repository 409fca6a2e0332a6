"""Rasterise a mesh through the camera without Blender: silhouette masks (IoU) and shaded previews.

Each triangle is sampled on a barycentric grid dense enough (< 0.7 px between samples) to cover every pixel
it overlaps, and the samples are splatted into the image with a depth test. Accurate to about half a pixel
along silhouette edges, which is what mask IoU needs; Blender's Workbench does the pretty overlay.

The cost grows with the pixels the mesh covers, so large photos (24 MP) are drawn through `crop_camera`: only the
mesh's bounding box, at a resolution capped to a pixel budget, then scaled up (`shaded_layer`, `silhouette_in`).
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
    samples = []  # (pixel, depth, face) of every sample inside the image; nearest per pixel kept below
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
            np.minimum.at(zbuf, flat, zs)  # the depth test, without sorting the samples
            samples.append((flat, zs, np.broadcast_to(face_ids[part][:, None], ok.shape)[ok]))
    for flat, zs, fid in samples:
        nearest = zs == zbuf[flat]
        fbuf[flat[nearest]] = fid[nearest]
    return np.isfinite(zbuf).reshape(height, width), fbuf.reshape(height, width)


def crop_camera(verts_cam: np.ndarray, camera: Camera, max_pixels: int | None = None
                ) -> tuple[Camera, tuple[int, int, int, int], float] | None:
    """A camera that sees only the mesh's bounding box in the image, (x0, y0, x1, y1), at scale s <= 1 so that it
    has at most `max_pixels` pixels; None when no vertex in front of the camera projects into the image."""
    front = verts_cam[:, 2] > 1e-3
    if not front.any():
        return None
    uv = camera.project_np(verts_cam[front])
    x0, y0 = np.floor(uv.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), camera.width), min(int(y1), camera.height)
    if x1 <= x0 or y1 <= y0:
        return None
    width, height = x1 - x0, y1 - y0
    scale = 1.0 if max_pixels is None else min(1.0, float(np.sqrt(max_pixels / (width * height))))
    cx, cy = camera.principal_point
    sub = Camera(max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale))),
                 camera.focal_length * scale, principal_point=((cx - x0) * scale, (cy - y0) * scale))
    return sub, (x0, y0, x1, y1), scale


def _face_light(verts_cam: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-face brightness, lit from the camera: 0.25 ambient + 0.75 |cos| between normal and view ray."""
    tri = verts_cam[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    view = -tri.mean(axis=1)
    view /= np.linalg.norm(view, axis=1, keepdims=True) + 1e-12
    return 0.25 + 0.75 * np.abs((normal * view).sum(axis=1))


def shaded_layer(verts_cam: np.ndarray, faces: np.ndarray, camera: Camera, face_colors: np.ndarray | None = None,
                 max_pixels: int = 2_000_000):
    """The shaded mesh alone, over its bounding box: ((x0, y0), RGBA uint8 (h, w, 4), alpha = coverage) at the
    camera's full resolution, or None when the mesh is not in view. Drawn with at most `max_pixels`
    pixels and scaled up (bilinear, coverage premultiplied) when the box is larger: the edges are then soft over
    a few pixels of a 24-MP photo, which nobody sees, and the time stays that of a 2-MP picture."""
    crop = crop_camera(verts_cam, camera, max_pixels)
    if crop is None:
        return None
    sub, (x0, y0, x1, y1), scale = crop
    covered, face_index = splat(verts_cam, faces, sub)
    if face_colors is None:
        colors = np.tile(np.array(DEFAULT_FACE_RGB8, dtype=np.float32), (len(faces), 1))
    else:
        colors = np.asarray(face_colors, dtype=np.float32)
    shade = colors * _face_light(verts_cam, faces).astype(np.float32)[:, None]
    rgba = np.zeros(covered.shape + (4,), np.uint8)
    rgba[covered, :3] = shade[face_index[covered]].clip(0, 255).round().astype(np.uint8)
    rgba[covered, 3] = 255
    width, height = x1 - x0, y1 - y0
    if (rgba.shape[1], rgba.shape[0]) != (width, height):
        from PIL import Image

        box = (0.0, 0.0, width * scale, height * scale)  # the sub camera's pixels that the box covers
        rgba = np.asarray(Image.fromarray(rgba, "RGBA").resize((width, height), Image.BILINEAR, box=box))
    return (x0, y0), rgba


def silhouette_in(verts_cam: np.ndarray, faces: np.ndarray, camera: Camera, max_pixels: int | None = None
                  ) -> np.ndarray:
    """Like :func:`silhouette`, rasterising only the mesh's bounding box (and, with `max_pixels`, at a capped
    resolution scaled up: edges within a pixel or two of a large photo's)."""
    mask = np.zeros((camera.height, camera.width), bool)
    crop = crop_camera(verts_cam, camera, max_pixels)
    if crop is None:
        return mask
    sub, (x0, y0, x1, y1), scale = crop
    covered = splat(verts_cam, faces, sub)[0]
    if (covered.shape[1], covered.shape[0]) != (x1 - x0, y1 - y0):
        from PIL import Image

        box = (0.0, 0.0, (x1 - x0) * scale, (y1 - y0) * scale)
        grey = Image.fromarray(covered.astype(np.uint8) * 255, "L").resize((x1 - x0, y1 - y0), Image.BILINEAR,
                                                                            box=box)
        covered = np.asarray(grey) >= 128
    mask[y0:y1, x0:x1] = covered
    return mask


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
    light = _face_light(verts_cam, faces)
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
