"""Residual Anchor-Factor Optimization (RAFO), ResiHMR paper §3.3, eq. 3-5 and Algorithm 1.

For each residual limb r, with the anchor joint Ja (the distal joint at the base of the amputated segment, e.g.
the knee for a transtibial limb... see residuals.RESIDUALS) and its upstream joint Jt from the initial fit:

    eq. 3   R_r = Ja + λ_r (Jt − Ja)                         residual endpoint on the segment, λ_r ∈ [0, 1]
    eq. 4   L   = L_reproj + α L_reg + μ L_len
            L_reproj = ||π(R_r) − k_r||²                      endpoint reprojection (pixels²)
            L_reg    = ||Ja − Ja_init||²                      anchor stays near the SMPL-X estimate
    eq. 5   L_len    = (||Jt − Ja|| − ||Jt − Ja_init||)²      the fitted segment length is kept

Variables: Ja (3D) and λ_r; Jt is fixed. Algorithm 1: Ja ← Ja_init, λ ← 0.5; each iteration clips λ to
[λ_min, λ_max] and takes one L-BFGS (strong-Wolfe) step. A limb is accepted when its endpoint reprojection
error is below a threshold (15 px in the paper); rejected limbs are reported, never dropped.

α and μ are "adaptively scaled based on the initial fitting error" (the paper gives no formula). Ours puts the
regularisers in pixel² units and lets a worse initial fit move the anchor more freely:
    α = α0 · ppm² · (e_ref / max(e0, e_ref))²,   μ = μ0 · ppm² · (e_ref / max(e0, e_ref))²
with ppm = f / Z(Ja_init) the pixels per metre at the anchor's depth and e0 the person's mean reprojection
error over the intact keypoints of the initial fit. Limbs are independent; they are solved together as one
sum of independent losses (one optimiser call for every limb of every person).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .body_model import JOINT_INDEX, BodyModel
from .camera import Camera
from .keypoints import Person
from .residuals import RESIDUALS, ResidualKind
from .rotations import axis_angle_to_matrix, matrix_to_axis_angle, rotation_between


@dataclass
class RafoConfig:
    lambda_min: float = 0.0
    lambda_max: float = 1.0
    lambda_init: float = 0.5
    accept_threshold_px: float = 15.0
    iterations: int = 30
    alpha0: float = 0.01  # weak: the endpoint must be reached, the anchor moves as little as that allows
    mu0: float = 1.0
    reference_error_px: float = 5.0
    contradiction_factor: float = 1.6  # endpoint farther than this x segment length from Jt: not this limb


@dataclass
class ResidualResult:
    kind: str
    lam: float
    anchor_3d: np.ndarray
    anchor_init_3d: np.ndarray
    upstream_3d: np.ndarray
    endpoint_3d: np.ndarray
    endpoint_2d: np.ndarray
    target_2d: np.ndarray
    reproj_error_px: float
    accepted: bool
    alpha: float
    mu: float
    timings_s: dict = field(default_factory=dict)

    @property
    def residual_length_m(self) -> float:
        """Upstream joint to stump tip: (1 − λ) ||Jt − Ja*||."""
        return float(np.linalg.norm(self.upstream_3d - self.endpoint_3d))


class ResidualError(ValueError):
    """A residual endpoint that cannot belong to its limb."""


@dataclass
class LimbProblem:
    kind: ResidualKind
    anchor_init: np.ndarray
    upstream: np.ndarray
    target: np.ndarray
    camera: Camera
    fit_error_px: float


def endpoint(anchor: torch.Tensor, upstream: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Eq. 3: R = Ja + λ (Jt − Ja)."""
    return anchor + lam[..., None] * (upstream - anchor)


def rafo_loss(anchor, lam, anchor_init, upstream, target, focal, centre, alpha, mu) -> torch.Tensor:
    """Eq. 4-5 per limb, shape (L,)."""
    r = endpoint(anchor, upstream, lam)
    r2d = focal[:, None] * r[:, :2] / r[:, 2:3].clamp(min=1e-3) + centre
    l_reproj = ((r2d - target) ** 2).sum(-1)
    l_reg = ((anchor - anchor_init) ** 2).sum(-1)
    l_len = (torch.linalg.norm(upstream - anchor, dim=-1) - torch.linalg.norm(upstream - anchor_init, dim=-1)) ** 2
    return l_reproj + alpha * l_reg + mu * l_len


def limb_problems(person: Person, joints_3d: np.ndarray, camera: Camera, fit_error_px: float,
                  config: RafoConfig) -> list[LimbProblem]:
    """One problem per declared residual limb; refuses endpoints that contradict their limb."""
    problems = []
    for k, kind in enumerate(RESIDUALS):
        x, y, conf = person.residual[k]
        if conf <= 0:
            continue
        anchor = joints_3d[JOINT_INDEX[kind.anchor_joint]]
        upstream = joints_3d[JOINT_INDEX[kind.upstream_joint]]
        a2d, t2d = camera.project_np(anchor), camera.project_np(upstream)
        seg = float(np.linalg.norm(a2d - t2d))
        dist = float(np.linalg.norm(np.array([x, y]) - t2d))
        if dist > config.contradiction_factor * seg + 10.0:
            raise ResidualError(
                f"residual endpoint {kind.name} at ({x:.0f}, {y:.0f}) px is {dist:.0f} px from the fitted "
                f"{kind.upstream_joint.replace('_', ' ')}, more than {config.contradiction_factor:g} x the fitted "
                f"segment ({seg:.0f} px): it contradicts its limb (wrong side or wrong kind?)")
        problems.append(LimbProblem(kind, anchor, upstream, np.array([x, y]), camera, fit_error_px))
    return problems


def solve(problems: list[LimbProblem], config: RafoConfig | None = None) -> list[ResidualResult]:
    """Algorithm 1 for every limb at once (the losses are independent and summed)."""
    config = config or RafoConfig()
    if not problems:
        return []
    t0 = time.perf_counter()
    dt = torch.float64  # a handful of variables: double precision costs nothing and avoids round-off stalls
    anchor_init = torch.tensor(np.stack([p.anchor_init for p in problems]), dtype=dt)
    upstream = torch.tensor(np.stack([p.upstream for p in problems]), dtype=dt)
    target = torch.tensor(np.stack([p.target for p in problems]), dtype=dt)
    focal = torch.tensor([p.camera.focal_length for p in problems], dtype=dt)
    centre = torch.tensor([p.camera.principal_point for p in problems], dtype=dt)
    ppm = focal / anchor_init[:, 2].clamp(min=1e-3)
    e0 = torch.tensor([p.fit_error_px for p in problems], dtype=dt)
    trust = (config.reference_error_px / e0.clamp(min=config.reference_error_px)) ** 2
    alpha = config.alpha0 * ppm**2 * trust
    mu = config.mu0 * ppm**2 * trust

    anchor = anchor_init.clone().requires_grad_(True)
    lam = torch.full((len(problems),), config.lambda_init, dtype=dt, requires_grad=True)
    # max_eval must be given: with max_iter=1 torch would allow one evaluation, starving the line search
    opt = torch.optim.LBFGS([anchor, lam], lr=1.0, max_iter=1, max_eval=25, history_size=10,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = rafo_loss(anchor, lam, anchor_init, upstream, target, focal, centre, alpha, mu).sum()
        loss.backward()
        return loss

    previous = None
    for _ in range(config.iterations):
        with torch.no_grad():
            lam.clamp_(config.lambda_min, config.lambda_max)  # λ ← clip(λ, λmin, λmax)
        loss = float(opt.step(closure).detach())
        if previous is not None and abs(previous - loss) <= 1e-9 * max(1.0, abs(previous)):
            break
        previous = loss
    with torch.no_grad():
        lam.clamp_(config.lambda_min, config.lambda_max)
        r = endpoint(anchor, upstream, lam)
        r2d = focal[:, None] * r[:, :2] / r[:, 2:3] + centre
        err = torch.linalg.norm(r2d - target, dim=-1)
    elapsed = (time.perf_counter() - t0) / len(problems)
    results = []
    for i, p in enumerate(problems):
        results.append(ResidualResult(
            kind=p.kind.name, lam=float(lam[i].detach()), anchor_3d=anchor[i].detach().numpy(),
            anchor_init_3d=p.anchor_init,
            upstream_3d=p.upstream, endpoint_3d=r[i].numpy(), endpoint_2d=r2d[i].numpy(), target_2d=p.target,
            reproj_error_px=float(err[i]), accepted=bool(err[i] < config.accept_threshold_px),
            alpha=float(alpha[i]), mu=float(mu[i]), timings_s={"rafo": elapsed}))
    return results


# ---------------------------------------------------------------------------------------------------------------
# Feeding the optimised anchor back into the pose


def pose_following_anchors(model: BodyModel, params: dict[str, np.ndarray],
                           residuals: list[ResidualResult]) -> np.ndarray:
    """Body pose whose upstream joints turn each accepted limb segment towards its optimised anchor."""
    body_pose = np.array(params["body_pose"], dtype=np.float64).copy()
    for res in residuals:
        if not res.accepted:
            continue
        kind = next(k for k in RESIDUALS if k.name == res.kind)
        t_idx = JOINT_INDEX[kind.upstream_joint]
        with torch.no_grad():
            rot = axis_angle_to_matrix(model.full_pose(
                1, torch.tensor(params["global_orient"])[None], torch.tensor(body_pose)[None]).to(torch.float64))
            rest = model.rest_joints(torch.tensor(params["betas"], dtype=model.dtype)[None]).to(torch.float64)
            g_rot, _ = model.kinematics(rot, rest)
        g_parent = g_rot[0, model.parents[t_idx]].numpy()
        local = rot[0, t_idx].numpy()
        delta = rotation_between(res.anchor_init_3d - res.upstream_3d, res.anchor_3d - res.upstream_3d)
        new_local = g_parent.T @ delta @ g_parent @ local
        body_pose[(t_idx - 1) * 3:(t_idx - 1) * 3 + 3] = matrix_to_axis_angle(new_local)
    return body_pose
