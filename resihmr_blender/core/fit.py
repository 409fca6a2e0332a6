"""SMPLify-X-style staged fit of SMPL-X to intact 2D body keypoints (paper eq. 1-2), batched over people.

Stages (L-BFGS, strong-Wolfe line search), joints-only forward inside every loop:
1. global orientation + translation on the torso, from a similar-triangles depth initialisation;
2. body pose + shape with decreasing prior weights and a robust (Geman-McClure) reprojection term on the
   confidence-weighted keypoints.
Keypoints distal to a declared residual limb are ignored (weight 0) even when a detector reports them with
high confidence: detectors hallucinate missing limbs. Hands and face are not fitted yet (BODY_25 only).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import priors
from .body_model import BodyModel
from .camera import Camera, depth_from_lengths
from .keypoints import BODY25_INDEX, Person, distal_mask

TORSO_TOP = (BODY25_INDEX["RShoulder"], BODY25_INDEX["LShoulder"])
TORSO_BOTTOM = (BODY25_INDEX["RHip"], BODY25_INDEX["LHip"])
TORSO_SET = (*TORSO_TOP, *TORSO_BOTTOM, BODY25_INDEX["Neck"], BODY25_INDEX["MidHip"])


class FitError(ValueError):
    """A person that cannot be fitted; the message says why."""


@dataclass
class FitConfig:
    ignore_distal: bool = True  # False = the "intact-limb fit that trusts every keypoint" baseline
    robust_sigma: float = 20.0  # Geman-McClure scale, in percent of the person's 2D torso length
    pose_weights: tuple[float, ...] = (20.0, 4.0, 1.0)  # annealed L2 pose prior per sub-stage
    shape_weights: tuple[float, ...] = (10.0, 2.0, 0.5)
    limit_weight: float = 1000.0
    orient_iters: int = 25
    stage_iters: int = 30
    min_confidence: float = 0.05
    num_threads: int = 0  # 0 = torch's default


@dataclass
class PersonFit:
    """Fitted SMPL-X parameters of one person and what the fit saw."""

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    expression: np.ndarray
    camera: Camera
    joints_3d: np.ndarray  # (55, 3) camera frame
    body25_3d: np.ndarray  # (25, 3)
    body25_2d: np.ndarray  # (25, 2)
    used: np.ndarray  # (25,) bool: keypoints that drove the fit
    fit_error_px: float  # mean reprojection error over the used keypoints
    timings_s: dict = field(default_factory=dict)

    def params(self) -> dict[str, np.ndarray]:
        return {"betas": self.betas, "expression": self.expression, "global_orient": self.global_orient,
                "body_pose": self.body_pose, "transl": self.transl}


def keypoint_weights(person: Person, config: FitConfig) -> np.ndarray:
    """Confidence weights for BODY_25, zero where unavailable, unconfident or distal to a residual limb."""
    conf = person.body25[:, 2].copy()
    conf[conf < config.min_confidence] = 0.0
    conf[~person.body25_available] = 0.0
    if config.ignore_distal:
        conf[distal_mask(person.residual)] = 0.0
    return conf


def _torso_points(weights: np.ndarray, group: tuple[int, ...], fallback: int) -> list[int]:
    found = [i for i in group if weights[i] > 0]
    return found or ([fallback] if weights[fallback] > 0 else [])


def check_person(person: Person, weights: np.ndarray) -> tuple[list[int], list[int]]:
    """Refuse people the fit cannot place; return the torso top/bottom keypoints used for initialisation."""
    if not np.any(weights > 0):
        raise FitError("all keypoint confidences are zero (or every keypoint is distal to a residual limb)")
    top = _torso_points(weights, TORSO_TOP, BODY25_INDEX["Neck"])
    bottom = _torso_points(weights, TORSO_BOTTOM, BODY25_INDEX["MidHip"])
    if not top or not bottom:
        missing = "a shoulder or the neck" if not top else "a hip or the mid-hip"
        raise FitError(f"too few keypoints to place the torso: need {missing} with confidence > 0")
    if int((weights > 0).sum()) < 4:
        raise FitError(f"too few keypoints to fit a body: {int((weights > 0).sum())} usable, need at least 4")
    return top, bottom


def _facing_camera(kp: np.ndarray, weights: np.ndarray) -> bool:
    """The subject's left appears on the image's right when they face the camera."""
    for right, left in (TORSO_TOP, TORSO_BOTTOM):
        if weights[right] > 0 and weights[left] > 0:
            return kp[left, 0] >= kp[right, 0]
    return True


def _rotation_axis_angle(facing: bool) -> np.ndarray:
    # half turn about x: body up -> image up, body front -> towards the camera; about z: facing away
    return np.array([math.pi, 0.0, 0.0]) if facing else np.array([0.0, 0.0, math.pi])


def _project(points: torch.Tensor, focal: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    z = points[..., 2:3].clamp(min=1e-3)
    return focal[:, None, None] * points[..., :2] / z + centre[:, None, :]


def _lbfgs(params, closure, iters: int):
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iters, max_eval=iters * 2, history_size=20,
                            line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-9)
    opt.step(closure)


def fit_people(model: BodyModel, people: list[Person], cameras: list[Camera],
               config: FitConfig | None = None) -> list[PersonFit | FitError]:
    """Fit every person at once. Returns a PersonFit, or the FitError saying why one could not be fitted."""
    config = config or FitConfig()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    results: list[PersonFit | FitError | None] = [None] * len(people)
    batch_idx, inits = [], []
    for i, (person, cam) in enumerate(zip(people, cameras)):
        weights = keypoint_weights(person, config)
        try:
            top, bottom = check_person(person, weights)
        except FitError as exc:
            results[i] = exc
            continue
        batch_idx.append(i)
        inits.append((person.body25[:, :2], weights, top, bottom))
    if batch_idx:
        fits = _fit_batch(model, [inits[k] for k in range(len(batch_idx))], [cameras[i] for i in batch_idx],
                          config)
        for i, fit in zip(batch_idx, fits):
            results[i] = fit
    return results  # type: ignore[return-value]


def _fit_batch(model: BodyModel, inits, cameras: list[Camera], config: FitConfig) -> list[PersonFit]:
    t0 = time.perf_counter()
    dtype = model.dtype
    n = len(inits)
    kp = torch.tensor(np.stack([k for k, _, _, _ in inits]), dtype=dtype)
    w = torch.tensor(np.stack([wt for _, wt, _, _ in inits]), dtype=dtype)
    focal = torch.tensor([c.focal_length for c in cameras], dtype=dtype)
    centre = torch.tensor([c.principal_point for c in cameras], dtype=dtype)

    # -- initialisation: orientation from left/right order, depth from the torso length (similar triangles)
    rest = model.joints_only().body25[0].detach()  # T-pose BODY_25 of the mean shape
    pelvis = model.J_template[0]
    orient0, transl0, scale = [], [], []
    for (kp_np, wt, top, bottom), cam in zip(inits, cameras):
        top2d, bottom2d = kp_np[top].mean(0), kp_np[bottom].mean(0)
        top3d, bottom3d = rest[top].mean(0), rest[bottom].mean(0)
        length2d = float(np.linalg.norm(top2d - bottom2d))
        depth = depth_from_lengths(cam.focal_length, float(torch.linalg.norm(top3d - bottom3d)), length2d)
        mid2d = 0.5 * (top2d + bottom2d)
        target = np.array([(mid2d[0] - cam.principal_point[0]) * depth / cam.focal_length,
                           (mid2d[1] - cam.principal_point[1]) * depth / cam.focal_length, depth])
        rotvec = _rotation_axis_angle(_facing_camera(kp_np, wt))
        rot = _rotvec_to_matrix_np(rotvec)
        mid3d = (0.5 * (top3d + bottom3d) - pelvis).numpy()
        transl0.append(target - rot @ mid3d - pelvis.numpy())
        orient0.append(rotvec)
        scale.append(max(length2d, 1.0) / 100.0)  # residuals in percent of the torso length
    scale_t = torch.tensor(scale, dtype=dtype)

    global_orient = torch.tensor(np.array(orient0), dtype=dtype).requires_grad_(True)
    transl = torch.tensor(np.array(transl0), dtype=dtype).requires_grad_(True)
    betas = torch.zeros(n, model.num_betas, dtype=dtype, requires_grad=True)
    body_pose = torch.zeros(n, 63, dtype=dtype, requires_grad=True)
    sigma2 = config.robust_sigma**2

    def data_term(weights: torch.Tensor) -> torch.Tensor:
        out = model.joints_only(betas=betas, global_orient=global_orient, body_pose=body_pose, transl=transl,
                                body_only=True)
        r2 = ((_project(out.body25, focal, centre) - kp) ** 2).sum(-1) / scale_t[:, None] ** 2
        return (weights * (sigma2 * r2 / (sigma2 + r2))).sum(dim=1)

    # -- stage 1: orientation + translation on the torso
    torso_w = torch.zeros_like(w)
    torso_w[:, list(TORSO_SET)] = w[:, list(TORSO_SET)]

    def closure_orient():
        opt_zero_grad((global_orient, transl))
        loss = data_term(torso_w).sum()
        loss.backward()
        return loss

    _lbfgs([global_orient, transl], closure_orient, config.orient_iters)

    # -- stage 2: pose + shape, annealing the priors
    for pose_w, shape_w in zip(config.pose_weights, config.shape_weights):
        def closure_body():
            opt_zero_grad((global_orient, transl, betas, body_pose))
            loss = (data_term(w) + pose_w * priors.pose_l2(body_pose) + shape_w * priors.shape_l2(betas)
                    + config.limit_weight * priors.joint_limit_penalty(body_pose)).sum()
            loss.backward()
            return loss

        _lbfgs([global_orient, transl, betas, body_pose], closure_body, config.stage_iters)

    with torch.no_grad():
        out = model.joints_only(betas=betas, global_orient=global_orient, body_pose=body_pose, transl=transl)
        proj = _project(out.body25, focal, centre)
        err = torch.linalg.norm(proj - kp, dim=-1)
    elapsed = (time.perf_counter() - t0) / n
    fits = []
    for b, cam in enumerate(cameras):
        used = (w[b] > 0).numpy()
        fits.append(PersonFit(
            betas=betas[b].detach().numpy().astype(np.float64), global_orient=global_orient[b].detach().numpy(),
            body_pose=body_pose[b].detach().numpy(), transl=transl[b].detach().numpy(),
            expression=np.zeros(model.num_expression), camera=cam, joints_3d=out.joints[b].numpy(),
            body25_3d=out.body25[b].numpy(), body25_2d=proj[b].numpy(), used=used,
            fit_error_px=float(err[b][w[b] > 0].mean()), timings_s={"fit": elapsed}))
    return fits


def opt_zero_grad(tensors) -> None:
    for t in tensors:
        if t.grad is not None:
            t.grad.zero_()


def _rotvec_to_matrix_np(rotvec: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew
