"""Residual Anchor-Factor Optimization (RAFO), ResiHMR paper §3.3, eq. 3-5 and Algorithm 1.

For each residual limb r, with the anchor joint Ja (the distal joint at the base of the amputated segment, e.g.
the knee for a transtibial limb... see residuals.RESIDUALS) and its upstream joint Jt from the initial fit:

    eq. 3   R_r = Ja + λ_r (Jt − Ja)                         residual endpoint on the segment, λ_r ∈ [0, 1]
    eq. 4   L   = L_reproj + α L_reg + μ L_len
            L_reproj = ||π(R_r) − k_r||²                      endpoint reprojection (pixels²)
            L_reg    = ||Ja − Ja_init||²                      anchor stays near the SMPL-X estimate
    eq. 5   L_len    = (||Jt − Ja|| − ||Jt − Ja_init||)²      the fitted segment length is kept

Eq. 4 leaves one thing open: the segment's tilt towards the camera. One endpoint fixes where the stump ends in the
image, not how far along its ray, and λ trades against the tilt ((1 − λ)·L·cos θ is what the image shows). What
settles it here is a tilt term, one more square of eq. 4 in pixels²:
            L_tilt = w (|d · z_k| − s)²,  d = (Jt − Ja)/||Jt − Ja||,  z_k the unit view ray through k_r
    made of (a) the tilt prior, w_p = (σ_k / sd_p)², s_p the sin of a typical segment's tilt (RafoConfig.tilt_prior_*:
    measured on the synthetic benchmark, a typical tilt's λ beat the fit's own tilt: λ MAE 0.081 -> 0.069, foreign
    0.106 -> 0.079), and (b) with a person mask (core/silhouette.py) the limb's outline cue, ν ρ² with ρ the outline's
    radius (px) and sin θ_obs the tilt its end shows. Two squares in |d · z| are one square with w = w_p + ν ρ² and
    s their weighted mean (LimbProblem.tilt_term). It moves Ja only (its depth, at fixed length), and λ follows
    through eq. 3 and L_reproj. tilt_prior_sd = 0 and no cue is eq. 4 as written.
Several hypotheses: RAFO runs again with the prior centred on a low and on a steep tilt (RafoConfig.tilt_hypotheses);
their λ are kept (ResidualResult.lam_hypotheses, result.json) and the λ interval spans them and eq. 4's own
profile (lambda_intervals), so a limb whose tilt nothing shows carries a wide interval.

Variables: Ja (3D) and λ_r; Jt is fixed. Algorithm 1: Ja ← Ja_init, λ ← 0.5; each iteration clips λ to
[λ_min, λ_max] and takes one L-BFGS step with a strong-Wolfe line search. A limb is accepted when its endpoint
reprojection error is below a threshold (15 px in the paper); rejected limbs are reported, never dropped.

α and μ are "adaptively scaled based on the initial fitting error" (the paper gives no formula). Ours puts the
regularisers in pixel² units and lets a worse initial fit move the anchor more freely:
    α = α0 · ppm² · (e_ref / max(e0, e_ref))²,   μ = μ0 · ppm² · (e_ref / max(e0, e_ref))²
with ppm = f / Z(Ja_init) the pixels per metre at the anchor's depth and e0 the person's mean reprojection
error over the intact keypoints of the initial fit.

Every limb is its own problem ("we optimize each residual-limb independently"). `solve` still takes all limbs
of all people in one call, for speed: eq. 4 and its gradient (written out, rafo_loss_and_grad) are evaluated
for every limb at once, one row per limb, but each row has its own L-BFGS history and γ, its own strong-Wolfe
line search (Nocedal & Wright alg. 3.5/3.6 with cubic interpolation, the one torch.optim.LBFGS uses, run as a
per-row state machine) and its own stopping test; a converged row is frozen. Nothing batch-wide decides
anything for a row (no summed loss, no shared step or stopping rule, no reduction across rows), so a limb gets
the same result alone or beside any other limbs, hostile ones included (tests/test_rafo.py).
Why not the alternatives: one torch.optim.LBFGS over the summed loss of all limbs (what this module did before)
shares one step length and one stopping rule, so one file's limbs changed another's λ (a file with an absurd
image size turned a 0.0 px accepted forearm into an 18 px rejected one); torch.optim.LBFGS run limb by limb is
correct but costs ~18 ms a limb; lbfgs.minimize is per-row but has Armijo backtracking, not the paper's strong
Wolfe, and no place for the clip of λ.
The initial inverse Hessian is H0 = γ·diag(1/(2 ppm²) for each coordinate of Ja, 1/(2 (ppm ||Jt − Ja_init||)²)
for λ), the inverse curvature of the reprojection term per variable, so that metres and λ start on one scale;
γ = 1 at first, then L-BFGS's usual s·y / (y·H0·y) of the newest pair.

The clip of Algorithm 1 is kept as written (λ ← clip(λ) before each step). One addition makes it exact: while
λ sits at a bound and the gradient pushes it outwards, that step leaves λ where it is and moves Ja only
(a projected-gradient step on the box); otherwise the step would push λ out only for the next clip to undo it,
and such a limb would never converge.
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
    iterations: int = 50  # L-BFGS iterations at most (Algorithm 1's N); a limb stops once its loss stalls
    history: int = 10  # L-BFGS curvature pairs kept per limb
    max_line_search: int = 25  # loss evaluations per strong-Wolfe line search
    tolerance_change: float = 1e-10  # a limb has converged when a step lowers its loss by less (relative)
    alpha0: float = 0.01  # weak: the endpoint must be reached, the anchor moves as little as that allows
    mu0: float = 1.0
    reference_error_px: float = 5.0
    contradiction_factor: float = 1.6  # endpoint farther than this x segment length from Jt: not this limb
    # λ interval: eq. 4's profile within this² (px²) of its optimum. 6 px: the smallest whole number of pixels
    # whose intervals held the true λ for 2 limbs in 3 on the synthetic benchmark (seed 0, 64 people, 135 limbs:
    # 3 px held 42 %, 5 px 62 %, 6 px 69 %, 10 px 83 %); never set on the foreign-body cases
    interval_tolerance_px: float = 6.0
    interval_grid: int = 101  # λ values the profile is evaluated at (the interval's resolution)
    # The tilt prior L_tilt (module docstring): sin θ_p, the typical tilt of a limb segment out of the image plane
    # (the λ it gives is the λ of a typical tilt, the estimate of least absolute error when nothing shows the
    # tilt), and tilt_prior_sd, how far the estimate may stray from it (sd of sin θ; 0 turns the prior off: eq. 4
    # as written). tilt_prior_noise_px puts it in eq. 4's pixels², against a keypoint's noise.
    # The sd is far below the spread of true tilts (0.27): the fit's own tilt pulls through α L_reg although it
    # barely tells the true one (correlation 0.43 synthetic, 0.30 foreign). Chosen on the synthetic benchmark
    # (seed 0, 128 people; λ MAE keypoints only / with the mask): off 0.081 / 0.064, sd 0.27 0.076 / 0.064,
    # 0.12 0.071 / 0.068, 0.06 0.069 / 0.069; sin θ_p 0.30 / 0.35 / 0.40 at sd 0.06: 0.071 / 0.069 / 0.069.
    tilt_prior_sin: float = 0.35
    tilt_prior_sd: float = 0.06
    tilt_prior_noise_px: float = 3.0
    # λ hypotheses: RAFO again with the prior centred on a low and a steep tilt, the 16th and 84th percentiles of
    # the synthetic benchmark's true tilts (sin θ); the λ interval spans them (lambda_intervals)
    tilt_hypotheses: tuple[float, float] = (0.07, 0.67)

    def tilt_prior_weight(self) -> float:
        """The tilt prior's weight in eq. 4 (pixels² per unit of sin² tilt); 0 when it is off."""
        return (self.tilt_prior_noise_px / self.tilt_prior_sd) ** 2 if self.tilt_prior_sd > 0 else 0.0

    def to_json(self) -> dict:
        """What result.json records of how λ was found."""
        return {"accept_threshold_px": self.accept_threshold_px, "lambda_range": [self.lambda_min, self.lambda_max],
                "interval_tolerance_px": self.interval_tolerance_px,
                "tilt_prior": {"sin_tilt": self.tilt_prior_sin, "sd": self.tilt_prior_sd,
                               "hypotheses_sin_tilt": list(self.tilt_hypotheses)}
                if self.tilt_prior_weight() > 0 else None}

    def tilt_terms(self, problems, prior_sin: float | None = None, prior: bool = True) -> np.ndarray:
        """(L, 2) (weight, sin θ) of every limb's tilt term: its outline cue and (`prior`) this tilt prior,
        centred on `prior_sin` (default tilt_prior_sin)."""
        weight = self.tilt_prior_weight() if prior else 0.0
        centre = self.tilt_prior_sin if prior_sin is None else prior_sin
        return np.array([p.tilt_term(weight, centre) for p in problems], dtype=np.float64).reshape(-1, 2)


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
    lam_interval: tuple[float, float] | None = None  # (lo, hi) with lo <= lam <= hi, see solve
    # λ were the segment's tilt typical of a low or a steep one: sin θ (RafoConfig.tilt_hypotheses, as text) -> λ
    lam_hypotheses: dict[str, float] = field(default_factory=dict)

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
    # the outline's tilt cue (silhouette.limb_cue): sin θ_obs, the outline's radius ρ (px) and its weight ν
    sin_tilt: float | None = None
    radius_px: float = 0.0
    tilt_weight: float = 0.0

    def tilt_term(self, prior_weight: float = 0.0, prior_sin: float = 0.0) -> tuple[float, float]:
        """(weight, sin θ) of the limb's tilt term: L_sil's (ν ρ², sin θ_obs) and the tilt prior's (w_p, sin θ_p)
        as one square, w (|d·z| − s)² with w = ν ρ² + w_p and s their weighted mean (two squares in the same
        quantity differ from that one by a constant only); (0, 0) when the limb has neither."""
        cue = self.tilt_weight * self.radius_px ** 2 if self.sin_tilt is not None and self.tilt_weight > 0 else 0.0
        weight = cue + max(prior_weight, 0.0)
        if weight <= 0:
            return 0.0, 0.0
        return weight, (cue * float(self.sin_tilt or 0.0) + max(prior_weight, 0.0) * prior_sin) / weight


