"""RAFO: every residual limb is its own problem, whatever else is in the batch (paper §3.3, "we optimize each
residual-limb independently"), and the per-row L-BFGS / strong-Wolfe machinery behind it."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from resihmr_blender.core.camera import Camera
from resihmr_blender.core.rafo import (
    LimbProblem,
    RafoConfig,
    _strong_wolfe,
    lambda_intervals,
    rafo_loss,
    rafo_loss_and_grad,
    solve,
)
from resihmr_blender.core.residuals import RESIDUALS

TOL = 1e-9


def random_limbs(n: int, seed: int = 0) -> list[LimbProblem]:
    """Plausible limbs: cameras, depths, segment directions and lengths, targets off the segment by noise."""
    rng = np.random.default_rng(seed)
    limbs = []
    for i in range(n):
        cam = Camera(1080, 1920, float(rng.uniform(1000, 2500)))
        anchor = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.8), rng.uniform(2.0, 6.0)])
        direction = rng.normal(size=3)
        upstream = anchor + rng.uniform(0.25, 0.45) * direction / np.linalg.norm(direction)
        lam = rng.uniform(0.05, 0.95)
        target = cam.project_np(anchor + lam * (upstream - anchor)) + rng.normal(0, 8, 2)
        limbs.append(LimbProblem(RESIDUALS[i % len(RESIDUALS)], anchor, upstream, target, cam,
                                 float(rng.uniform(1, 20))))
    return limbs


def hostile_limbs(base: list[LimbProblem]) -> list[LimbProblem]:
    """Limbs from broken files: absurd image size, far target, anchor behind the camera, NaN / inf input."""
    p = base[0]
    return [
        replace(p, camera=Camera.for_image(10**7, 10**7)),  # an absurd image size: losses of ~1e13 px²
        replace(p, target=p.target + 1e6),
        replace(p, anchor_init=p.anchor_init * np.array([1.0, 1.0, -1.0])),
        replace(p, fit_error_px=1e9, target=p.target + 300.0),
        replace(p, target=np.array([np.nan, 1.0])),
        replace(p, camera=Camera(100, 100, float("inf"))),
        replace(p, upstream=p.anchor_init.copy()),  # zero-length segment
    ]


def assert_same(a, b):
    assert a.kind == b.kind
    assert abs(a.lam - b.lam) <= TOL, (a.lam, b.lam)
    assert np.abs(a.anchor_3d - b.anchor_3d).max() <= TOL
    assert abs(a.reproj_error_px - b.reproj_error_px) <= TOL
    assert a.accepted == b.accepted


def test_hostile_limbs_in_the_batch_change_no_other_limb():
    limbs = random_limbs(24, seed=1)
    clean = solve(limbs)
    bad = hostile_limbs(limbs)
    mixed = bad[:3] + limbs[:12] + bad[3:] + limbs[12:]  # hostile rows before, between and around
    dirty = solve(mixed)
    for res, ref in zip(dirty[3:15] + dirty[15 + len(bad) - 3:], clean):
        assert_same(res, ref)
    # the hostile rows themselves are reported, rejected, and break nothing
    for res in dirty[:3] + dirty[15:15 + len(bad) - 3]:
        assert 0.0 <= res.lam <= 1.0 or np.isnan(res.lam)
    assert not dirty[0].accepted and not dirty[1].accepted
    assert sum(r.accepted for r in clean) >= 20


@pytest.mark.parametrize("position", [0, 17, 50])
def test_a_limb_alone_and_in_a_batch_of_50_others_gives_the_same_result(position):
    limbs = random_limbs(51, seed=2)
    batch = solve(limbs[:position] + limbs[position + 1:position + 1] + limbs[position:position + 1]
                  + limbs[position + 1:])
    for i in (position, (position + 5) % 51, (position + 33) % 51):
        assert_same(solve([limbs[i]])[0], batch[i])


def test_results_do_not_depend_on_the_order_of_the_batch():
    limbs = random_limbs(30, seed=3)
    forward = solve(limbs)
    backward = solve(limbs[::-1])[::-1]
    for a, b in zip(forward, backward):
        assert_same(a, b)


def test_every_limb_converges_to_a_stationary_point():
    limbs = random_limbs(40, seed=4)
    config = RafoConfig()
    results = solve(limbs, config)
    for p, r in zip(limbs, results):
        if not (config.lambda_min < r.lam < config.lambda_max):
            continue
        tilt = config.tilt_terms([p])[0]  # what RAFO minimises: eq. 4 and the tilt prior
        g0 = grad_at(p, r.anchor_init_3d, config.lambda_init, r.alpha, r.mu, tilt)
        g = grad_at(p, r.anchor_3d, r.lam, r.alpha, r.mu, tilt)
        ppm = p.camera.focal_length / p.anchor_init[2]
        seg_px = ppm * np.linalg.norm(p.upstream - p.anchor_init)
        scaled, scaled0 = g / [ppm, ppm, ppm, seg_px], g0 / [ppm, ppm, ppm, seg_px]  # pixels
        assert np.abs(scaled).max() <= 1e-4 * max(1.0, np.abs(scaled0).max()), (scaled, scaled0)


def grad_at(p, anchor, lam, alpha, mu, tilt=None):
    def t(v):  # one row
        return torch.tensor(np.asarray(v, dtype=np.float64))[None]
    _, ga, gl = rafo_loss_and_grad(t(anchor), t(lam), t(p.anchor_init), t(p.upstream), t(p.target),
                                   t(p.camera.focal_length), t(p.camera.principal_point), t(alpha), t(mu),
                                   None if tilt is None else (t(tilt[0]), t(tilt[1])))
    return np.concatenate([ga[0].numpy(), gl.numpy()])


def _random_rows(seed: int, behind_camera: bool = False, n: int = 64):
    """n random RAFO rows (anchor, λ, then eq. 4's other inputs) and the generator's keyword arguments."""
    f64 = dict(dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    anchor = (torch.randn(n, 3, **f64) * 0.3 + torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64))
    if behind_camera:
        anchor[0, 2] = -0.5  # behind the camera: the depth clamp has zero gradient
    anchor.requires_grad_(True)
    lam = torch.rand(n, **f64).requires_grad_(True)
    anchor_init = anchor.detach() + 0.05 * torch.randn(n, 3, **f64)
    upstream = anchor.detach() + 0.4 * torch.randn(n, 3, **f64)
    target = torch.rand(n, 2, **f64) * 1000
    focal, centre = torch.rand(n, **f64) * 1000 + 1000, torch.full((n, 2), 500.0, dtype=torch.float64)
    alpha, mu = torch.rand(n, **f64) * 1e3, torch.rand(n, **f64) * 1e5
    return anchor, lam, (anchor_init, upstream, target, focal, centre, alpha, mu), f64


def test_the_written_out_gradient_is_the_gradient_of_eq_4():
    anchor, lam, (anchor_init, upstream, target, focal, centre, alpha, mu), _ = _random_rows(0, behind_camera=True)
    loss, g_anchor, g_lam = rafo_loss_and_grad(anchor, lam, anchor_init, upstream, target, focal, centre, alpha, mu)
    auto_anchor, auto_lam = torch.autograd.grad(
        rafo_loss(anchor, lam, anchor_init, upstream, target, focal, centre, alpha, mu).sum(), [anchor, lam])
    assert torch.allclose(g_anchor, auto_anchor, rtol=1e-10, atol=1e-8)
    assert torch.allclose(g_lam, auto_lam, rtol=1e-10, atol=1e-8)
    assert torch.equal(loss, rafo_loss(anchor, lam, anchor_init, upstream, target, focal, centre, alpha, mu))


def test_lambda_held_at_its_bound_still_moves_the_anchor():
    """Endpoint beyond the upstream joint, anchor held near its estimate (strong α, μ, so the segment cannot
    flip over Jt): λ stops at λmax and Ja alone brings the endpoint as close as it can, the same optimum as
    with λ fixed at λmax."""
    cam = Camera(1080, 1920, 1600.0)
    ja, jt = np.array([0.1, 0.45, 3.0]), np.array([0.1, 0.05, 3.0])
    beyond = LimbProblem(RESIDUALS[0], ja, jt, cam.project_np(ja + 1.3 * (jt - ja)) + [20.0, 0.0], cam, 2.0)
    strong = dict(alpha0=0.1, mu0=5.0)
    free = solve([beyond], RafoConfig(lambda_max=0.9, **strong))[0]
    fixed = solve([beyond], RafoConfig(lambda_min=0.9, lambda_max=0.9, lambda_init=0.9, **strong))[0]
    assert free.lam == 0.9
    assert np.linalg.norm(free.anchor_3d - free.anchor_init_3d) > 0.01
    assert abs(free.reproj_error_px - fixed.reproj_error_px) < 1e-4
    assert np.abs(free.anchor_3d - fixed.anchor_3d).max() < 1e-5


def test_strong_wolfe_line_search_per_row():
    """Rows whose minimum along d lies far beyond, just at, or well short of the unit step: each row gets a
    step meeting both strong Wolfe conditions, the same alone as together."""
    minima = torch.tensor([40.0, 1.0, 0.01, 0.3, 7.0], dtype=torch.float64)
    curv = torch.tensor([1.0, 3.0, 100.0, 0.5, 2.0], dtype=torch.float64)

    def loss_and_grad_of(rows):
        def fn(x):  # a quartic valley along x[:, 0] with its minimum at minima[rows]
            u = x[:, 0] - minima[rows]
            f = curv[rows] * (u**2 + 0.1 * u**4) + x[:, 1] ** 2
            g = torch.stack([curv[rows] * (2 * u + 0.4 * u**3), 2 * x[:, 1]], 1)
            return f, g
        return fn

    rows = torch.arange(5)
    x = torch.zeros(5, 2, dtype=torch.float64)
    d = torch.tensor([[1.0, 0.0]] * 5, dtype=torch.float64)
    fn = loss_and_grad_of(rows)
    f0, g0 = fn(x)
    active = torch.ones(5, dtype=torch.bool)
    t, f, g = _strong_wolfe(fn, x, d, f0, g0, active, 25)
    slope0 = (g0 * d).sum(-1)
    assert (t > 0).all()
    assert (f <= f0 + 1e-4 * t * slope0).all()
    assert ((g * d).sum(-1).abs() <= 0.9 * slope0.abs()).all()
    for i in range(5):
        fi = loss_and_grad_of(rows[i:i + 1])
        ti, _, _ = _strong_wolfe(fi, x[i:i + 1], d[i:i + 1], f0[i:i + 1], g0[i:i + 1], active[i:i + 1], 25)
        assert ti.item() == t[i].item()
    # an inactive row does not move
    t_off, f_off, _ = _strong_wolfe(fn, x, d, f0, g0, torch.tensor([True, False, True, True, True]), 25)
    assert t_off[1] == 0 and f_off[1] == f0[1] and t_off[0] == t[0]


# ---------------------------------------------------------------------------------------------------------------
# The outline's tilt term (core/silhouette.py): L_sil = ν ρ² (|d·z| − sin θ_obs)²


def test_the_written_out_gradient_holds_with_the_tilt_term():
    anchor, lam, args, f64 = _random_rows(1)
    n = anchor.shape[0]
    weight = torch.rand(n, **f64) * 500 * (torch.arange(n) % 3 > 0)  # a third of the rows without a cue
    tilt = (weight, torch.rand(n, **f64))
    loss, g_anchor, g_lam = rafo_loss_and_grad(anchor, lam, *args, tilt)
    auto_anchor, auto_lam = torch.autograd.grad(rafo_loss(anchor, lam, *args, tilt).sum(), [anchor, lam])
    assert torch.allclose(g_anchor, auto_anchor, rtol=1e-10, atol=1e-8)
    assert torch.allclose(g_lam, auto_lam, rtol=1e-10, atol=1e-8)
    plain = rafo_loss(anchor, lam, *args)
    assert torch.equal(loss[weight == 0], plain[weight == 0]) and bool((loss[weight > 0] >= plain[weight > 0]).all())


def test_the_tilt_cue_settles_lambda_where_the_endpoint_alone_cannot():
    """A shank tilted 50° towards the camera, the fit's anchor in the image plane: from the endpoint alone RAFO
    keeps the anchor and shortens the limb (λ far too large); the outline's tilt turns the anchor and λ follows,
    with a narrower λ interval. ν = 0 is eq. 4 exactly."""
    cam = Camera(1000, 1000, 2000.0)
    upstream, length, lam_true = np.array([0.0, 0.0, 3.0]), 0.4, 0.3
    t = np.radians(50.0)
    d_true = np.array([0.0, -np.cos(t), np.sin(t)])  # from the anchor to the upstream joint: up, away
    anchor_true = upstream - length * d_true
    target = cam.project_np(anchor_true + lam_true * (upstream - anchor_true))
    anchor_init = upstream - length * np.array([0.0, -1.0, 0.0])  # the fit: in the image plane
    base = LimbProblem(RESIDUALS[5], anchor_init, upstream, target, cam, 3.0)
    plain = solve([base])[0]
    # a clear outline (ν ρ² well above the anchor's α: eq. 4 keeps the fit's anchor unless the evidence outweighs it)
    cued = solve([replace(base, sin_tilt=float(np.sin(t)), radius_px=30.0, tilt_weight=20.0)])[0]
    off = solve([replace(base, sin_tilt=float(np.sin(t)), radius_px=30.0, tilt_weight=0.0)])[0]
    assert abs(plain.lam - lam_true) > 0.15
    assert abs(cued.lam - lam_true) < 0.05 and cued.reproj_error_px < 1.0
    # the interval: the plain one is narrow about the wrong λ (the anchor pinned by α), the cued one holds the truth;
    # at the cued solution, the cue narrows the interval against the same profile without it
    assert not plain.lam_interval[0] <= lam_true <= plain.lam_interval[1]
    assert cued.lam_interval[0] <= lam_true <= cued.lam_interval[1]
    rows = [np.array([v]) for v in (cued.anchor_3d,)] + [np.array([cued.lam])]
    common = (np.array([cued.alpha]), np.array([cued.mu]), RafoConfig())
    geometry = (np.array([anchor_init]), np.array([upstream]), np.array([target]), np.array([2000.0]),
                np.array([[500.0, 500.0]]))
    loss = lambda tilt: rafo_loss(*(torch.tensor(a) for a in (rows[0], rows[1], *geometry, *common[:2])),  # noqa: E731
                                  None if tilt is None else tuple(torch.tensor(tilt[:, i]) for i in (0, 1))).numpy()
    tilt = np.array([[20.0 * 30.0**2, np.sin(t)]])
    with_cue = lambda_intervals(rows[0], rows[1], loss(tilt), *geometry, *common, tilt=tilt)[0]
    without = lambda_intervals(rows[0], rows[1], loss(None), *geometry, *common)[0]
    assert with_cue[1] - with_cue[0] < without[1] - without[0]
    assert off.lam == plain.lam and off.lam_interval == plain.lam_interval


def test_the_line_search_returns_the_loss_of_the_step_it_returns():
    """A row still growing its step when the evaluations run out keeps its last evaluated step with that step's
    loss (it once returned the next, unevaluated step with the previous step's loss, and L-BFGS then stalled on a
    loss it never had)."""
    def loss_and_grad(x):  # (x − 30)² per row: the minimum far beyond the first trial step
        return ((x - 30.0) ** 2).sum(-1), 2.0 * (x - 30.0)

    x = torch.zeros(3, 1, dtype=torch.float64)
    d = torch.ones(3, 1, dtype=torch.float64)
    f0, g0 = loss_and_grad(x)
    for evals in (1, 2, 3):
        t, f, g = _strong_wolfe(loss_and_grad, x, d, f0, g0, torch.ones(3, dtype=torch.bool), evals)
        f_at, g_at = loss_and_grad(x + t[:, None] * d)
        assert bool((t > 0).all()) and torch.equal(f, f_at) and torch.equal(g, g_at)


def test_the_tilt_prior_takes_lambda_to_a_typical_tilt_and_the_interval_spans_the_hypotheses():
    """A shank tilted 35° towards the camera (sin 0.57), the fit's anchor in the image plane: eq. 4 alone keeps the
    anchor where it is and reads the endpoint's short image as a short stump; the tilt prior turns the segment to a
    typical tilt and λ moves towards the truth. The interval holds the λ of a low and of a steep tilt."""
    cam = Camera(1000, 1000, 2000.0)
    upstream, length, lam_true = np.array([0.0, 0.0, 3.0]), 0.4, 0.3
    t = np.radians(35.0)
    anchor_true = upstream - length * np.array([0.0, -np.cos(t), np.sin(t)])
    target = cam.project_np(anchor_true + lam_true * (upstream - anchor_true))
    base = LimbProblem(RESIDUALS[5], upstream - length * np.array([0.0, -1.0, 0.0]), upstream, target, cam, 3.0)
    off = solve([base], RafoConfig(tilt_prior_sd=0.0))[0]
    on = solve([base])[0]
    assert abs(on.lam - lam_true) < 0.8 * abs(off.lam - lam_true) and on.reproj_error_px < 1.0
    ray = np.array([*(target - cam.principal_point) / cam.focal_length, 1.0])
    tilt = abs((upstream - on.anchor_3d) @ ray) / np.linalg.norm(upstream - on.anchor_3d) / np.linalg.norm(ray)
    assert 0.2 < tilt < RafoConfig().tilt_prior_sin + 0.05  # the anchor turned from the image plane to a typical tilt
    assert off.lam_hypotheses == {} and set(on.lam_hypotheses) == {"0.07", "0.67"}
    low, steep = on.lam_hypotheses["0.07"], on.lam_hypotheses["0.67"]
    assert steep < on.lam < low and on.lam_interval[0] <= steep and low <= on.lam_interval[1]
