"""The photo's silhouette (issue 15 items 2-3): a person mask refines the keypoint fit and tells RAFO how far each
residual limb tilts towards the camera.

The mask reaches the core as a numpy array (`PersonMask`): MediaPipe's segmentation from `detect/` (the
`[detect]` extra), or a mask image the user gives (`read_mask`: white = person, any size that is a uniform
scale of the photo; `mask_beside` finds `<stem>_mask.png` beside a keypoints file). Nothing here imports detect/.

1. **Silhouette stage** (`refine_fits`), after the keypoint fit, before RAFO. Per person, on a crop of the mask
   around the fitted body resampled to about `work_height_px` pixels tall:
       E = E_keypoints + priors  (the fit's own objective, fit.FitObjective, last prior weights)
         + w_out · mean over mesh vertices of ρ(D_out(π(v))²)    vertices outside the mask, through the distance
                                                                   transform of the mask's outside (bilinear)
         + w_cover · mean over mask-contour samples c of ρ(|π(v_c) − c|²)   every outline point reached by its
                                                                   nearest projected vertex v_c (ICP: the
                                                                   pairs are re-chosen between rounds)
   ρ is the fit's Geman-McClure, distances are in percent of the person's 2D torso length like the keypoint
   residuals. Everything moves (orientation, translation, shape, pose). The residual limbs' own segments and
   everything distal to them are left out of both terms (their outline is RAFO's business), and so are the
   outline points those parts were nearest to at the start. Each person is its own problem (lbfgs.minimize keeps
   a history, a line search and a stop per row), solved in fixed-size chunks so that a person's result is the
   same alone or in any batch (refine_fits).
2. **The limb's tilt from its outline** (`limb_cues`): along the fitted residual segment (upstream joint ->
   annotated endpoint) the mask gives the stump's width 2r (perpendicular runs just before the endpoint) and how
   far its outline continues beyond the endpoint, e. A cylinder of radius r cut square and tilted θ out of the
   image plane shows its cut face as an ellipse whose half-extent along the limb is r·sin θ, so
       sin θ = e / r   (cap_height κ > 0: a rounded stump, e = r·sqrt(sin²θ + κ² cos²θ)).
   RAFO takes it as one more term of eq. 4 (rafo.py, `L_sil`), so λ follows: with the endpoint fixed in the
   image, the tilt decides how far away the endpoint is along its ray, hence |Jt − R| and λ. A limb whose
   outline merges with the body (width unbounded, the outline going on past the tip) gives no cue.
3. **The endpoint from the outline**: where the annotated endpoint lies off the limb, more than 1.5 radii beyond
   where its outline ends along the fitted segment, the endpoint moves back to the outline's end (less half a
   radius, a mid tilt's allowance); the limb then keeps no tilt cue and result.json's limb entry says
   `endpoint_moved_to`. (Moving it also when the outline goes on past it misfired on limbs beside the body: on
   30 foreign people 2 of 2 such moves took λ 0.3 away from the truth, so that case only drops the cue.)

No bpy here; torch and numpy only.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import lbfgs
from .body_model import JOINT_INDEX, BodyModel
from .camera import Camera
from .fit import FitConfig, FitObjective, PersonFit, _project, keypoint_weights
from .keypoints import Person
from .residuals import RESIDUALS, residual_by_name
from .stump import descendants, dominant_joint

MASK_SUFFIX = "_mask.png"


class MaskError(ValueError):
    """A mask that cannot be used; the one-line message names the file (or source) and the problem."""


@dataclass
class PersonMask:
    """A person mask for one photo: values in [0, 1] (>= 0.5 = person), at the photo's size or a uniform scale of
    it (MediaPipe gives the photo's size, the benchmarks a quarter of it). `source` is what result.json records:
    "mediapipe", "file:<path>" or "benchmark:<what>"."""

    pixels: np.ndarray
    source: str

    def scale_for(self, camera: Camera) -> float:
        """Mask pixels per image pixel; a mask that is not a uniform scale of the image is refused."""
        h, w = self.pixels.shape
        sx, sy = w / camera.width, h / camera.height
        if abs(sx - sy) > 0.02 * max(sx, sy) + 1.0 / min(camera.width, camera.height):
            raise MaskError(f"{self.source}: mask is {w}x{h}, not the shape of the {camera.width}x{camera.height} "
                            "image (it must be the photo's size or a uniform scale of it)")
        return 0.5 * (sx + sy)


def check_mask(pixels, source: str) -> np.ndarray:
    """(H, W) float32 in [0, 1] from a 2D array of bools, uint8 (0-255) or floats in [0, 1]; refused otherwise."""
    arr = np.asarray(pixels)
    if arr.ndim != 2 or min(arr.shape) < 8:
        raise MaskError(f"{source}: a mask must be a 2D image at least 8x8 pixels, got shape {arr.shape}")
    if arr.dtype == bool:
        out = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
            raise MaskError(f"{source}: mask values must lie in [0, 1] (got {np.nanmin(arr):g} .. {np.nanmax(arr):g})")
        out = arr.astype(np.float32)
    else:
        raise MaskError(f"{source}: mask type {arr.dtype} is not bool, uint8 or float")
    person = float((out >= 0.5).mean())
    if person == 0.0:
        raise MaskError(f"{source}: the mask marks no pixel as person (white = person, black = background)")
    if person == 1.0:
        raise MaskError(f"{source}: the mask marks every pixel as person (white = person, black = background)")
    return out


def read_mask(path: str | Path, width: int | None = None, height: int | None = None) -> PersonMask:
    """A mask image (PNG, JPEG, ...): grey or colour brightness, or the alpha channel when it varies; white =
    person. With the photo's size given, a mask that is not a uniform scale of it is refused."""
    from .image import ImageError, read_png

    try:
        arr = read_png(path)
    except ImageError as exc:
        raise MaskError(str(exc)) from None
    channels = arr.shape[2]
    if channels in (2, 4) and arr[:, :, -1].min() != arr[:, :, -1].max():
        grey = arr[:, :, -1]  # a cut-out with transparency: the alpha is the mask
    else:
        grey = arr[:, :, :3 if channels >= 3 else 1].mean(axis=2)
    pixels = check_mask(grey.astype(np.float32) / 255.0, str(path))
    mask = PersonMask(pixels, f"file:{Path(path).resolve()}")
    if width and height:
        mask.scale_for(Camera(int(width), int(height), 1.0))
    return mask


def mask_beside(keypoints_path: str | Path | None) -> Path | None:
    """`<stem>_mask.png` beside a keypoints file (`<stem>.json` or OpenPose's `<stem>_keypoints.json`), or None."""
    if not keypoints_path:
        return None
    path = Path(keypoints_path)
    stem = path.name[:-len(".json")] if path.name.lower().endswith(".json") else path.stem
    for candidate in ([stem[:-len("_keypoints")], stem] if stem.endswith("_keypoints") else [stem]):
        found = path.parent / (candidate + MASK_SUFFIX)
        if candidate and found.is_file():
            return found
    return None


@dataclass
class SilhouetteConfig:
    enabled: bool = True  # used whenever a mask is given (Settings.silhouette); False = keypoints only
    fit_body: bool = True  # stage 1 (shape and pose from the outline)
    limb_cues: bool = True  # stages 2-3 (the residual limbs' tilt and endpoint from their outline)
    # people solved together (see refine_fits: every chunk has this many rows, a lone person padded to it). Quiet
    # machine, one thread, fit + silhouette + RAFO: one person alone 2.37 s with 8, 1.67 s with 4, 1.11 s with 1;
    # 16 people batched 0.385 s a person with 8, 0.448 s with 4 (keypoints alone: 0.062 s)
    chunk: int = 4
    work_height_px: float = 160.0  # the person's crop is resampled to about this many pixels tall
    # mesh vertices in the outside term (an even spread of the mesh) and outline samples in the cover term; first
    # 16 foreign people: 2500 / 300 gave IoU 0.843 at 1.03 s a person, 1200 / 200 0.842 at 0.60 s (load 8-10)
    vertices: int = 1200
    contour_points: int = 200
    # ICP rounds (outline pairs re-chosen), each an L-BFGS run. Measured on the first 12 foreign people (true masks
    # at 0.25 x, IoU 0.830 after the keypoint fit): 3 rounds of 8 iterations with weights 20 gave 0.833, with 100
    # 0.840; 4 of 12 with 100: 0.857; 5 of 15: 0.858. The weights trade the outline against the keypoints on a body
    # that is not ours (first 24 foreign people, 4 x 12): weight 100 IoU 0.824 -> 0.849, intact error 5.77 ->
    # 6.81 px; weight 30: 0.845 and 6.21 px. More rounds, chosen on the synthetic benchmark (seed 0, 128 people,
    # true masks at 0.25 x; IoU, intact px over all points, s per person batched, quiet machine): 4 rounds 0.8956,
    # 4.36 px, 0.35 s; 6 rounds 0.8978, 4.27 px, 0.51 s; 8 rounds 0.8991, 4.21 px, 0.67 s (the foreign people,
    # never used to choose: IoU 0.876 / 0.878 / 0.880, 4.83 / 4.76 / 4.71 px)
    rounds: int = 8
    iterations: int = 12  # L-BFGS iterations per round
    outside_weight: float = 30.0  # both silhouette terms are means, weighted like this many keypoints
    cover_weight: float = 30.0
    robust_sigma: float = 10.0  # Geman-McClure scale of the silhouette terms, percent of the torso length
    # The tilt cue: κ, the stump's rounded end in limb radii beyond the cut (0: the outline ends at the cut, as on
    # a cut body), and the term's weight in eq. 4 (1: a pixel of outline extent weighs a pixel of reprojection)
    cap_height: float = 0.0
    tilt_weight: float = 1.0
    # the tilt term is weighed by how well the outline shows the extent: its noise is one mask pixel or
    # outline_error of the radius (a limb is no exact cylinder), whichever is larger, against a keypoint's noise
    reference_noise_px: float = 3.0
    outline_error: float = 0.15


# ---------------------------------------------------------------------------------------------------------------
# Mask geometry: crops, the distance transform, outlines


def distance_to(inside: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (pixels, between pixel centres) from every pixel to the nearest True pixel:
    the nearest True pixel of each row first, then the best row per column (a brute minimum over rows)."""
    h, w = inside.shape
    if not inside.any():
        return np.full((h, w), np.inf)
    x = np.arange(w, dtype=np.float64)
    left = np.maximum.accumulate(np.where(inside, x, -np.inf), axis=1)
    right = np.minimum.accumulate(np.where(inside, x, np.inf)[:, ::-1], axis=1)[:, ::-1]
    row = np.minimum(x - left, right - x)  # (h, w), inf where the row has no True pixel
    g2 = torch.from_numpy(np.minimum(row, 1e6) ** 2)
    y = torch.arange(h, dtype=torch.float64)
    dy2 = (y[:, None] - y[None, :]) ** 2  # (h target rows, h source rows)
    out = torch.empty(h, w, dtype=torch.float64)
    step = max(1, 4_000_000 // max(h * h, 1))
    for c in range(0, w, step):
        out[:, c:c + step] = (dy2[:, :, None] + g2[None, :, c:c + step]).amin(dim=1)
    return out.sqrt().numpy()


@dataclass
class MaskView:
    """One person's crop of the mask at working resolution: work = (image px − origin) · scale."""

    inside: np.ndarray  # (h, w) bool
    outside_dist: np.ndarray  # (h, w) working px from the mask's edge, 0 inside
    contour: np.ndarray  # (M, 2) outline points (working px), not on the image's border
    origin: np.ndarray  # (2,) image px
    scale: float  # working px per image px


def person_view(mask: PersonMask, camera: Camera, box: np.ndarray, work_height_px: float) -> MaskView:
    """The mask around `box` = (x0, y0, x1, y1) image px (the fitted body with a margin), resampled so the box is
    about work_height_px tall."""
    from PIL import Image

    ms = mask.scale_for(camera)
    h_img, w_img = mask.pixels.shape
    x0, y0, x1, y1 = box
    mx0, my0 = max(int(math.floor(x0 * ms)), 0), max(int(math.floor(y0 * ms)), 0)
    mx1, my1 = min(int(math.ceil(x1 * ms)), w_img), min(int(math.ceil(y1 * ms)), h_img)
    mx1, my1 = max(mx1, mx0 + 2), max(my1, my0 + 2)
    crop = mask.pixels[my0:my1, mx0:mx1]
    factor = work_height_px / max(crop.shape[0], 1)  # working px per mask px
    size = (max(2, round(crop.shape[1] * factor)), max(2, round(crop.shape[0] * factor)))
    resample = Image.BILINEAR if factor >= 1.0 else Image.BOX
    work = np.asarray(Image.fromarray(crop.astype(np.float32), "F").resize(size, resample))
    inside = work >= 0.5
    fx, fy = size[0] / crop.shape[1], size[1] / crop.shape[0]
    scale = 0.5 * (fx + fy) * ms
    dist = np.maximum(distance_to(inside) - 0.5, 0.0)  # from pixel centres to the mask's edge
    dist[inside] = 0.0
    # outline: person pixels with a background 4-neighbour, except along the image's own border (the body goes on)
    pad = np.pad(inside, 1, mode="edge")
    edge = inside & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:])
    border = np.zeros_like(edge)
    if mx0 == 0:
        border[:, :2] = True
    if my0 == 0:
        border[:2, :] = True
    if mx1 == w_img:
        border[:, -2:] = True
    if my1 == h_img:
        border[-2:, :] = True
    ys, xs = np.nonzero(edge & ~border)
    contour = np.stack([xs + 0.5, ys + 0.5], 1).astype(np.float64)
    return MaskView(inside, dist, contour, np.array([mx0 / ms, my0 / ms]), float(scale))


