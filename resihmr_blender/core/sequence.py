"""Keypoint sequences from video (issue 16): OpenPose's per-frame files -> one person followed across frames ->
one shape and one λ per residual limb for the whole clip, a pose per frame.

Reading (`read_sequence`): a folder of `<video>_<frame>_keypoints.json` (OpenPose's --write_json naming), in
frame order; a frame number with no file, a file that cannot be read, a frame without the followed person and
(later, in the fit) a frame with too few keypoints are *marked* with the reason, never fatal. The person is
followed by OpenPose's `person_id` when the file sets one (>= 0), else by the nearest keypoints to where they
were last seen (gated by their size, so a second person walking past is not taken).

Fitting (`fit_sequence`), all on the CPU and batched over frames. As in the photo fit (issue 12 item 4), the
intact keypoints alone place the body; residual endpoints only turn their segment's upstream joint, which moves
only the limb's ignored distal part, so declaring a residual limb never moves an intact joint of any frame:
1. key frames (every `key_every`-th usable frame) get the photo fit of their intact keypoints (fit.fit_people:
   the facing start, retries of other starts and limb poses where a keypoint stays far, staged LM);
2. the frames between them are fitted from the previous frame's result (warm start, one start, a few LM
   iterations), all segments between key frames at once, one frame step after the other;
3. a joint refinement over the whole clip: one shape shared by every frame, every frame's pose, the same
   robust data term (fit.FitObjective's own projection) and priors as the photo fit, plus acceleration (and,
   off by default, velocity) terms on the 3D keypoints (in the data term's units, percent of the torso): damped
   Gauss-Newton on every frame's pose at once (block-banded normal equations, solved exactly), then the shape
   (L-BFGS), then Gauss-Newton again; last, Gauss-Newton on the residual segments' upstream joints alone, in
   every frame, the endpoints now in the data term (the temporal terms carry a segment through frames without
   an endpoint);
4. RAFO over the clip (below), then the segment stage once more with each endpoint pulling the stump's tip at
   the clip's λ (a segment also tilts towards or away from the camera until a stump of that length reaches its
   endpoint), then RAFO again on those segments.
RAFO over the sequence: eq. 3-5 of every frame that shows the limb's endpoint, summed, with one λ per limb
shared by all frames and one anchor per frame (rafo.rafo_loss), or with SequenceConfig.anchor = "shared" one
anchor offset per limb for the clip, fixed in its upstream joint's bone frame (measured worse, see there). The
shared λ itself comes by default from what
only a clip can tell: a stump of one length seen at changing tilts projects to at most its length, so the upper
envelope of its projected lengths gives it (sequence_rafo._envelope_lambda; measured 3x closer than eq. 3-5 with
λ free, which is kept in the result as lambda_rafo_sum); eq. 3-5 summed then place every frame's anchor at that
λ. Acceptance per frame (the endpoint's reprojection error below the threshold) and overall (the median over the
frames that show it).
Endpoints given on some frames only: the frames in between still ignore the limb's distal keypoints, and their
endpoint is tracked along the fitted segment at the shared λ (marked `tracked`).

No bpy here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import priors
from .body_model import BodyModel
from .camera import Camera
from .fit import (
    SEGMENT_ANCHOR,
    SEGMENT_UPSTREAM,
    FitConfig,
    FitError,
    FitObjective,
    PersonFit,
    _project,
    check_person,
    fit_people,
    keypoint_weights,
    torch_threads,
)
from .keypoints import Person
from .residuals import RESIDUAL_KINDS, RESIDUALS
from .sequence_frames import TOO_FEW, Sequence, SequenceError
from .sequence_rafo import SequenceResidual, bone_rotations, sequence_rafo

# the refinement's trust region: a step's mean keypoint move in a frame, x the robust scale. Measured on four
# seed-23 clips: 0.5 -> sitting 12.2 px, 1.0 -> 5.9 px, 2.0 -> 6.9 px, none -> 22.6 px (walking clips equal)
STEP_REACH = 1.0
UNDECLARED = 1e-3  # confidence of a residual limb declared on other frames: its distal points are ignored here
# (fit.keypoint_weights treats conf > 0 as declared) while the endpoint itself weighs nothing (< min_confidence)


# ---------------------------------------------------------------------------------------------------------------
# Fitting


@dataclass
class SequenceConfig:
    key_every: int = 20  # a photo fit (fit.fit_people with its retries) on every n-th usable frame
    warm_iters: int = 4  # LM iterations for a frame started from the previous frame's result
    refine_iters: int = 4  # Gauss-Newton iterations of the joint refinement, before the shape (0: none)
    final_iters: int = 2  # ... and after it
    segment_iters: int = 4  # ... then on the residual segments' upstream joints alone
    # temporal terms on the 3D BODY_25 points, per point and frame, in (percent of the torso)² like the data term:
    # velocity (P_t − P_t−1) and acceleration (P_t−1 − 2 P_t + P_t+1), only across consecutive fitted frames
    velocity_weight: float = 0.0
    acceleration_weight: float = 2.0
    max_gap: int = 1  # frames further apart than this are not linked by the temporal terms
    # the shared λ: "envelope" (the shortest stump reaching the frames' endpoints, at this percentile of the
    # projected lengths) or "rafo" (eq. 3-5 summed with λ free); see sequence_rafo._envelope_lambda for the
    # measurements
    lambda_from: str = "envelope"
    envelope_percentile: float = 75.0
    # the anchors of eq. 4: "frame" (one per frame) or "shared" (one offset per limb for the clip, in the bone
    # frame of the limb's upstream joint). Measured (bench_sequence, 4 people per motion, with retilt): shared
    # reaches the true endpoint worse (6.3 / 8.5 / 3.6 px against 3.5 / 3.6 / 3.3 walking / sitting / reaching):
    # the fitted tilt still varies from frame to frame in ways one offset cannot follow
    anchor: str = "frame"
    # after λ: the segment stage again with each endpoint pulling the stump's tip at the clip's λ, then RAFO
    # again (_retilt). Measured (bench_sequence, 4 people per motion): the endpoint against the true endpoint
    # 3.87 -> 3.54 px walking, 3.95 -> 3.61 sitting down, 3.64 -> 3.29 reaching, jitter and λ unchanged; +7 % CPU
    retilt: bool = True


@dataclass
class SequenceFit:
    sequence: Sequence
    camera: Camera
    fitted: list[int]  # indices into sequence.frames, one per row of the arrays below
    betas: np.ndarray  # (K,) one shape for the clip
    global_orient: np.ndarray  # (T, 3)
    body_pose: np.ndarray  # (T, 63)
    transl: np.ndarray  # (T, 3)
    joints_3d: np.ndarray  # (T, 55, 3) camera frame
    body25_3d: np.ndarray  # (T, 25, 3) camera frame
    body25_2d: np.ndarray  # (T, 25, 2)
    used: np.ndarray  # (T, 25) bool: keypoints that drove the fit
    errors_px: np.ndarray  # (T,) mean reprojection error over the used keypoints
    residuals: list[SequenceResidual]
    reference_length_px: np.ndarray  # (T,) the 2D torso length per frame
    timings_s: dict = field(default_factory=dict)

    def frame_numbers(self) -> list[int]:
        return [self.sequence.frames[i].number for i in self.fitted]

    def person_fit(self, row: int, num_expression: int = 10) -> PersonFit:
        """Frame `row` as a photo fit (what the avatar and result_json build from)."""
        return PersonFit(betas=self.betas.copy(), global_orient=self.global_orient[row].copy(),
                         body_pose=self.body_pose[row].copy(), transl=self.transl[row].copy(),
                         expression=np.zeros(num_expression), camera=self.camera, joints_3d=self.joints_3d[row].copy(),
                         body25_3d=self.body25_3d[row].copy(), body25_2d=self.body25_2d[row].copy(),
                         used=self.used[row].copy(),
                         fit_error_px=float(self.errors_px[row]),
                         reference_length_px=float(self.reference_length_px[row]))


def _camera(sequence: Sequence, settings) -> Camera:
    width, height = settings.image_size or sequence.image_size or (None, None)
    if not width or not height:
        raise SequenceError(f"{sequence.folder}: image size unknown (OpenPose's files do not hold it): pass "
                            "--image-size WIDTHxHEIGHT")
    return Camera.for_image(int(width), int(height), settings.focal_length_px or sequence.focal_length_px)


def _declared(person: Person, flags: np.ndarray, min_confidence: float) -> Person:
    """The person with every residual limb of the clip declared: given endpoints kept, the others at UNDECLARED."""
    residual = person.residual.copy()
    given = residual[:, 2] >= min_confidence
    residual[~given] = 0.0
    residual[flags & ~given] = [0.0, 0.0, UNDECLARED]
    return Person(body25=person.body25, residual=residual, body25_available=person.body25_available,
                  source_format=person.source_format)


def fit_sequence(model: BodyModel, sequence: Sequence, settings=None, config: SequenceConfig | None = None,
                 progress=None) -> SequenceFit:
    """One shape, one λ per residual limb, a pose per usable frame (see the module docstring). Torch threads:
    the settings' number, else one — the per-frame batches are small and on a shared 2-core machine two threads
    made a 300-frame clip 5.5x slower (168 s against 31 s at load average 4-6)."""
    with torch_threads((settings.fit.num_threads if settings is not None else 0) or 1):
        return _fit_sequence(model, sequence, settings, config, progress)


def _fit_sequence(model: BodyModel, sequence: Sequence, settings, config: SequenceConfig | None,
                  progress) -> SequenceFit:
    from .settings import Settings

    settings = settings or Settings()
    config = config or SequenceConfig()
    if config.lambda_from not in ("envelope", "rafo"):  # before the fit: a typo costs no minute of fitting
        raise SequenceError(f"lambda_from must be 'envelope' or 'rafo', got {config.lambda_from!r}")
    if config.anchor not in ("frame", "shared"):
        raise SequenceError(f"anchor must be 'frame' or 'shared', got {config.anchor!r}")
    fit_cfg, rafo_cfg = settings.fit, settings.rafo
    report = progress or (lambda stage, fraction: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    camera = _camera(sequence, settings)
    flags = np.isin(RESIDUAL_KINDS, sequence.residual_kinds())
    fitted, people, inits = [], [], []
    for i in sequence.usable():
        frame = sequence.frames[i]
        person = _declared(frame.person, flags, fit_cfg.min_confidence)
        weights = keypoint_weights(person, fit_cfg)
        try:
            top, bottom = check_person(person, weights)
        except FitError as exc:
            frame.status, frame.reason = TOO_FEW, str(exc)
            continue
        res_w = person.residual[:, 2] * (person.residual[:, 2] >= fit_cfg.min_confidence)
        kp = np.concatenate([person.body25[:, :2], person.residual[:, :2]])
        length = float(np.linalg.norm(kp[top].mean(0) - kp[bottom].mean(0)))
        fitted.append(i)
        people.append(person)
        inits.append((kp, np.concatenate([weights, res_w if fit_cfg.residual_segments else np.zeros(8)]), length))
    if not fitted:
        reasons = sorted({f.reason for f in sequence.frames if f.status != "ok"})
        raise SequenceError(f"{sequence.folder}: no frame can be fitted ({'; '.join(reasons)[:300]})")
    n = len(fitted)
    dtype = model.dtype
    kp = torch.tensor(np.stack([k for k, _, _ in inits]), dtype=dtype)
    w = torch.tensor(np.stack([wt for _, wt, _ in inits]), dtype=dtype)
    lengths = np.array([max(length, 1.0) for _, _, length in inits])
    scale = torch.tensor(lengths / 100.0, dtype=dtype)
    focal = torch.full((n,), float(camera.focal_length), dtype=dtype)
    centre = torch.tensor([camera.principal_point] * n, dtype=dtype)
    numbers = np.array([sequence.frames[i].number for i in fitted])

    # 1. key frames: the photo fit
    step = max(1, int(config.key_every))
    keys = list(range(0, n, step))
    report("fit", 0.05)
    # the photo fit of the intact keypoints alone (every residual limb declared, no endpoint given): the
    # segments turn once, over the whole clip, in the refinement's last stage
    key_fits = fit_people(model, [_declared(people[k], flags, math.inf) for k in keys], [camera] * len(keys),
                          fit_cfg)
    x = torch.zeros(n, 6 + model.num_betas + 63, dtype=dtype)
    for k, fit in zip(keys, key_fits):
        x[k] = torch.tensor(fit.row(), dtype=dtype)
    shared = np.median(np.stack([f.betas for f in key_fits]), axis=0)
    timings["key_frames"] = time.perf_counter() - t0

    # 2. the frames in between, each from the previous frame's result, every segment at once; as in the photo
    # fit, the intact keypoints alone place the body (residual endpoints turn their segments in step 3)
    t1 = time.perf_counter()
    w_intact = w.clone()
    w_intact[:, 25:] = 0.0
    priors_final = (fit_cfg.pose_weights[-1], fit_cfg.shape_weights[-1])
    for offset in range(1, step):
        rows = [k + offset for k in keys if k + offset < n]
        if not rows:
            break
        start = x[[r - 1 for r in rows]].clone()
        start[:, 6:6 + model.num_betas] = torch.tensor(shared, dtype=dtype)
        objective = FitObjective(model, kp[rows], focal[rows], centre[rows], scale[rows], fit_cfg)
        x[rows] = objective.solve(start, w_intact[rows], priors_final, config.warm_iters)
        report("fit", 0.05 + 0.35 * offset / step)
    timings["warm_frames"] = time.perf_counter() - t1

    # 3. the joint refinement: one shape, every pose, temporal terms
    t2 = time.perf_counter()
    betas = torch.tensor(np.median(x[:, 6:6 + model.num_betas].numpy(), axis=0), dtype=dtype)
    x = _refine(model, x, betas, kp, w, focal, centre, scale, numbers, fit_cfg, config)
    timings["refine"] = time.perf_counter() - t2
    report("rafo", 0.8)

    betas_t = x[0, 6:6 + model.num_betas]
    out, joints, body2d, rotations = _clip_pose(model, camera, x, betas_t)
    used = (w[:, :25] > 0).numpy()
    err = np.linalg.norm(body2d - kp[:, :25].numpy(), axis=-1)
    errors = np.array([err[t][used[t]].mean() for t in range(n)])

    def clip_rafo(joints, rotations, warnings):
        return sequence_rafo(people, joints, camera, errors, rafo_cfg, fit_cfg.min_confidence, flags, warnings,
                             numbers, config.envelope_percentile, config.lambda_from, rotations, config.anchor)

    t3 = time.perf_counter()
    residuals = clip_rafo(joints, rotations, sequence.warnings)
    timings["rafo"] = time.perf_counter() - t3
    if config.retilt and residuals:
        t4 = time.perf_counter()
        lams = np.zeros(len(RESIDUALS))
        for r in residuals:
            lams[RESIDUAL_KINDS.index(r.kind)] = r.lam
        x = _retilt(model, x, kp, w, focal, centre, scale, numbers, fit_cfg, config, lams)
        out, joints, body2d, rotations = _clip_pose(model, camera, x, betas_t)
        residuals = clip_rafo(joints, rotations, [])  # (the warnings were said once)
        timings["retilt"] = time.perf_counter() - t4
    orient, transl, pose = x[:, :3], x[:, 3:6], x[:, 6 + model.num_betas:]
    timings["total"] = time.perf_counter() - t0
    report("done", 1.0)
    return SequenceFit(sequence=sequence, camera=camera, fitted=fitted, betas=betas_t.numpy().astype(np.float64),
                       global_orient=orient.numpy().astype(np.float64), body_pose=pose.numpy().astype(np.float64),
                       transl=transl.numpy().astype(np.float64), joints_3d=joints,
                       body25_3d=out.body25.numpy().astype(np.float64), body25_2d=body2d, used=used,
                       errors_px=errors, residuals=residuals, reference_length_px=lengths, timings_s=timings)


def _clip_pose(model: BodyModel, camera: Camera, x: torch.Tensor, betas: torch.Tensor):
    """The clip posed at rows x with one shape: (the joints-only output, joints (n, 55, 3) camera frame,
    BODY_25 pixels (n, 25, 2), bone rotations)."""
    orient, transl, pose = x[:, :3], x[:, 3:6], x[:, 6 + model.num_betas:]
    with torch.no_grad():
        out = model.joints_only(betas=betas.expand(len(x), -1), global_orient=orient, body_pose=pose,
                                transl=transl)
    return (out, out.joints.numpy().astype(np.float64), camera.project_np(out.body25.numpy()),
            bone_rotations(orient.numpy(), pose.numpy(), model.parents))


def _refine(model: BodyModel, x: torch.Tensor, betas: torch.Tensor, kp, w, focal, centre, scale, numbers,
            fit_cfg: FitConfig, config: SequenceConfig) -> torch.Tensor:
    """The whole clip at once, in the photo fit's order (fit.py, issue 12 item 4): the intact keypoints alone
    place the body, then each residual endpoint turns only its segment's upstream joint, which moves only the
    limb's ignored distal part, so declaring a residual limb never moves the intact body.
    Intact stage: damped Gauss-Newton (Levenberg-Marquardt) on every frame's orientation, translation and pose
    with the temporal terms, the shape held; then the one shape for all frames (L-BFGS on the betas alone); then
    Gauss-Newton again. Segment stage: Gauss-Newton on the upstream joints' rotations of the declared limbs, in
    every frame (the temporal terms on the distal points carry a segment through the frames without an endpoint).
    The temporal terms couple a frame with its two neighbours on each side, so the normal equations are
    block-banded: solved exactly by a block-tridiagonal elimination over pairs of frames (no dense system of the
    whole clip). Why not L-BFGS on everything: the chain of temporal terms is stiff (condition grows with the
    clip's length); measured, 80 L-BFGS iterations left depth jitter of ±20 cm."""
    n, nb = x.shape[0], model.num_betas
    rows = torch.cat([x[:, :6], x[:, 6 + nb:]], 1).clone()
    to_units, terms = _clip_terms(x, focal, scale, numbers, config)
    intact_w = w.clone()
    intact_w[:, 25:] = 0.0
    if config.refine_iters > 0:
        intact = _ClipProblem(model, kp, intact_w, focal, centre, scale, to_units, terms, fit_cfg)
        rows = intact.gauss_newton(rows, betas, config.refine_iters)
        betas = intact.fit_shape(rows, betas)
        rows = intact.gauss_newton(rows, betas, config.final_iters)
    free = _segment_columns(w)
    if len(free) and config.segment_iters > 0:
        segments = _ClipProblem(model, kp, w, focal, centre, scale, to_units, terms, fit_cfg)
        rows = segments.gauss_newton(rows, betas, config.segment_iters, free=free)
    return torch.cat([rows[:, :6], betas.expand(n, -1), rows[:, 6:]], 1)


def _clip_terms(x, focal, scale, numbers, config: SequenceConfig):
    """(metres -> percent of the torso, the temporal terms (weight, coefficients, first frame of each linked
    run)). One unit factor for the clip: a per-frame factor would carry the initial depth's jitter into the
    temporal terms."""
    depth = x[:, 5].clamp(min=0.5)
    to_units = (focal / (depth * scale)).median().expand(x.shape[0]).clone()
    gap = np.diff(numbers)
    terms = []
    if config.velocity_weight > 0:
        terms.append((config.velocity_weight, (-1.0, 1.0), np.nonzero(gap <= config.max_gap)[0]))
    if config.acceleration_weight > 0:
        ok = (gap[:-1] <= config.max_gap) & (gap[1:] <= config.max_gap)
        terms.append((config.acceleration_weight, (1.0, -2.0, 1.0), np.nonzero(ok)[0]))
    return to_units, terms


def _segment_columns(w) -> torch.Tensor:
    """The columns of a row [orient 3 | transl 3 | body_pose 63] (body_pose: joints 1..21) that turn the
    upstream joint of every residual segment with an endpoint in some frame."""
    limbs = np.nonzero((w[:, 25:] > 0).any(0).numpy())[0]
    return torch.tensor(sorted({6 + 3 * (SEGMENT_UPSTREAM[k] - 1) + i for k in limbs for i in range(3)}),
                        dtype=torch.long)


def _retilt(model: BodyModel, x, kp, w, focal, centre, scale, numbers, fit_cfg: FitConfig, config: SequenceConfig,
            lams: np.ndarray) -> torch.Tensor:
    """The segment stage again, now that the clip's λ per limb is known: each endpoint pulls the stump's tip
    (eq. 3 on the model's joints, R = Ja + λ (Jt − Ja)) instead of the point of the segment at its distance, so a
    segment also tilts towards or away from the camera until the stump of the clip's length reaches it."""
    n, nb = x.shape[0], model.num_betas
    rows = torch.cat([x[:, :6], x[:, 6 + nb:]], 1).clone()
    betas = x[0, 6:6 + nb]
    to_units, terms = _clip_terms(x, focal, scale, numbers, config)
    problem = _ClipProblem(model, kp, w, focal, centre, scale, to_units, terms, fit_cfg,
                           tips=torch.tensor(lams, dtype=x.dtype))
    rows = problem.gauss_newton(rows, betas, config.segment_iters, free=_segment_columns(w))
    return torch.cat([rows[:, :6], betas.expand(n, -1), rows[:, 6:]], 1)


class _ClipProblem:
    """The joint objective of a clip: per frame the fit's robust data term and priors (fit.FitObjective), plus
    temporal terms Σ w ||Σ_i c_i Q_t+i||² on the frames' 3D BODY_25 points Q (in percent of the torso)."""

    def __init__(self, model, kp, w, focal, centre, scale, to_units, terms, fit_cfg: FitConfig, tips=None):
        self.tips = tips  # (8,) λ per residual kind: endpoints pull the stump's tip (see _retilt), else None
        self.objective = FitObjective(model, kp, focal, centre, scale, fit_cfg)
        self.model, self.kp, self.w, self.focal, self.centre, self.scale = model, kp, w, focal, centre, scale
        self.to_units, self.terms, self.cfg = to_units, terms, fit_cfg
        self.sigma2 = fit_cfg.robust_sigma ** 2
        self.pose_w = fit_cfg.pose_weights[-1]
        self.shape_w = fit_cfg.shape_weights[-1]
        self.mean = priors.POSE_MEAN.to(kp.dtype)

    @staticmethod
    def _x(rows, betas):
        """FitObjective's row layout [orient 3 | transl 3 | betas K | body_pose 63]."""
        return torch.cat([rows[:, :6], betas.expand(rows.shape[0], -1), rows[:, 6:]], 1)

    def project(self, x, focal, centre, kp):
        """(the 33 model points matching the targets, the same forward's 3D BODY_25 points)."""
        proj, out = self.objective.project_output(x, focal, centre, kp)  # one forward for data and temporal terms
        if self.tips is not None:
            start, end = out.joints[:, SEGMENT_UPSTREAM], out.joints[:, SEGMENT_ANCHOR]
            tip = end + self.tips[None, :, None] * (start - end)
            proj = torch.cat([proj[:, :25], _project(tip, focal, centre)], 1)
        return proj, out.body25

    def data(self, rows, betas):
        """(squared errors (T, 33) in (percent of the torso)², the forward's 3D BODY_25 points (T, 25, 3))."""
        proj, body25 = self.project(self._x(rows, betas), self.focal, self.centre, self.kp)
        return ((proj - self.kp) ** 2).sum(-1) / self.scale[:, None] ** 2, body25

    def cost(self, rows, betas, points: bool = False):
        """The objective; with `points`, also the projected model points (T, 33, 2)."""
        proj, body25 = self.project(self._x(rows, betas), self.focal, self.centre, self.kp)
        r2 = ((proj - self.kp) ** 2).sum(-1) / self.scale[:, None] ** 2
        value = (self.w * (self.sigma2 * r2 / (self.sigma2 + r2))).sum()
        pose = rows[:, 6:]
        value = value + self.pose_w * priors.pose_l2(pose - self.mean).sum() \
            + self.cfg.limit_weight * priors.joint_limit_penalty(pose).sum() \
            + rows.shape[0] * self.shape_w * priors.shape_l2(betas[None]).sum()
        q = body25 * self.to_units[:, None, None]
        for weight, coefs, starts in self.terms:
            if len(starts):
                s = torch.tensor(starts)
                combo = sum(c * q[s + i] for i, c in enumerate(coefs))
                value = value + weight * (combo ** 2).sum()
        return (value, proj) if points else value

    def _jacobians(self, rows, betas, free):
        """Per frame: the weighted data residuals (66,) and the scaled 3D points (75,), with their Jacobians
        with respect to the free columns of the frame's row."""
        from torch.func import jacfwd, vmap

        with torch.no_grad():
            r2, _ = self.data(rows, betas)
            psi = self.sigma2 ** 2 / (self.sigma2 + r2) ** 2  # Geman-McClure's IRLS weight, held for the step
        sqrt_w = torch.sqrt(self.w * psi)
        place = torch.zeros(rows.shape[1], len(free), dtype=rows.dtype)
        place[free, torch.arange(len(free))] = 1.0  # the free columns back into the row

        def one(sub, row, kp, sw, focal, centre, scale, unit):
            full = row + place @ (sub - row[free])
            proj, body25 = self.project(self._x(full[None], betas), focal[None], centre[None], kp[None])
            proj, body25 = proj[0], body25[0]
            res = ((proj - kp) / scale * sw[:, None]).reshape(-1)
            return torch.cat([res, (body25 * unit).reshape(-1)])

        with_value = lambda *a: (one(*a),) * 2  # noqa: E731
        jac, val = vmap(jacfwd(with_value, has_aux=True))(rows[:, free], rows, self.kp, sqrt_w, self.focal,
                                                          self.centre, self.scale, self.to_units)
        nd = self.kp.shape[1] * 2
        return val[:, :nd], jac[:, :nd], val[:, nd:], jac[:, nd:]

    def _normal_equations(self, rows, betas, free):
        """Blocks of J^T J (diagonal (T, F, F), first and second off-diagonals) and J^T r (T, F) over the free
        columns F of every frame's row."""
        r, jr, q, jq = self._jacobians(rows, betas, free)
        n, d = rows.shape[0], len(free)
        with torch.no_grad():
            diag = jr.transpose(1, 2) @ jr
            grad = (jr.transpose(1, 2) @ r[..., None])[..., 0]
            off = [torch.zeros(max(n - k, 0), d, d, dtype=rows.dtype) for k in (1, 2)]
            # priors on the pose (separable: diagonal only), over the whole row, then its free columns
            prior_grad = torch.zeros_like(rows)
            prior_hess = torch.zeros_like(rows)
            prior_grad[:, 6:], prior_hess[:, 6:] = priors.pose_gradient_and_curvature(rows[:, 6:], self.pose_w,
                                                                                    self.cfg.limit_weight)
            grad += prior_grad[:, free]
            diag += torch.diag_embed(prior_hess[:, free])
            for weight, coefs, starts in self.terms:
                if not len(starts):
                    continue
                s = torch.tensor(starts)
                combo = sum(c * q[s + i] for i, c in enumerate(coefs))  # (S, 75)
                for i, ci in enumerate(coefs):
                    grad.index_add_(0, s + i, weight * ci * (jq[s + i].transpose(1, 2) @ combo[..., None])[..., 0])
                    for j, cj in enumerate(coefs):
                        if j < i:
                            continue
                        block = weight * ci * cj * (jq[s + i].transpose(1, 2) @ jq[s + j])
                        if i == j:
                            diag.index_add_(0, s + i, block)
                        else:
                            off[j - i - 1].index_add_(0, s + i, block)
        return diag, off[0], off[1], grad

    def gauss_newton(self, rows, betas, iters: int, free: torch.Tensor | None = None):
        """`free`: the columns of every frame's row that move (default all). A step is taken when it lowers the
        objective and moves no frame's body keypoints by more than STEP_REACH x the robust scale on average (a trust
        region in the image): a longer step can lower the objective by leaving the data term's basin altogether
        (every keypoint saturated, the temporal terms smaller), which a seated person's jittery first depths did
        (all frames 270 px off)."""
        free = torch.arange(rows.shape[1]) if free is None else free
        mu = 1e-3
        with torch.no_grad():
            cost, points = self.cost(rows, betas, points=True)
        reach = STEP_REACH * self.cfg.robust_sigma
        for _ in range(iters):
            diag, off1, off2, grad = self._normal_equations(rows, betas, free)
            improved = False
            for _attempt in range(8):
                damped = diag + mu * torch.diag_embed(torch.diagonal(diag, dim1=1, dim2=2) + 1e-6)
                step = torch.zeros_like(rows)
                step[:, free] = _solve_banded(damped, off1, off2, -grad)
                with torch.no_grad():
                    new_cost, new_points = self.cost(rows + step, betas, points=True)
                moved = (torch.linalg.norm(new_points[:, :25] - points[:, :25], dim=-1) / self.scale[:, None]).mean(1)
                if torch.isfinite(new_cost) and new_cost < cost and float(moved.max()) <= reach:
                    gain = float(cost - new_cost)
                    rows, cost, points, mu, improved = rows + step, new_cost, new_points, max(mu / 3.0, 1e-7), True
                    break
                mu *= 4.0
            if not improved or gain <= 1e-4 * (1.0 + float(cost)):
                break
        return rows

    def fit_shape(self, rows, betas, iters: int = 30):
        """The one shape of the clip, every frame's pose held (L-BFGS on the betas)."""
        b = betas.detach().clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS([b], lr=1.0, max_iter=iters, history_size=10, line_search_fn="strong_wolfe")
        held = rows.detach()

        def closure():
            optimiser.zero_grad()
            value = self.cost(held, b)
            value.backward()
            return value

        optimiser.step(closure)
        return b.detach()


def _solve_banded(diag, off1, off2, rhs):
    """Solve the symmetric block-banded system (blocks (t, t), (t, t+1) = off1[t], (t, t+2) = off2[t]) by
    block-tridiagonal elimination over pairs of frames."""
    n, d = rhs.shape
    m = (n + 1) // 2
    size = 2 * d
    eye = torch.eye(d, dtype=rhs.dtype)
    pad = 2 * m - n  # an odd clip gets one inert frame (identity block, zero right-hand side)
    D = torch.cat([diag, eye.expand(pad, d, d)]) if pad else diag
    O1 = torch.cat([off1, torch.zeros(pad, d, d, dtype=rhs.dtype)]) if pad else off1  # (2m − 1, d, d)
    O2 = torch.cat([off2, torch.zeros(pad, d, d, dtype=rhs.dtype)]) if pad else off2  # (2m − 2, d, d)
    b = torch.cat([rhs, torch.zeros(pad, d, dtype=rhs.dtype)]) if pad else rhs
    # super-blocks: A_i = [[D_2i, O1_2i], [O1_2i^T, D_2i+1]], U_i = [[O2_2i, 0], [O1_2i+1, O2_2i+1]]
    A = torch.zeros(m, size, size, dtype=rhs.dtype)
    A[:, :d, :d], A[:, d:, d:] = D[0::2], D[1::2]
    A[:, :d, d:] = O1[0::2]
    A[:, d:, :d] = O1[0::2].transpose(1, 2)
    U = torch.zeros(max(m - 1, 0), size, size, dtype=rhs.dtype)
    if m > 1:
        U[:, :d, :d] = O2[0:2 * m - 2:2]
        U[:, d:, :d] = O1[1:2 * m - 2:2]
        U[:, d:, d:] = O2[1:2 * m - 2:2]
    B = b.reshape(m, size)
    c_prime = torch.zeros(max(m - 1, 0), size, size, dtype=rhs.dtype)
    d_prime = torch.zeros(m, size, dtype=rhs.dtype)
    prev_c, prev_d = None, None
    for i in range(m):
        a_i, b_i = A[i], B[i]
        if i > 0:
            lower = U[i - 1].T
            a_i = a_i - lower @ prev_c
            b_i = b_i - lower @ prev_d
        factor = torch.linalg.cholesky(a_i)
        if i < m - 1:
            prev_c = torch.cholesky_solve(U[i], factor)
            c_prime[i] = prev_c
        prev_d = torch.cholesky_solve(b_i[:, None], factor)[:, 0]
        d_prime[i] = prev_d
    out = torch.zeros(m, size, dtype=rhs.dtype)
    out[m - 1] = d_prime[m - 1]
    for i in range(m - 2, -1, -1):
        out[i] = d_prime[i] - c_prime[i] @ out[i + 1]
    return out.reshape(2 * m, d)[:n]