def endpoint(anchor: torch.Tensor, upstream: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Eq. 3: R = Ja + λ (Jt − Ja)."""
    return anchor + lam[..., None] * (upstream - anchor)


def rafo_loss(anchor, lam, anchor_init, upstream, target, focal, centre, alpha, mu, tilt=None) -> torch.Tensor:
    """Eq. 4-5 per limb, shape (L,)."""
    return rafo_loss_and_grad(anchor, lam, anchor_init, upstream, target, focal, centre, alpha, mu, tilt)[0]


def view_rays(target, focal, centre):
    """(L, 3) unit view rays through the targets (pixels) of a camera frame."""
    ray = torch.cat([(target - centre) / focal[:, None], torch.ones_like(target[:, :1])], 1)
    return ray / torch.linalg.norm(ray, dim=-1, keepdim=True)


def rafo_loss_and_grad(anchor, lam, anchor_init, upstream, target, focal, centre, alpha, mu, tilt=None):
    """Eq. 4-5 per limb and its gradient (dL/dJa (L, 3), dL/dλ (L,)) by the chain rule written out: the
    optimiser evaluates it ~50 times, and autograd would cost several times the arithmetic. Row i of every
    output depends on row i of the inputs only. `tilt` = (ν ρ² (L,), sin θ_obs (L,)) adds L_sil (module
    docstring); None or ν ρ² = 0 leaves eq. 4 as written."""
    seg = upstream - anchor  # Jt − Ja
    r = anchor + lam[..., None] * seg  # eq. 3: R = Ja + λ (Jt − Ja)
    depth = r[:, 2:3].clamp(min=1e-3)
    r2d = focal[:, None] * r[:, :2] / depth + centre  # π(R)
    err2d = r2d - target
    l_reproj = (err2d * err2d).sum(-1)  # ||π(R) − k||²
    moved = anchor - anchor_init
    l_reg = (moved * moved).sum(-1)  # ||Ja − Ja_init||²
    length = torch.linalg.norm(seg, dim=-1)
    stretch = length - torch.linalg.norm(upstream - anchor_init, dim=-1)
    l_len = stretch * stretch  # eq. 5: (||Jt − Ja|| − ||Jt − Ja_init||)²
    loss = l_reproj + alpha * l_reg + mu * l_len  # eq. 4
    # backwards: dL/dR, then R = Ja + λ (Jt − Ja) gives dL/dλ = dL/dR · (Jt − Ja) and (1 − λ) dL/dR for Ja
    d_xy = 2.0 * err2d * focal[:, None] / depth
    d_z = -(d_xy * r[:, :2]).sum(-1, keepdim=True) / depth * (r[:, 2:3] >= 1e-3)
    d_r = torch.cat([d_xy, d_z], -1)
    grad_lam = (d_r * seg).sum(-1)
    grad_anchor = ((1.0 - lam)[:, None] * d_r + (2.0 * alpha)[:, None] * moved
                   - (2.0 * mu * stretch / length.clamp(min=1e-12))[:, None] * seg)
    if tilt is not None:  # L_sil = ν ρ² (|d·z| − sin θ_obs)², d = (Jt − Ja)/|Jt − Ja|: it moves Ja only
        weight, sin_obs = tilt
        n = length.clamp(min=1e-12)
        d = seg / n[:, None]
        z = view_rays(target, focal, centre)
        g = (d * z).sum(-1)
        on = weight > 0  # rows without a cue stay exactly eq. 4, whatever their numbers
        gap = torch.where(on, g.abs() - sin_obs, 0.0)
        loss = loss + torch.where(on, weight * gap * gap, 0.0)
        # d|g|/dJa = −sign(g) (z − g d) / |Jt − Ja|
        step = torch.where(on[:, None], (2.0 * weight * gap * torch.sign(g) / n)[:, None] * (z - g[:, None] * d), 0.0)
        grad_anchor = grad_anchor - step
    return loss, grad_anchor, grad_lam


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


def _tilt_tensors(terms: np.ndarray):
    """rafo_loss_and_grad's `tilt` from (L, 2) (weight, sin θ) rows; None when no row has a tilt term."""
    return (torch.from_numpy(terms[:, 0].copy()), torch.from_numpy(terms[:, 1].copy())) if terms[:, 0].any() else None


def solve(problems: list[LimbProblem], config: RafoConfig | None = None) -> list[ResidualResult]:
    """Algorithm 1 for every limb, each limb its own problem (evaluated together, optimised apart)."""
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
    # the limbs as RAFO solves them (outline cue + tilt prior), then with the prior centred on a low and a steep
    # tilt (the λ hypotheses): one optimisation of independent rows, so each limb's λ is what it is alone
    centres = [None] + (list(config.tilt_hypotheses) if config.tilt_prior_weight() > 0 else [])
    tilt_np = np.concatenate([config.tilt_terms(problems, c) for c in centres])
    n, copies = len(problems), len(centres)

    def rows(t: torch.Tensor) -> torch.Tensor:
        return t.repeat(copies, *([1] * (t.dim() - 1)))

    tilt = _tilt_tensors(tilt_np)
    a0, up, k, f, c, al, m = (rows(t) for t in (anchor_init, upstream, target, focal, centre, alpha, mu))

    def loss_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = (Ja, λ) per row -> eq. 4 per row and its gradient; row i depends on x[i] only."""
        loss, grad_anchor, grad_lam = rafo_loss_and_grad(x[:, :3], x[:, 3], a0, up, k, f, c, al, m, tilt)
        return loss, torch.cat([grad_anchor, grad_lam[:, None]], 1)

    # the curvature of eq. 4 near the solution, per variable: 2 ppm² for Ja (metres), 2 (ppm |Jt − Ja|)² for λ;
    # its inverse is L-BFGS's initial inverse Hessian, so that the first step is about the right size
    seg_px = ppm * torch.linalg.norm(upstream - anchor_init, dim=-1).clamp(min=1e-3)
    scale = rows(0.5 / torch.stack([ppm, ppm, ppm, seg_px], 1) ** 2)
    lam_init = torch.full((n * copies, 1), config.lambda_init, dtype=dt)
    x = _lbfgs_with_clip(loss_and_grad, torch.cat([a0, lam_init], 1), scale, config)  # Ja ← Ja_init, λ ← 0.5
    hypotheses = x[n:, 3].clamp(config.lambda_min, config.lambda_max).reshape(copies - 1, n).T.numpy()
    anchor, lam = x[:n, :3], x[:n, 3].clamp(config.lambda_min, config.lambda_max)
    r = endpoint(anchor, upstream, lam)
    r2d = focal[:, None] * r[:, :2] / r[:, 2:3] + centre
    err = torch.linalg.norm(r2d - target, dim=-1)
    # one conversion to numpy, then per-limb rows of it (indexing torch tensors per limb costs more than RAFO)
    anchor, lam, r, r2d, err = anchor.numpy(), lam.numpy(), r.numpy(), r2d.numpy(), err.numpy()
    alpha, mu = alpha.numpy(), mu.numpy()
    # the λ interval: eq. 4's own evidence (the outline cue in, the prior out), widened to the hypotheses
    cue_np = config.tilt_terms(problems, prior=False)
    cue = _tilt_tensors(cue_np)
    loss_star = rafo_loss(torch.from_numpy(anchor), torch.from_numpy(lam), anchor_init, upstream, target, focal,
                          centre, torch.from_numpy(alpha), torch.from_numpy(mu), cue).numpy()
    intervals = lambda_intervals(anchor, lam, loss_star, anchor_init.numpy(), upstream.numpy(), target.numpy(),
                                 focal.numpy(), centre.numpy(), alpha, mu, config,
                                 tilt=None if cue is None else cue_np)
    if hypotheses.size:
        intervals = np.stack([np.minimum(intervals[:, 0], hypotheses.min(1)),
                              np.maximum(intervals[:, 1], hypotheses.max(1))], 1)
    elapsed = (time.perf_counter() - t0) / len(problems)
    results = []
    for i, p in enumerate(problems):
        results.append(ResidualResult(
            kind=p.kind.name, lam=float(lam[i]), anchor_3d=anchor[i].copy(), anchor_init_3d=p.anchor_init,
            upstream_3d=p.upstream, endpoint_3d=r[i].copy(), endpoint_2d=r2d[i].copy(), target_2d=p.target,
            reproj_error_px=float(err[i]), accepted=bool(err[i] < config.accept_threshold_px and r[i, 2] > 0),
            alpha=float(alpha[i]), mu=float(mu[i]), timings_s={"rafo": elapsed},
            lam_interval=(float(intervals[i, 0]), float(intervals[i, 1])),
            lam_hypotheses={f"{sin:g}": float(h) for sin, h in zip(config.tilt_hypotheses, hypotheses[i])}))
    return results


# ---------------------------------------------------------------------------------------------------------------
# How well λ is determined: the profile of eq. 4 over λ


def lambda_intervals(anchor_star, lam_star, loss_star, anchor_init, upstream, target, focal, centre, alpha, mu,
                     config: RafoConfig, iterations: int = 15, tilt: np.ndarray | None = None) -> np.ndarray:
    """(L, 2) λ intervals [lo, hi]: the λ whose best anchor costs at most tol² more than RAFO's optimum,

        P(λ) = min over Ja of eq. 4 (L_reproj + α L_reg + μ L_len) with λ held,
        interval = the connected set of λ in [λ_min, λ_max] around λ* where P(λ) <= L(Ja*, λ*) + tol²,

    tol = config.interval_tolerance_px; every term of eq. 4 is in pixels², so tol reads as "pixels of
    reprojection error worth of evidence". What widens it is what RAFO cannot tell apart: a segment seen end-on
    (foreshortened) lets the anchor tilt along the view ray at little cost in L_reg, so many λ reach the
    endpoint; a segment seen side-on can only shorten its image by tilting out of the image plane, which moves
    the anchor and costs α L_reg (and no λ beyond the endpoint's reach can be reprojected at all). A poor
    initial fit lowers α (module docstring), so it widens the interval too.

    P is evaluated on config.interval_grid values of λ by damped Gauss-Newton over Ja from Ja* (eq. 4 is a sum
    of squares: 2 reprojection, 3 anchor and 1 length residuals), the edges placed between grid values by
    linear interpolation of P. Always lo <= λ* <= hi. Row i depends on row i of the inputs only.

    `tilt` (L, 2) = (ν ρ², sin θ_obs) per limb adds the outline's tilt term L_sil to P (one more residual): a
    limb whose outline shows its tilt has a narrower interval, as it should."""
    n, g = len(lam_star), max(3, int(config.interval_grid))
    if n == 0:
        return np.zeros((0, 2))
    grid = np.linspace(config.lambda_min, config.lambda_max, g)

    def rows(a):  # (n, ...) -> (n g, ...), grid fastest
        return np.repeat(np.asarray(a, np.float64), g, axis=0)

    lam = np.tile(grid, n)
    ja, ja0, jt, k = rows(anchor_star), rows(anchor_init), rows(upstream), rows(target)
    f, c, sa, sm = rows(focal), rows(centre), np.sqrt(rows(alpha)), np.sqrt(rows(mu))
    length0 = np.linalg.norm(jt - ja0, axis=-1)
    tilt_rows = rows(tilt) if tilt is not None else np.zeros((len(lam), 2))
    st, sin_obs = np.sqrt(tilt_rows[:, 0]), tilt_rows[:, 1]
    ray = np.concatenate([(k - c) / f[:, None], np.ones((len(lam), 1))], 1)
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)

    def residuals(ja):
        r = ja + lam[:, None] * (jt - ja)
        z = np.maximum(r[:, 2], 1e-3)
        proj = f[:, None] * r[:, :2] / z[:, None] + c - k
        seg = ja - jt
        dist = np.maximum(np.linalg.norm(seg, axis=-1), 1e-12)
        cos_ray = -((seg / dist[:, None]) * ray).sum(-1)  # d·z with d = (Jt − Ja)/|.|
        res = np.concatenate([proj, sa[:, None] * (ja - ja0), (sm * (dist - length0))[:, None],
                              np.where(st > 0, st * (np.abs(cos_ray) - sin_obs), 0.0)[:, None]], 1)
        return res, r, z, seg / dist[:, None]

    res, r, z, unit = residuals(ja)
    cost = (res * res).sum(-1)
    damping = np.full(len(lam), 1e-3)
    for _ in range(iterations):
        # J^T J and J^T r written out per component (batched 3x3 products cost more than the arithmetic):
        # J = [dπ/dR (1 − λ); sqrt(α) I; sqrt(μ) u], dπ/dR (1 − λ) = w [[1, 0, −a], [0, 1, −b]], u = (Ja − Jt)/|.|
        w = (1.0 - lam) * f / z
        a, b = r[:, 0] / z, r[:, 1] / z
        w2, al, m2 = w * w, sa * sa, sm * sm
        ux, uy, uz = unit[:, 0], unit[:, 1], unit[:, 2]
        # the tilt residual's row: st |g|, g = −u·z, d|g|/dJa = −sign(g) (z − g d)/|Jt − Ja| with d = −u
        cos_ray = -(unit * ray).sum(-1)
        dist = np.maximum(np.linalg.norm(ja - jt, axis=-1), 1e-12)
        jt_row = np.where((st > 0)[:, None],
                          -(st * np.sign(cos_ray) / dist)[:, None] * (ray + cos_ray[:, None] * unit), 0.0)
        tx, ty, tz = jt_row[:, 0], jt_row[:, 1], jt_row[:, 2]
        h = [w2 + m2 * ux * ux + al + tx * tx, w2 + m2 * uy * uy + al + ty * ty,
             w2 * (a * a + b * b) + m2 * uz * uz + al + tz * tz,
             m2 * ux * uy + tx * ty, -w2 * a + m2 * ux * uz + tx * tz,
             -w2 * b + m2 * uy * uz + ty * tz]  # xx, yy, zz, xy, xz, yz
        h[0], h[1], h[2] = (hd * (1.0 + damping) + 1e-12 for hd in h[:3])
        e0, e1, reg, lr, ts = res[:, 0], res[:, 1], sa[:, None] * res[:, 2:5], sm * res[:, 5], res[:, 6]
        grad = np.stack([w * e0 + reg[:, 0] + lr * ux, w * e1 + reg[:, 1] + lr * uy,
                         -w * (a * e0 + b * e1) + reg[:, 2] + lr * uz], 1) + ts[:, None] * jt_row
        step = -_solve_sym3(h, grad)
        new_res, new_r, new_z, new_unit = residuals(ja + step)
        new_cost = (new_res * new_res).sum(-1)
        better = np.isfinite(new_cost) & (new_cost < cost)
        ja = np.where(better[:, None], ja + step, ja)
        res, r = np.where(better[:, None], new_res, res), np.where(better[:, None], new_r, r)
        z, unit = np.where(better, new_z, z), np.where(better[:, None], new_unit, unit)
        cost = np.where(better, new_cost, cost)
        damping = np.where(better, damping * 0.3, damping * 10.0)
    profile = cost.reshape(n, g)
    bound = np.minimum(np.asarray(loss_star, np.float64), profile.min(1)) + config.interval_tolerance_px ** 2
    out = np.zeros((n, 2))
    for i in range(n):
        inside = profile[i] <= bound[i]
        centre_idx = int(np.clip(np.searchsorted(grid, lam_star[i]), 0, g - 1))
        if not inside[centre_idx]:  # λ* between grid values: start from the nearer inside neighbour, if any
            near = np.flatnonzero(inside)
            centre_idx = int(near[np.argmin(np.abs(grid[near] - lam_star[i]))]) if len(near) else centre_idx
        lo = hi = centre_idx
        while lo > 0 and inside[lo - 1]:
            lo -= 1
        while hi < g - 1 and inside[hi + 1]:
            hi += 1
        edge_lo, edge_hi = grid[lo], grid[hi]
        if lo > 0 and inside[lo]:  # the crossing between grid values, linearly
            p0, p1 = profile[i, lo - 1], profile[i, lo]
            edge_lo = grid[lo] - (grid[lo] - grid[lo - 1]) * (bound[i] - p1) / max(p0 - p1, 1e-300)
        if hi < g - 1 and inside[hi]:
            p0, p1 = profile[i, hi + 1], profile[i, hi]
            edge_hi = grid[hi] + (grid[hi + 1] - grid[hi]) * (bound[i] - p1) / max(p0 - p1, 1e-300)
        out[i] = min(edge_lo, lam_star[i]), max(edge_hi, lam_star[i])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Per-row L-BFGS with λ clipped every iteration and a per-row strong-Wolfe line search


def _lbfgs_with_clip(loss_and_grad, x: torch.Tensor, scale: torch.Tensor, config: RafoConfig) -> torch.Tensor:
    """Algorithm 1's loop for every row of x = (Ja, λ) at once; every row has its own history, step and stop."""
    lmin, lmax = config.lambda_min, config.lambda_max
    x = x.clone()
    f, g = loss_and_grad(x)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1/s·y) per step, newest last
    gamma = torch.ones_like(f)  # H0 = γ diag(scale), γ = s·y / y·diag(scale)·y of the newest pair
    active = torch.isfinite(f) & torch.isfinite(g).all(-1)  # a limb that cannot be evaluated is left as it is
    for _ in range(config.iterations):
        # λ ← clip(λ, λmin, λmax); a clipped row is evaluated again where it now is
        lam = x[:, 3].clamp(lmin, lmax)
        clipped = active & (lam != x[:, 3])
        if bool(clipped.any()):
            x[:, 3] = torch.where(clipped, lam, x[:, 3])
            f_c, g_c = loss_and_grad(x)
            f, g = torch.where(clipped, f_c, f), torch.where(clipped[:, None], g_c, g)
        # λ held at a bound that the gradient pushes against: this step moves Ja only (see module docstring)
        pinned = ((lam <= lmin) & (g[:, 3] > 0)) | ((lam >= lmax) & (g[:, 3] < 0))
        free = torch.ones_like(x)
        free[:, 3] = (~pinned).to(x.dtype)
        g_free = g * free
        # L-BFGS step, per row
        d = -_inverse_hessian_times(g_free, pairs, gamma[:, None] * scale) * free
        not_descent = ((g * d).sum(-1) >= 0)[:, None]
        d = torch.where(not_descent, -scale * g_free, d)
        t, f_new, g_new = _strong_wolfe(loss_and_grad, x, d, f, g, active, config.max_line_search)
        s, y = t[:, None] * d, g_new - g
        sy = (s * y).sum(-1)
        update = active & (t > 0) & (sy > 1e-12)  # strong Wolfe makes s·y > 0 whenever the row moved
        # one history slot per iteration for every row (a no-op pair where the row has none), so that a row's
        # history never depends on what the other rows did
        pairs = [*pairs, (s, y, torch.where(update, 1.0 / sy, 0.0))][-config.history:]
        gamma = torch.where(update, sy / (y * scale * y).sum(-1), gamma)
        moved = active & (t > 0)
        x = torch.where(moved[:, None], x + s, x)
        stalled = (f - f_new <= config.tolerance_change * (1.0 + f.abs())) | (s.abs().amax(-1) <= 1e-12)
        f, g = torch.where(moved, f_new, f), torch.where(moved[:, None], g_new, g)
        active = active & ~stalled
        if not bool(active.any()):
            break
    return x


def _inverse_hessian_times(g, pairs, h0):
    """H g by L-BFGS's two-loop recursion, per row: pairs (s, y, ρ = 1/s·y) oldest first, H0 = diag(h0)."""
    q, alphas = g, []
    for s, y, rho in reversed(pairs):
        a = rho * (s * q).sum(-1)
        q = q - a[:, None] * y
        alphas.append(a)
    r = h0 * q
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        r = r + (a - rho * (y * r).sum(-1))[:, None] * s
    return r


def _cubic_minimum(t1, f1, g1, t2, f2, g2, low, high):
    """Minimiser of the cubic through (t1, f1, slope g1) and (t2, f2, g2), kept in [low, high]; per row.

    As torch.optim.lbfgs._cubic_interpolate; the middle of [low, high] where the cubic has no minimum."""
    d1 = g1 + g2 - 3.0 * (f1 - f2) / (t1 - t2)
    d2_square = d1 * d1 - g1 * g2
    # numpy's sqrt: torch's goes through MKL's threaded vector maths, milliseconds a call on a busy machine
    d2 = torch.from_numpy(np.sqrt(d2_square.clamp(min=0.0).numpy()))
    from_t1 = t1 - (t1 - t2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
    from_t2 = t2 - (t2 - t1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
    t = torch.minimum(torch.maximum(torch.where(t1 <= t2, from_t2, from_t1), low), high)
    return torch.where((d2_square >= 0) & torch.isfinite(t), t, 0.5 * (low + high))


def _strong_wolfe(loss_and_grad, x, d, f0, g0, active, max_evals, c1=1e-4, c2=0.9, tolerance=1e-9):
    """Per-row line search along d to a step t meeting the strong Wolfe conditions
        f(x + t d) <= f(x) + c1 t g·d   and   |g(x + t d)·d| <= c2 |g·d|,
    by bracketing (the step grows up to 10x a trial) then zooming with cubic interpolation: Nocedal & Wright
    alg. 3.5/3.6 as torch.optim.lbfgs._strong_wolfe does it, one state per row. Returns (t, f, g) per row;
    t = 0 (no move) for inactive rows and rows where no step decreased the loss.

    `lo` is the best point so far that meets the first condition (starts at t = 0); `hi` the other end of the
    bracket once there is one. Every trial evaluates all rows together; a row uses its own values only."""
    slope0 = (g0 * d).sum(-1)
    zeros = torch.zeros_like(f0)
    t = torch.ones_like(f0)  # the quasi-Newton step
    lo_t, lo_f, lo_g, lo_slope = zeros, f0.clone(), g0.clone(), slope0.clone()
    hi_t, hi_f, hi_slope = zeros.clone(), f0.clone(), slope0.clone()
    bracketing, zooming = active.clone(), torch.zeros_like(active)
    insufficient = torch.zeros_like(active)
    d_max = d.abs().amax(-1)
    for k in range(max_evals):
        f_t, g_t = loss_and_grad(x + t[:, None] * d)
        slope = (g_t * d).sum(-1)
        too_high = ~(f_t <= f0 + c1 * t * slope0) | (f_t >= lo_f)  # also true where f_t is not finite
        curvature_met = slope.abs() <= -c2 * slope0
        if k == 0 and bool((~bracketing | (~too_high & curvature_met)).all()):  # every row takes its first trial
            return torch.where(bracketing, t, zeros), torch.where(bracketing, f_t, f0), \
                torch.where(bracketing[:, None], g_t, g0)
        # bracketing: [lo, t] brackets a Wolfe step when t is too high or the slope turned up; t may be one
        br_high = bracketing & too_high
        br_done = bracketing & ~too_high & curvature_met
        br_up = bracketing & ~too_high & ~curvature_met & (slope >= 0)
        br_grow = bracketing & ~too_high & ~curvature_met & (slope < 0)
        # zooming: t replaces hi when too high, otherwise lo (the old lo becomes hi if the slope says so)
        zo_high = zooming & too_high
        zo_low = zooming & ~too_high
        zo_done = zo_low & curvature_met
        zo_flip = zo_low & ~curvature_met & (slope * (hi_t - lo_t) >= 0)
        new_hi = br_high | zo_high
        old_lo_to_hi = br_up | zo_flip
        new_lo = br_done | br_up | br_grow | zo_low
        tried = t  # the step f_t, g_t belong to (a growing row's next trial is set below, after lo takes it)
        if bool(br_grow.any()):  # (the interpolations are only computed when some row needs them)
            t_grow = _cubic_minimum(lo_t, lo_f, lo_slope, t, f_t, slope, t + 0.01 * (t - lo_t), 10.0 * t)
            t = torch.where(br_grow, t_grow, t)
        hi_t = torch.where(new_hi, tried, torch.where(old_lo_to_hi, lo_t, hi_t))
        hi_f = torch.where(new_hi, f_t, torch.where(old_lo_to_hi, lo_f, hi_f))
        hi_slope = torch.where(new_hi, slope, torch.where(old_lo_to_hi, lo_slope, hi_slope))
        lo_t, lo_f = torch.where(new_lo, tried, lo_t), torch.where(new_lo, f_t, lo_f)
        lo_g, lo_slope = torch.where(new_lo[:, None], g_t, lo_g), torch.where(new_lo, slope, lo_slope)
        zooming = (zooming & ~zo_done) | br_high | br_up
        bracketing = br_grow
        # next trial in a bracket: its cubic minimum, kept away from the ends
        zooming = zooming & ((hi_t - lo_t).abs() * d_max >= tolerance)
        if bool(zooming.any()):
            a, b = torch.minimum(lo_t, hi_t), torch.maximum(lo_t, hi_t)
            inner = _cubic_minimum(lo_t, lo_f, lo_slope, hi_t, hi_f, hi_slope, a, b)
            eps = 0.1 * (b - a)
            near_end = torch.minimum(b - inner, inner - a) < eps
            push = near_end & (insufficient | (inner >= b) | (inner <= a))
            inner = torch.where(push, torch.where((inner - b).abs() < (inner - a).abs(), b - eps, a + eps), inner)
            insufficient = zooming & near_end & ~push
            t = torch.where(zooming, inner, t)
        elif not bool(bracketing.any()):
            break
    return lo_t, lo_f, lo_g


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



def _solve_sym3(h: list[np.ndarray], b: np.ndarray) -> np.ndarray:
    """x with H x = b for many symmetric 3x3 H given as (xx, yy, zz, xy, xz, yz), by the adjugate."""
    xx, yy, zz, xy, xz, yz = h
    c00, c11, c22 = yy * zz - yz * yz, xx * zz - xz * xz, xx * yy - xy * xy
    c01, c02, c12 = xz * yz - xy * zz, xy * yz - yy * xz, xy * xz - xx * yz
    det = xx * c00 + xy * c01 + xz * c02
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    return np.stack([c00 * b0 + c01 * b1 + c02 * b2, c01 * b0 + c11 * b1 + c12 * b2,
                     c02 * b0 + c12 * b1 + c22 * b2], 1) / det[:, None]