def sample_bilinear(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """images (B, H, W), points (B, P, 2) in pixel coordinates (pixel j spans [j, j+1)) -> (B, P), edge values
    beyond the border. Each row reads its own image only."""
    b, h, w = images.shape
    x = (points[..., 0] - 0.5).clamp(0.0, w - 1.0)
    y = (points[..., 1] - 0.5).clamp(0.0, h - 1.0)
    x0, y0 = x.detach().floor().clamp(max=w - 2).long(), y.detach().floor().clamp(max=h - 2).long()
    fx, fy = x - x0, y - y0
    flat = images.reshape(b, -1)

    def at(yy, xx):
        return torch.gather(flat, 1, yy * w + xx)

    return ((1 - fx) * (1 - fy) * at(y0, x0) + fx * (1 - fy) * at(y0, x0 + 1)
            + (1 - fx) * fy * at(y0 + 1, x0) + fx * fy * at(y0 + 1, x0 + 1))


# ---------------------------------------------------------------------------------------------------------------
# Stage 1: shape and pose from the outline


def residual_region(model: BodyModel, person: Person) -> np.ndarray:
    """(V,) bool: vertices of the residual limbs' segments and everything distal to them (their dominant joint is
    the residual kind's upstream joint or one of its descendants)."""
    dominant = dominant_joint(model.weights.numpy())
    out = np.zeros(model.num_vertices, bool)
    for k, kind in enumerate(RESIDUALS):
        if person.residual[k, 2] > 0:
            out |= np.isin(dominant, descendants(JOINT_INDEX[kind.upstream_joint], model.parents))
    return out


def _posed_vertices(model: BodyModel, x: torch.Tensor, ids: torch.Tensor, n_betas: int) -> torch.Tensor:
    """Camera-frame positions (B, P, 3) of some mesh vertices for fit rows x = [orient | transl | betas |
    body_pose] (linear blend skinning, the model's pose correctives when it has any); ids (P,) shared by every
    row, or (B, P) per row."""
    from .rotations import axis_angle_to_matrix

    orient, transl, betas, pose = x[:, :3], x[:, 3:6], x[:, 6:6 + n_betas], x[:, 6 + n_betas:]
    batch = x.shape[0]
    per_row = ids.dim() == 2
    rot = axis_angle_to_matrix(model.full_pose(batch, orient, pose))
    rest_joints = model.rest_joints(betas, None, batch)
    dirs = model.shapedirs[ids][..., :n_betas]
    pts = model.v_template[ids] + torch.einsum("bk,bvck->bvc" if per_row else "bk,vck->bvc", betas, dirs)
    if model.posedirs is not None:
        cols = (ids[..., None] * 3 + torch.arange(3)).flatten(-2)
        feature = (rot[:, 1:] - torch.eye(3, dtype=x.dtype)).reshape(batch, -1)
        rows = model.posedirs.T[cols]  # (P*3, 486) or (B, P*3, 486)
        offset = torch.einsum("bpf,bf->bp" if per_row else "pf,bf->bp", rows, feature)
        pts = pts + offset.reshape(batch, -1, 3)
    g_rot, g_pos = model.kinematics(rot, rest_joints)
    trans = g_pos - (g_rot @ rest_joints[..., None])[..., 0]
    weights = model.weights[ids]
    blend_rot = torch.einsum("bvj,bjkl->bvkl" if per_row else "vj,bjkl->bvkl", weights, g_rot)
    blend_trans = torch.einsum("bvj,bjk->bvk" if per_row else "vj,bjk->bvk", weights, trans)
    return (blend_rot @ pts[..., None])[..., 0] + blend_trans + transl[:, None, :]


def refine_fits(model: BodyModel, people: list[Person], fits: list[PersonFit], masks: list[PersonMask | None],
                config: SilhouetteConfig | None = None, fit_config: FitConfig | None = None) -> list[PersonFit]:
    """Stage 1 for every person with a mask (the others are returned as they are), all in one batch."""
    config, fit_config = config or SilhouetteConfig(), fit_config or FitConfig()
    todo = [i for i, (f, m) in enumerate(zip(fits, masks)) if m is not None and isinstance(f, PersonFit)]
    if not todo or not config.fit_body:
        return list(fits)
    t0 = time.perf_counter()
    dtype, n_betas = model.dtype, model.num_betas
    views, kps, ws, scales, excluded = [], [], [], [], []
    for i in todo:
        fit, person = fits[i], people[i]
        cam = fit.camera
        with torch.no_grad():
            verts = model.forward(**{k: torch.as_tensor(np.asarray(v, np.float64)[None], dtype=dtype)
                                     for k, v in fit.params().items() if k != "expression"}).vertices[0].numpy()
        uv = cam.project_np(verts[verts[:, 2] > 1e-3])
        lo, hi = uv.min(0), uv.max(0)
        margin = 0.15 * (hi[1] - lo[1]) + 4.0
        box = np.array([lo[0] - margin, lo[1] - margin, hi[0] + margin, hi[1] + margin])
        views.append(person_view(masks[i], cam, box, config.work_height_px))
        w = keypoint_weights(person, fit_config)
        res_w = person.residual[:, 2] * (person.residual[:, 2] >= fit_config.min_confidence)
        if not fit_config.residual_segments:
            res_w = np.zeros(8)
        kps.append(np.concatenate([person.body25[:, :2], person.residual[:, :2]]))
        ws.append(np.concatenate([w, res_w]))
        scales.append(max(fit.reference_length_px, 1.0) / 100.0)
        excluded.append(residual_region(model, person))
    n = len(todo)
    cams = [fits[i].camera for i in todo]
    focal = torch.tensor([c.focal_length for c in cams], dtype=dtype)
    centre = torch.tensor([c.principal_point for c in cams], dtype=dtype)
    scale = torch.tensor(scales, dtype=dtype)
    kp = torch.tensor(np.stack(kps), dtype=dtype)
    weights = torch.tensor(np.stack(ws), dtype=dtype)
    prior = (fit_config.pose_weights[-1], fit_config.shape_weights[-1])

    # per-person images padded to one size (a row reads only its own pixels; padding is never sampled inside)
    hmax, wmax = max(v.outside_dist.shape[0] for v in views), max(v.outside_dist.shape[1] for v in views)
    dist = torch.zeros(n, hmax, wmax, dtype=dtype)
    for b, v in enumerate(views):
        h, w = v.outside_dist.shape
        dist[b] = torch.as_tensor(np.pad(v.outside_dist, ((0, hmax - h), (0, wmax - w)), mode="edge"), dtype=dtype)
    origin = torch.tensor(np.stack([v.origin for v in views]), dtype=dtype)
    work_scale = torch.tensor([v.scale for v in views], dtype=dtype)
    # image px -> percent of the torso length: divide by (scale · torso/100)
    to_units = 1.0 / (work_scale * scale)

    stride = max(1, model.num_vertices // config.vertices)
    spread = torch.arange(0, model.num_vertices, stride)
    excl = torch.tensor(np.stack(excluded))
    out_w = (~excl[:, spread]).to(dtype)  # (n, S) vertices in the outside term
    out_w = out_w / out_w.sum(1, keepdim=True).clamp(min=1.0)
    all_ids = torch.arange(model.num_vertices)

    x = torch.tensor(np.stack([fits[i].row(n_betas) for i in todo]), dtype=dtype)
    contour_pts, contour_keep = _contour_samples(views, config.contour_points, dtype)
    # people in chunks of exactly config.chunk rows (the last chunk padded with copies of its last person):
    # batched kernels sum in an order that depends on the batch's shape, never on the other rows' values, so a
    # person's result is the same alone or in any batch; with varying batch sizes L-BFGS turned those 1e-16
    # differences into 1e-10 ones. Chunks share the per-call overhead that dominates one person alone.
    rows = []
    for first in range(0, n, config.chunk):
        members = list(range(first, min(first + config.chunk, n)))
        one = torch.tensor(members + [members[-1]] * (config.chunk - len(members)))
        problem = FitObjective(model, kp[one], focal[one], centre[one], scale[one], fit_config)
        xb = x[one]
        for _round in range(config.rounds):
            # the outline's pairs: each outline point's nearest projected vertex now (the residual limbs' vertices
            # included, so that their outline points are recognised and left out)
            with torch.no_grad():
                uv_all = (_project(_posed_vertices(model, xb, all_ids, n_betas), focal[one], centre[one])
                          - origin[one, None]) * work_scale[one, None, None]
                nearest = torch.cdist(contour_pts[one], uv_all).argmin(dim=2)  # (C, M)
            pair_ok = contour_keep[one] & ~torch.gather(excl[one], 1, nearest)
            pair_w = pair_ok.to(dtype) / pair_ok.sum(1, keepdim=True).clamp(min=1).to(dtype)
            xb = lbfgs.minimize(_stage_loss(model, problem, weights[one], prior, spread, nearest, dist[one],
                                            focal[one], centre[one], origin[one], work_scale[one], to_units[one],
                                            contour_pts[one], out_w[one], pair_w, config), xb, config.iterations)
        rows += list(xb[:len(members)])
    x = torch.stack(rows)
    elapsed = (time.perf_counter() - t0) / n
    out = list(fits)
    for b, i in enumerate(todo):
        out[i] = _refit(model, fits[i], x[b], weights[b], kp[b], elapsed, config)
    return out


def _stage_loss(model, problem, weights, prior, spread, nearest, dist, focal, centre, origin, work_scale, to_units,
                contour_pts, out_w, pair_w, config: SilhouetteConfig):
    """The stage's objective for fit rows v: the fit's keypoints + priors, the outside and the outline terms."""
    sigma2, n_betas = config.robust_sigma ** 2, model.num_betas

    def gm(r2):
        return sigma2 * r2 / (sigma2 + r2)

    ids = torch.cat([spread[None].expand(nearest.shape[0], -1), nearest], 1)  # one skinning for both terms

    def loss(v: torch.Tensor) -> torch.Tensor:
        uv_all = (_project(_posed_vertices(model, v, ids, n_betas), focal, centre)
                  - origin[:, None]) * work_scale[:, None, None]  # working px
        uv, paired = uv_all[:, :len(spread)], uv_all[:, len(spread):]
        r_out = (sample_bilinear(dist, uv) * to_units[:, None]) ** 2
        r_cov = ((paired - contour_pts) ** 2).sum(-1) * (to_units ** 2)[:, None]
        return (problem.cost(v, weights, prior) + config.outside_weight * (out_w * gm(r_out)).sum(1)
                + config.cover_weight * (pair_w * gm(r_cov)).sum(1))

    return loss


def _contour_samples(views: list[MaskView], count: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, M, 2) outline points per person (an even subsample along the pixel list) and which are real."""
    pts = torch.zeros(len(views), count, 2, dtype=dtype)
    keep = torch.zeros(len(views), count, dtype=torch.bool)
    for b, v in enumerate(views):
        if len(v.contour) == 0:
            continue
        idx = np.unique(np.linspace(0, len(v.contour) - 1, min(count, len(v.contour))).round().astype(int))
        pts[b, :len(idx)] = torch.as_tensor(v.contour[idx], dtype=dtype)
        keep[b, :len(idx)] = True
    return pts, keep


def _refit(model: BodyModel, fit: PersonFit, row: torch.Tensor, weights: torch.Tensor, kp: torch.Tensor,
           elapsed: float, config: SilhouetteConfig) -> PersonFit:
    """The PersonFit of a refined parameter row (joints, projections and the fit error recomputed)."""
    n_betas = model.num_betas
    orient, transl, betas, pose = row[:3], row[3:6], row[6:6 + n_betas], row[6 + n_betas:]
    with torch.no_grad():
        out = model.joints_only(betas=betas[None], global_orient=orient[None], body_pose=pose[None],
                                transl=transl[None])
    cam = fit.camera
    joints, body25 = out.joints[0].numpy(), out.body25[0].numpy()
    proj = cam.project_np(body25)
    used = weights[:25].numpy() > 0
    err = np.linalg.norm(proj - kp[:25].numpy(), axis=1)
    return replace(fit, betas=np.concatenate([betas.numpy(), fit.betas[n_betas:]]), global_orient=orient.numpy(),
                   body_pose=pose.numpy(), transl=transl.numpy(), joints_3d=joints, body25_3d=body25,
                   body25_2d=proj, fit_error_px=float(err[used].mean()) if used.any() else fit.fit_error_px,
                   timings_s=dict(fit.timings_s, silhouette=elapsed))


# ---------------------------------------------------------------------------------------------------------------
# Stages 2-3: a residual limb's tilt and endpoint from its outline


@dataclass
class LimbCue:
    """What the outline says about one residual limb (image px; None where it says nothing)."""

    kind: str
    radius_px: float | None = None  # half the outline's width just before the endpoint
    extent_px: float | None = None  # how far the outline continues beyond the endpoint along the limb
    sin_tilt: float | None = None  # the cut face's tilt out of the image plane, from extent / radius
    noise_px: float = math.inf  # how precisely the outline shows the extent (image px)
    target_2d: np.ndarray | None = None  # a moved endpoint (the annotated one contradicted the outline)
    note: str = ""  # why the outline gave no cue

    def to_json(self) -> dict:
        out: dict = {"used": self.sin_tilt is not None or self.target_2d is not None}
        if self.radius_px is not None:
            out["radius_px"] = round(self.radius_px, 2)
        if self.extent_px is not None:
            out["extent_beyond_endpoint_px"] = round(self.extent_px, 2)
        if self.sin_tilt is not None:
            out["tilt_deg"] = round(math.degrees(math.asin(min(max(self.sin_tilt, 0.0), 1.0))), 2)
        if self.target_2d is not None:
            out["endpoint_moved_to"] = [round(float(v), 2) for v in self.target_2d]
        if self.note:
            out["note"] = self.note
        return out


def _occupancy(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear mask values at (N, 2) mask-pixel positions (0 outside the image)."""
    h, w = mask.shape
    x, y = points[:, 0] - 0.5, points[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    out = np.zeros(len(points))
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xx, yy = x0 + dx, y0 + dy
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        out[ok] += wt[ok] * mask[yy[ok], xx[ok]]
    return out


def _run_length(mask: np.ndarray, start: np.ndarray, direction: np.ndarray, limit: float, step: float,
                inside: bool) -> float | None:
    """Distance from `start` along `direction` (mask px) to where the mask first becomes background (inside=True)
    or person (inside=False), linearly between samples; None when it does not happen within `limit`."""
    t = np.arange(0.0, limit + step, step)
    values = _occupancy(mask, start[None] + t[:, None] * direction[None])
    hit = values < 0.5 if inside else values >= 0.5
    idx = np.flatnonzero(hit)
    if len(idx) == 0:
        return None
    k = int(idx[0])
    if k == 0:
        return 0.0
    v0, v1 = values[k - 1], values[k]
    return float(t[k - 1] + step * (v0 - 0.5) / (v0 - v1)) if v0 != v1 else float(t[k])


def limb_cue(mask: PersonMask, camera: Camera, kind: str, upstream_2d: np.ndarray, anchor_2d: np.ndarray,
             target_2d: np.ndarray, expected_radius_px: float, config: SilhouetteConfig | None = None) -> LimbCue:
    """The outline of one residual limb along its fitted segment (see the module's docstring, 2-3)."""
    config = config or SilhouetteConfig()
    cue = LimbCue(kind)
    s = mask.scale_for(camera)
    pix = mask.pixels
    up, k = np.asarray(upstream_2d, float) * s, np.asarray(target_2d, float) * s
    axis = k - up
    length = float(np.linalg.norm(axis))
    r_exp = max(expected_radius_px * s, 1.0)
    if length < 1e-6:
        axis, length = np.asarray(anchor_2d, float) * s - up, float(np.linalg.norm(np.asarray(anchor_2d) * s - up))
        if length < 1e-6:
            cue.note = "the segment is seen end-on"
            return cue
    u = axis / length
    n = np.array([-u[1], u[0]])
    step = 0.25
    # radius: perpendicular runs from the axis at a few points before the endpoint, each side on its own (a limb
    # hanging beside the torso merges with it on one side only); the side runs that end within reach count
    halves = []
    for a in (0.5, 1.0, 1.5):
        back = min(a * r_exp, 0.6 * length)
        p = k - back * u
        if _occupancy(pix, p[None])[0] < 0.5:
            continue
        for side in (n, -n):
            run = _run_length(pix, p, side, 2.0 * r_exp, step, True)
            if run is not None and run >= 0.4 * r_exp:
                halves.append(run)
    if len(halves) < 2:
        cue.note = "the limb's outline merges with the body or the background around its end"
        return cue
    radius = float(np.median(halves))
    cue.radius_px = radius / s
    # extent: from the endpoint along the limb to where the outline ends (backwards when it ends before it)
    on = _occupancy(pix, k[None])[0] >= 0.5
    if on:
        extent = _run_length(pix, k, u, 3.0 * radius + 2.0, step, True)
        if extent is None:
            cue.note = "the outline goes on past the endpoint (the limb lies over the body?)"
            return cue
    else:
        back = _run_length(pix, k, -u, 3.0 * radius + 2.0, step, False)
        if back is None:
            cue.note = "no outline near the endpoint"
            return cue
        extent = -back
    tip = k + extent * u
    clear = _run_length(pix, tip + (step + 0.5) * u, u, 1.5 * radius, step, False)
    if clear is not None:
        cue.note = "something else of the person continues beyond the limb's end"
        return cue
    cue.extent_px = extent / s
    if extent < -1.5 * radius - 1.0:
        # the annotated endpoint lies off the limb, beyond where its outline ends: it moves back along the segment
        # to the outline's end, less a mid tilt's allowance (half the radius)
        cue.target_2d = (tip - 0.5 * radius * u) / s
        cue.note = "the annotated endpoint lay beyond the limb's outline; moved back along the segment"
        return cue
    if extent > 1.5 * radius + 1.0:  # the outline goes on well past the endpoint: something else lies there
        cue.note = "the outline goes on past the endpoint (another part of the person there?)"
        return cue
    kappa = config.cap_height
    ratio = max(extent, 0.0) / radius
    sin2 = (ratio * ratio - kappa * kappa) / max(1.0 - kappa * kappa, 1e-6)
    cue.sin_tilt = float(math.sqrt(min(max(sin2, 0.0), 1.0)))
    cue.noise_px = max(1.0 / s, config.outline_error * radius / s)
    return cue


def tilt_weight(cue: LimbCue, config: SilhouetteConfig) -> float:
    """ν of RAFO's L_sil for a cue: (keypoint noise / the outline's extent noise)², times config.tilt_weight."""
    return config.tilt_weight * (config.reference_noise_px / cue.noise_px) ** 2


def limb_radius_m(model: BodyModel, betas: np.ndarray, kind_name: str) -> float:
    """Mean distance of the residual segment's vertices from its axis on the shaped rest body (metres)."""
    kind = residual_by_name(kind_name)
    key = ("limb_vertices", kind.name)
    cache = model._cache
    if key not in cache:
        dominant = dominant_joint(model.weights.numpy())
        cache[key] = torch.as_tensor(np.flatnonzero(dominant == JOINT_INDEX[kind.upstream_joint]))
    ids = cache[key]
    b = torch.as_tensor(np.asarray(betas, np.float64)[None, :model.num_betas], dtype=model.dtype)
    with torch.no_grad():
        verts = (model.v_template[ids] + torch.einsum("bk,vck->bvc", b, model.shapedirs[ids]))[0].numpy()
        joints = model.rest_joints(b)[0].numpy()
    jt, ja = joints[JOINT_INDEX[kind.upstream_joint]], joints[JOINT_INDEX[kind.anchor_joint]]
    axis = (ja - jt) / max(np.linalg.norm(ja - jt), 1e-9)
    rel = verts - jt
    along = rel @ axis
    seg = float(np.linalg.norm(ja - jt))
    middle = (along > 0.3 * seg) & (along < 0.9 * seg)  # away from the joints' bulges
    radial = np.linalg.norm(rel - along[:, None] * axis, axis=1)
    return float(np.median(radial[middle])) if middle.any() else float(np.median(radial))


@dataclass
class SilhouetteReport:
    """What result.json records about a person's silhouette use."""

    source: str
    fitted: bool
    cues: dict[str, LimbCue] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"used": True, "source": self.source, "shape_and_pose_fitted": self.fitted,
                "limbs": {k: c.to_json() for k, c in self.cues.items()}}
