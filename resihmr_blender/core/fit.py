"""SMPLify-X-style staged fit of SMPL-X to intact 2D body keypoints (paper eq. 1-2), batched over people.

Stages (Levenberg-Marquardt with the body's analytic Jacobian by default, FitConfig.solver), joints-only forward
inside every loop:
1. global orientation + translation on the torso, from a similar-triangles depth initialisation;
2. body pose + shape with decreasing prior weights and a robust (Geman-McClure) reprojection term on the
   confidence-weighted keypoints, plus a flat-foot prior for feet the input does not show;
then people still far from a confident keypoint retry other starts and limb poses (FitConfig.retry_*, the
winner in PersonFit.hypothesis), and 3. each residual endpoint turns its own segment and nothing else.
Keypoints distal to a declared residual limb are ignored (weight 0) even when a detector reports them with
high confidence: detectors hallucinate missing limbs. Hands and face are not fitted yet (BODY_25 only).
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from . import lbfgs, lm, priors
from .body_model import BODY25_SOURCES, JOINT_INDEX, JOINT_NAMES, BodyModel
from .camera import Camera, depth_from_lengths
from .keypoints import Person
from .layouts import BODY25_INDEX
from .residuals import RESIDUALS, distal_mask
from .rotations import aa_to_matrix, matrix_to_axis_angle, rot

TORSO_TOP = (BODY25_INDEX["RShoulder"], BODY25_INDEX["LShoulder"])
TORSO_BOTTOM = (BODY25_INDEX["RHip"], BODY25_INDEX["LHip"])
TORSO_SET = (*TORSO_TOP, *TORSO_BOTTOM, BODY25_INDEX["Neck"], BODY25_INDEX["MidHip"])
HEAD_SET = tuple(BODY25_INDEX[n] for n in ("Nose", "REye", "LEye", "REar", "LEar"))
THIGH_SET = tuple(BODY25_INDEX[n] for n in ("RKnee", "LKnee"))
# joints spanning each residual kind's segment, in RESIDUALS order (all among the fit's 25 body joints)
SEGMENT_UPSTREAM = [JOINT_INDEX[k.upstream_joint] for k in RESIDUALS]
SEGMENT_ANCHOR = [JOINT_INDEX[k.anchor_joint] for k in RESIDUALS]
# their places among the BODY_25 points (every segment joint is one: shoulders, elbows, wrists, hips, knees, ankles)
SEGMENT_IN_BODY25 = [BODY25_SOURCES.index(("joint", JOINT_NAMES[j])) for j in SEGMENT_UPSTREAM + SEGMENT_ANCHOR]
FOOT_ANKLES = [BODY25_INDEX["LAnkle"], BODY25_INDEX["RAnkle"]]
FOOT_POINTS = torch.tensor([[BODY25_INDEX[s + n] for n in ("BigToe", "SmallToe", "Heel")] for s in "LR"])
FOOT_LENGTH_M = 0.25


class FitError(ValueError):
    """A person that cannot be fitted; the message says why."""


@dataclass
class FitConfig:
    ignore_distal: bool = True  # False = the "intact-limb fit that trusts every keypoint" baseline
    residual_segments: bool = True  # residual endpoints pull their segment's line through them (not its end)
    # Geman-McClure scale, in percent of the person's 2D torso length. Measured on the benchmark: 20 lets a fit
    # stuck with a limb 50 % of the torso off ignore it (intact 6.9 px), 50 gives 5.2 px, 100 gives 6.1 px.
    robust_sigma: float = 50.0
    pose_weights: tuple[float, ...] = (10.0, 1.0)  # annealed L2 pose prior per sub-stage
    shape_weights: tuple[float, ...] = (5.0, 0.5)
    limit_weight: float = 1000.0
    solver: str = "lm"  # "lm" (Levenberg-Marquardt, default) or "lbfgs" (batched L-BFGS); see fit.md
    orient_iters: int = 6
    stage_iters: int = 8
    min_confidence: float = 0.05
    # torch threads while fitting, restored afterwards; 0 = one: the fit's tensors are small (people x 79) and a
    # second thread's hand-offs cost more than they save (64 people, load average 4.4: 0.054 s per person with
    # one thread, 0.21 s with two), as for the sequence fit
    num_threads: int = 0
    # Initial orientations, the best kept by the final objective (data + priors): "facing" is the one the
    # left/right order of the keypoints suggests, "turned" the half turn about the vertical (left/right swapped by
    # a detector, or a person seen from the back), "lean_fwd"/"lean_back" the torso pitched ±25° towards/away from
    # the camera (the depth ambiguity a 2D torso cannot settle; a crouch). `starts` are tried for everyone;
    # `retry_starts` only by people whose best fit still lies more than retry_px from a used input keypoint of
    # confidence >= 0.5, who then also try each limb pose of `retries` (LIMB_POSES) on their far arms and legs
    # (`retry_rounds` rounds), keeping whichever hypothesis has the lowest objective (issue 15 item 4).
    # Measured (fit alone; synthetic 128 / foreign 100 people; intact px over the points the input gave; CPU ms
    # per person, load average ~10): both starts for everyone, retries beyond 15 px: 3.40 / 3.76 px, 33 / 40 ms;
    # the same beyond 7 px: 3.35 / 3.52 px, 37 / 47 ms; "turned" only as a retry, beyond 7 px (the default):
    # 3.36 / 3.52 px, 30 / 44 ms. No person ends > 25 px from a confident keypoint in any of them (6 / 10 with
    # two starts and no retries).
    starts: tuple[str, ...] = ("facing",)
    retry_starts: tuple[str, ...] = ("turned", "lean_fwd", "lean_back")
    retry_px: float = 7.0
    retry_rounds: int = 2
    retries: tuple[str, ...] = ("flexed", "crouched", "kneeling", "forward", "crossed", "back")
    # FitObjective.foot_residuals, with the pose prior (stages 2-3). Measured (fit alone, intact error on COCO
    # inputs, synthetic / foreign): 0: 7.59 / 9.26 px; 10: 8.21 / 7.76; 30: 8.10 / 7.73; 100: 8.01 / 7.83
    foot_flat_weight: float = 30.0


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
    reference_length_px: float = 0.0  # the 2D torso length (or shoulder/hip width) that set depth and scale
    hypothesis: str = "facing"  # the start that won (FitConfig.starts or retry_starts), "+<limb pose>" per retry won

    def params(self) -> dict[str, np.ndarray]:
        return {"betas": self.betas, "expression": self.expression, "global_orient": self.global_orient,
                "body_pose": self.body_pose, "transl": self.transl}

    def row(self, n_betas: int | None = None) -> np.ndarray:
        """These parameters as one row of FitObjective's layout [global_orient 3 | transl 3 | betas | body_pose 63]
        (the first n_betas shape coefficients, all by default): a later stage starts from the fit with it."""
        return np.concatenate([self.global_orient, self.transl, self.betas[:n_betas], self.body_pose])


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
    """Refuse people the fit cannot place; return two keypoint groups whose midpoints' distance on the mean body
    sets the depth at initialisation: torso top and bottom when both show, else the two shoulders (an upper-body
    photo), else the two hips (the upper body out of frame)."""
    if not np.any(weights > 0):
        raise FitError("all keypoint confidences are zero (or every keypoint is distal to a residual limb)")
    if int((weights > 0).sum()) < 4:
        raise FitError(f"too few keypoints to fit a body: {int((weights > 0).sum())} usable, need at least 4")
    top = _torso_points(weights, TORSO_TOP, BODY25_INDEX["Neck"])
    bottom = _torso_points(weights, TORSO_BOTTOM, BODY25_INDEX["MidHip"])
    if top and bottom:
        return top, bottom
    for right, left in (TORSO_TOP, TORSO_BOTTOM):
        if weights[right] > 0 and weights[left] > 0:
            return [right], [left]
    raise FitError("the torso cannot be placed: need a shoulder (or the neck) and a hip (or the mid-hip), "
                   "or both shoulders, or both hips")


def _facing_camera(kp: np.ndarray, weights: np.ndarray) -> bool:
    """The subject's left appears on the image's right when they face the camera."""
    for right, left in (TORSO_TOP, TORSO_BOTTOM):
        if weights[right] > 0 and weights[left] > 0:
            return kp[left, 0] >= kp[right, 0]
    return True


def _rotation_axis_angle(facing: bool) -> np.ndarray:
    # half turn about x: body up -> image up, body front -> towards the camera; about z: facing away
    return np.array([math.pi, 0.0, 0.0]) if facing else np.array([0.0, 0.0, math.pi])


LEAN = math.radians(25.0)


def _start_rotation(facing: bool, start: str) -> np.ndarray:
    """Initial global orientation (axis-angle) for one of FitConfig.starts."""
    base = aa_to_matrix(_rotation_axis_angle(facing if start != "turned" else not facing))
    if start in ("lean_fwd", "lean_back"):
        # pitch about the body's own left-right axis (x): +: the upper body towards its front
        base = base @ rot("x", LEAN if start == "lean_fwd" else -LEAN)
    elif start not in ("facing", "turned"):
        raise ValueError(f"unknown fit start {start!r}; known: facing, turned, lean_fwd, lean_back")
    return matrix_to_axis_angle(base)


# Limb poses a retry starts a far limb from (axis-angle components of the left side's joints; the right side
# mirrors y and z): the poses the relaxed-standing prior's basin misses — a thigh towards the camera, a deep
# crouch, a kneeling shank, an arm reaching forward, a forearm across the body, an arm behind it.
LIMB_POSES: dict[str, tuple[str, dict[str, tuple[float, float, float]]]] = {
    "flexed": ("leg", {"hip": (-1.6, 0.0, 0.2), "knee": (1.6, 0.0, 0.0)}),
    "crouched": ("leg", {"hip": (-2.1, 0.0, 0.4), "knee": (2.3, 0.0, 0.0)}),
    "kneeling": ("leg", {"hip": (0.2, 0.0, 0.0), "knee": (1.6, 0.0, 0.0)}),
    "forward": ("arm", {"shoulder": (0.0, -1.3, -0.2), "elbow": (0.0, -0.4, 0.0)}),
    "crossed": ("arm", {"shoulder": (0.0, -0.3, -1.1), "elbow": (0.0, -1.9, 0.0)}),
    "back": ("arm", {"shoulder": (0.0, 0.7, -1.1), "elbow": (0.0, -1.2, 0.0)}),
}
LIMB_KEYPOINTS = {("arm", side): tuple(BODY25_INDEX[side + n] for n in ("Elbow", "Wrist")) for side in "LR"}
LIMB_KEYPOINTS.update({("leg", side): tuple(BODY25_INDEX[side + n] for n in (
    "Knee", "Ankle", "BigToe", "SmallToe", "Heel")) for side in "LR"})
LIMB_JOINTS = {"arm": ("collar", "shoulder", "elbow", "wrist"), "leg": ("hip", "knee", "ankle", "foot")}


def _limb_pose_rows(kind: str, side: str, pose: str, pose_start: int) -> tuple[list[int], list[float]]:
    """x columns and values that put one limb (`kind` arm/leg, `side` L/R) in LIMB_POSES[pose]; the limb's
    other joints go back to rest."""
    limb, values = LIMB_POSES[pose]
    if limb != kind:
        return [], []
    prefix, mirror = ("left", 1.0) if side == "L" else ("right", -1.0)
    cols, vals = [], []
    for joint in LIMB_JOINTS[kind]:
        rx, ry, rz = values.get(joint, (0.0, 0.0, 0.0))
        start = pose_start + 3 * (JOINT_INDEX[f"{prefix}_{joint}"] - 1)
        cols += [start, start + 1, start + 2]
        vals += [rx, mirror * ry, mirror * rz]
    return cols, vals


def _far_points(model, x, kp, w, focal, centre, config) -> torch.Tensor:
    """(B, 25) bool: used keypoints of confidence >= 0.5 that the fit x leaves more than retry_px away."""
    n_betas = model.num_betas
    with torch.no_grad():
        out = model.joints_only(betas=x[:, 6:6 + n_betas], global_orient=x[:, :3], body_pose=x[:, 6 + n_betas:],
                                transl=x[:, 3:6], body_only=True)
        off = torch.linalg.norm(_project(out.body25, focal, centre) - kp[:, :25], dim=-1)
    return (off > config.retry_px) & (w[:, :25] >= 0.5)


def _far_limbs(far: torch.Tensor) -> list[list[tuple[str, str]]]:
    """Per row, the limbs (kind, side) with a far keypoint (see _far_points)."""
    return [[limb for limb, idx in LIMB_KEYPOINTS.items() if bool(far[b, list(idx)].any())] for b in range(len(far))]


def _retry_far_limbs(model, x, kp, w, focal, centre, scale, config, hypothesis):
    """Rows with far limbs try every retry pose on those limbs (all such rows in one batch, stage 2's last prior
    weights) and keep a retry only when it lowers their objective; returns x and the winning hypotheses."""
    if not config.retries:
        return x, hypothesis
    pose_start = 6 + model.num_betas
    rows, names, x_try = [], [], []
    for b, limbs in enumerate(_far_limbs(_far_points(model, x, kp, w, focal, centre, config))):
        for pose in config.retries:
            row = x[b].clone()
            changed = False
            for kind, side in limbs:
                cols, vals = _limb_pose_rows(kind, side, pose, pose_start)
                if cols:
                    row[cols] = torch.tensor(vals, dtype=x.dtype)
                    changed = True
            if changed:
                rows.append(b), names.append(pose), x_try.append(row)
    if not rows:
        return x, hypothesis
    idx = torch.tensor(rows)
    intact_w = w.clone()
    intact_w[:, 25:] = 0.0
    weights = (config.pose_weights[-1], config.shape_weights[-1])
    problem = FitObjective(model, kp[idx], focal[idx], centre[idx], scale[idx], config)
    tried = problem.solve(torch.stack(x_try), intact_w[idx], weights, config.stage_iters)
    with torch.no_grad():
        cost_try = problem.cost(tried, intact_w[idx], weights)
        cost_now = FitObjective(model, kp, focal, centre, scale, config).cost(x, intact_w, weights)
    x, hypothesis, base = x.clone(), list(hypothesis), list(hypothesis)
    for k, b in enumerate(rows):  # each row keeps the lowest objective of its current fit and its retries
        if bool(torch.isfinite(cost_try[k])) and bool(cost_try[k] < cost_now[b]):
            x[b], cost_now[b] = tried[k], cost_try[k]
            hypothesis[b] = f"{base[b]}+{names[k]}"
    return x, hypothesis


def _project(points: torch.Tensor, focal: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    z = points[..., 2:3].clamp(min=1e-3)
    return focal[:, None, None] * points[..., :2] / z + centre[:, None, :]


class FitObjective:
    """The fit's objective (eq. 1-2 with a robust data term and the open priors) and its two solvers.

    x holds one row per person: [global_orient 3 | transl 3 | betas K | body_pose 63].
    """

    def __init__(self, model: BodyModel, kp, focal, centre, scale, config: FitConfig):
        """kp: (B, 33, 2) targets: the 25 BODY_25 keypoints, then the 8 residual endpoints."""
        self.model, self.kp, self.focal, self.centre, self.scale, self.config = model, kp, focal, centre, scale, config
        self.n_betas = model.num_betas
        self.sigma2 = config.robust_sigma**2

    def unpack(self, x):
        return x[..., :3], x[..., 3:6], x[..., 6:6 + self.n_betas], x[..., 6 + self.n_betas:]

    def _project_rows(self, x, focal, centre, kp, with_3d: bool = False):
        """Model points matching the 33 targets: projected BODY_25, then for each residual endpoint the point of
        the projected residual segment (upstream joint -> anchor joint) at the endpoint's distance from the
        upstream joint, so the segment points through the endpoint without presuming where along it the limb
        ends (that is RAFO's λ). `with_3d` also returns the BODY_25 points in 3D (B, 25, 3)."""
        rows, out = self.project_output(x, focal, centre, kp)
        return (rows, out.body25) if with_3d else rows

    def project_output(self, x, focal, centre, kp):
        """(_project_rows' rows, the joints-only forward output they came from): for callers that need the 3D
        joints of the same evaluation (the sequence fit's temporal terms)."""
        orient, trans, shape, pose = self.unpack(x)
        out = self.model.joints_only(betas=shape, global_orient=orient, body_pose=pose, transl=trans, body_only=True)
        body = _project(out.body25, focal, centre)
        start = _project(out.joints[:, SEGMENT_UPSTREAM], focal, centre)
        end = _project(out.joints[:, SEGMENT_ANCHOR], focal, centre)
        axis = end - start
        target = kp[:, 25:]
        # the point of the segment as far from its upstream joint as the endpoint is: it pulls the segment's
        # direction towards the endpoint from any orientation (a closest point would sit still on the upstream
        # joint, with no gradient, whenever the segment points away)
        t = (torch.linalg.norm(target - start, dim=-1)
             / torch.linalg.norm(axis, dim=-1).clamp(min=1e-6)).clamp(0.0, 1.0)
        return torch.cat([body, start + t[..., None] * axis], dim=1), out

    def foot_residuals(self, pts, weights, dpts=None):
        """Flat-foot prior residuals (B, 4): each toe's height above its heel (camera y, in foot lengths) times
        sqrt(foot_flat_weight), for feet whose ankle is fitted but none of whose foot keypoints are (COCO inputs,
        dropped toes); with `dpts` (B, 25, 3, D) also their Jacobian (B, 4, D). Why: without foot keypoints the
        ankle's rest pose tilts the foot with the shank (toes into the ground under a bent knee), where on a
        photo's level camera a foot on the ground is flat (median pitch 3-4 degrees on both benchmarks)."""
        on = (weights[:, FOOT_ANKLES] > 0) & (weights[:, FOOT_POINTS.reshape(-1)].reshape(-1, 2, 3) <= 0).all(-1)
        k = (on.to(pts.dtype) * (math.sqrt(self.config.foot_flat_weight) / FOOT_LENGTH_M))[:, :, None]
        r = (pts[:, FOOT_POINTS[:, :2], 1] - pts[:, FOOT_POINTS[:, 2:], 1]) * k  # (B, 2 feet, 2 toes)
        if dpts is None:
            return r.reshape(-1, 4)
        d = (dpts[:, FOOT_POINTS[:, :2], 1] - dpts[:, FOOT_POINTS[:, 2:], 1]) * k[..., None]
        return r.reshape(-1, 4), d.reshape(len(d), 4, -1)

    def _rows_and_jacobian(self, x, focal, centre, kp, camera_only: bool = False):
        """`_project_rows` and its exact Jacobian (B, 33, 2, D), from the body's analytic point Jacobian, with the
        BODY_25 points in 3D (B, 25, 3) and their Jacobian (B, 25, 3, D); `camera_only` differentiates
        global_orient and transl only (D = 6)."""
        orient, trans, shape, pose = self.unpack(x)
        pts, dpts = self.model.points_and_jacobian(shape, orient, pose, trans, camera_only=camera_only)
        z = pts[..., 2]
        inv_z = 1.0 / z.clamp(min=1e-3)
        body = focal[:, None, None] * pts[..., :2] * inv_z[..., None] + centre[:, None, :]
        f_z = focal[:, None] * inv_z
        dproj_dp = torch.zeros(*pts.shape[:2], 2, 3, dtype=x.dtype)
        dproj_dp[..., 0, 0] = dproj_dp[..., 1, 1] = f_z
        # depth: −f·x/z²; nothing where the depth is clamped (as in _project)
        dproj_dp[..., :, 2] = -(f_z * inv_z * (z >= 1e-3))[..., None] * pts[..., :2]
        d_body = dproj_dp @ dpts  # (B, 25, 2, D)
        # the segments' joints are BODY_25 points: projected and differentiated once, then picked
        n = len(SEGMENT_UPSTREAM)
        start, end = body[:, SEGMENT_IN_BODY25[:n]], body[:, SEGMENT_IN_BODY25[n:]]
        d_start, d_end = d_body[:, SEGMENT_IN_BODY25[:n]], d_body[:, SEGMENT_IN_BODY25[n:]]
        axis, to_target = end - start, kp[:, 25:] - start
        length = torch.linalg.norm(axis, dim=-1)
        dist = torch.linalg.norm(to_target, dim=-1)
        t_raw = dist / length.clamp(min=1e-6)
        t = t_raw.clamp(0.0, 1.0)
        # dt = d(dist)/length − dist·d(length)/length², zero where t is clamped
        d_axis = d_end - d_start
        d_dist = -torch.einsum("bkc,bkcd->bkd", to_target / dist.clamp(min=1e-12)[..., None], d_start)
        d_length = torch.einsum("bkc,bkcd->bkd", axis / length.clamp(min=1e-12)[..., None], d_axis)
        inside = ((t_raw > 0) & (t_raw < 1) & (length > 1e-6)).to(x.dtype)
        safe = length.clamp(min=1e-6)[..., None]
        dt = inside[..., None] * (d_dist / safe - dist[..., None] * d_length / safe**2)
        d_point = d_start + t[..., None, None] * d_axis + axis[..., None] * dt[..., None, :]
        rows, d_rows = torch.cat([body, start + t[..., None] * axis], 1), torch.cat([d_body, d_point], 1)
        return rows, d_rows, pts, dpts

    def squared_errors(self, x):
        """(B, 33) squared reprojection errors in (percent of torso length)²."""
        pred = self._project_rows(x, self.focal, self.centre, self.kp)
        return ((pred - self.kp) ** 2).sum(-1) / self.scale[:, None] ** 2

    def cost(self, x, weights, prior_weights):
        pred, body3d = self._project_rows(x, self.focal, self.centre, self.kp, with_3d=True)
        r2 = ((pred - self.kp) ** 2).sum(-1) / self.scale[:, None] ** 2
        value = (weights * (self.sigma2 * r2 / (self.sigma2 + r2))).sum(dim=1)  # Geman-McClure
        if prior_weights is not None:
            if self.config.foot_flat_weight > 0:
                value = value + (self.foot_residuals(body3d, weights) ** 2).sum(dim=1)
            pose_w, shape_w = prior_weights
            _, _, shape, pose = self.unpack(x)
            value = value + pose_w * priors.pose_l2(pose - priors.POSE_MEAN.to(pose.dtype)) \
                + shape_w * priors.shape_l2(shape) + self.config.limit_weight * priors.joint_limit_penalty(pose)
        return value

    def solve(self, x, weights, prior_weights, iters: int, camera_only: bool = False, free=None):
        if self.config.solver == "lbfgs":
            if camera_only:
                rest = x[:, 6:]
                cam = lbfgs.minimize(lambda c: self.cost(torch.cat([c, rest], 1), weights, None), x[:, :6], iters)
                return torch.cat([cam, rest], dim=1)
            if free is not None:  # only the free parameters move
                x0, f = x.detach(), free.to(x.dtype)
                v = lbfgs.minimize(lambda v: self.cost(x0 + (v - x0) * f, weights, prior_weights), x, iters)
                return x0 + (v - x0) * f
            return lbfgs.minimize(lambda v: self.cost(v, weights, prior_weights), x, iters)
        return self._solve_lm(x, weights, prior_weights, iters, camera_only, free)

    def _solve_lm(self, x, weights, prior_weights, iters, camera_only, free=None):
        sigma2, limit_w = self.sigma2, self.config.limit_weight
        pose_w, shape_w = prior_weights if prior_weights is not None else (0.0, 0.0)

        feet = prior_weights is not None and self.config.foot_flat_weight > 0

        def residuals(row, kp, conf, focal, centre, scale, rest, psi):
            full = torch.cat([row, rest]) if camera_only else row
            proj, body3d = self._project_rows(full[None], focal[None], centre[None], kp[None], with_3d=True)
            r = ((proj[0] - kp) / scale * torch.sqrt(conf * psi)[:, None]).reshape(-1)
            return torch.cat([r, self.foot_residuals(body3d, conf[None])[0]]) if feet else r

        def prior_terms(v):
            """J^T r and diag(J^T J) of the separable prior residuals (L2 pose/shape, joint-limit hinges)."""
            jtr, diag = torch.zeros_like(v), torch.zeros_like(v)
            if prior_weights is None or camera_only:
                return jtr, diag
            _, _, shape, pose = self.unpack(v)
            s0, p0 = 6, 6 + self.n_betas
            jtr[:, s0:p0], diag[:, s0:p0] = shape_w * shape, shape_w
            jtr[:, p0:], diag[:, p0:] = priors.pose_gradient_and_curvature(pose, pose_w, limit_w)
            return jtr, diag

        def join(v, rest):
            return torch.cat([v, rest], dim=1) if camera_only else v

        def objective(v, kp, conf, focal, centre, scale, rest):  # on the rows LM passes (its active ones)
            return FitObjective(self.model, kp, focal, centre, scale, self.config).cost(join(v, rest), conf,
                                                                                          prior_weights)

        def gm_weights(r2):  # Geman-McClure's rho'(r²), held fixed for one step
            return sigma2**2 / (sigma2 + r2) ** 2

        def irls(v, kp, conf, focal, centre, scale, rest):
            return gm_weights(FitObjective(self.model, kp, focal, centre, scale, self.config).squared_errors(
                join(v, rest)))

        def jacobian(v, kp, conf, focal, centre, scale, rest):
            """All rows' residuals and their Jacobian at once (analytic; see BodyModel.points_and_jacobian),
            weighed by their IRLS weights at the same point."""
            pred, dpred, pts, dpts = self._rows_and_jacobian(join(v, rest), focal, centre, kp, camera_only)
            psi = gm_weights(((pred - kp) ** 2).sum(-1) / scale[:, None] ** 2)
            w = (torch.sqrt(conf * psi) / scale[:, None])[..., None]
            r = ((pred - kp) * w).reshape(v.shape[0], -1)
            jac = (dpred * w[..., None]).reshape(v.shape[0], r.shape[1], -1)
            if feet:  # linear in the points' heights: the same weights on their Jacobian rows
                r_foot, j_foot = self.foot_residuals(pts, conf, dpts)
                r, jac = torch.cat([r, r_foot], 1), torch.cat([jac, j_foot], 1)
            return jac, r

        rest = x[:, 6:] if camera_only else torch.zeros(x.shape[0], 0, dtype=x.dtype)
        v0 = x[:, :6] if camera_only else x
        data = (self.kp, weights, self.focal, self.centre, self.scale, rest)
        analytic = jacobian if self.model.has_analytic_jacobian() else None
        v = lm.minimize(residuals, objective, irls, v0, data, iters, prior_fn=prior_terms, free=free,
                        jacobian_fn=analytic)
        return join(v, rest)


def _residual_freedom(weights: torch.Tensor, pose_start: int) -> torch.Tensor:
    """(B, D) bool: for each row, the rotation of the upstream joint of every residual segment it has an
    endpoint for (body_pose holds joints 1..21, three numbers each)."""
    free = torch.zeros(weights.shape[0], pose_start + 63, dtype=torch.bool)
    for k, joint in enumerate(SEGMENT_UPSTREAM):
        rows = weights[:, 25 + k] > 0
        start = pose_start + 3 * (joint - 1)
        free[rows, start:start + 3] = True
    return free


def fit_people(model: BodyModel, people: list[Person], cameras: list[Camera],
               config: FitConfig | None = None) -> list[PersonFit | FitError]:
    """Fit every person at once. Returns a PersonFit, or the FitError saying why one could not be fitted."""
    config = config or FitConfig()
    with torch_threads(config.num_threads or 1):
        return _fit_people(model, people, cameras, config)


@contextmanager
def torch_threads(n: int):
    """torch's thread count set to n inside, the caller's restored afterwards (the fits run on one thread: their
    batches are small and on a shared 2-core machine a second thread made them slower, not faster)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit_people(model, people, cameras, config: FitConfig) -> list[PersonFit | FitError]:
    results: list[PersonFit | FitError | None] = [None] * len(people)
    batch_idx, inits = [], []
    for i, person in enumerate(people):
        weights = keypoint_weights(person, config)
        try:
            top, bottom = check_person(person, weights)
        except FitError as exc:
            results[i] = exc
            continue
        batch_idx.append(i)
        res_w = person.residual[:, 2] * (person.residual[:, 2] >= config.min_confidence)
        if not config.residual_segments:
            res_w = np.zeros(8)
        inits.append((np.concatenate([person.body25[:, :2], person.residual[:, :2]]),
                      np.concatenate([weights, res_w]), top, bottom))
    if batch_idx:
        fits = _fit_batch(model, [inits[k] for k in range(len(batch_idx))], [cameras[i] for i in batch_idx],
                          config)
        for i, fit in zip(batch_idx, fits):
            results[i] = fit
    return results  # type: ignore[return-value]


def _best_start(model, x0, people, start_ids, data, config):
    """Stages 1-2 from the starts `start_ids` (columns of x0) of `people`, all rows in one batch: per person
    the best row (B', D), its objective (B',) and the index of its start."""
    kp, w, torso_w, focal, centre, scale = data
    n_starts = len(start_ids)
    rows = people.repeat_interleave(n_starts)  # person-major: person k's candidates are rows k*S .. k*S+S-1
    x = x0[people][:, start_ids].reshape(len(people) * n_starts, -1)
    problem = FitObjective(model, kp[rows], focal[rows], centre[rows], scale[rows], config)
    x = problem.solve(x, torso_w[rows], None, config.orient_iters, camera_only=True)  # stage 1: orient + transl
    intact_w = w[rows].clone()
    intact_w[:, 25:] = 0.0
    for pose_w, shape_w in zip(config.pose_weights, config.shape_weights):  # stage 2: annealed priors
        x = problem.solve(x, intact_w, (pose_w, shape_w), config.stage_iters)
    with torch.no_grad():
        final = problem.cost(x, intact_w, (config.pose_weights[-1], config.shape_weights[-1]))
    final = torch.where(torch.isfinite(final), final, torch.full_like(final, float("inf"))).reshape(-1, n_starts)
    pick = final.argmin(dim=1)
    best = pick + torch.arange(len(people)) * n_starts
    return x[best], final.min(dim=1).values, [start_ids[int(k)] for k in pick]


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
    starts = config.starts or ("facing",)
    every = tuple(dict.fromkeys(starts + config.retry_starts))
    x0, scale = torch.zeros(n, len(every), 6 + model.num_betas + 63, dtype=dtype), []
    for b, ((kp_np, wt, top, bottom), cam) in enumerate(zip(inits, cameras)):
        top2d, bottom2d = kp_np[top].mean(0), kp_np[bottom].mean(0)
        top3d, bottom3d = rest[top].mean(0), rest[bottom].mean(0)
        length2d = float(np.linalg.norm(top2d - bottom2d))
        depth = depth_from_lengths(cam.focal_length, float(torch.linalg.norm(top3d - bottom3d)), length2d)
        mid2d = 0.5 * (top2d + bottom2d)
        target = np.array([(mid2d[0] - cam.principal_point[0]) * depth / cam.focal_length,
                           (mid2d[1] - cam.principal_point[1]) * depth / cam.focal_length, depth])
        facing = _facing_camera(kp_np, wt)
        mid3d = (0.5 * (top3d + bottom3d) - pelvis).numpy()
        for s, start in enumerate(every):
            rotvec = _start_rotation(facing, start)
            x0[b, s, :3] = torch.from_numpy(rotvec)
            x0[b, s, 3:6] = torch.from_numpy(target - aa_to_matrix(rotvec) @ mid3d - pelvis.numpy())
        scale.append(max(length2d, 1.0) / 100.0)  # residuals in percent of the torso length
    scale_t = torch.tensor(scale, dtype=dtype)
    torso_w = torch.zeros_like(w)
    torso_w[:, list(TORSO_SET)] = w[:, list(TORSO_SET)]
    for b, (_, _, top, bottom) in enumerate(inits):
        if set(top + bottom) <= set(TORSO_TOP) or set(top + bottom) <= set(TORSO_BOTTOM):
            # no torso length in view: the head (upper body) or the thighs (lower body) steady the orientation
            extra = list(HEAD_SET) if set(top + bottom) <= set(TORSO_TOP) else list(THIGH_SET)
            torso_w[b, extra] = w[b, extra]
    data = (kp, w, torso_w, focal, centre, scale_t)

    # each person keeps its best start by the objective of the intact keypoints (+ priors), taken before the
    # residual segments turn: a declared limb never picks another basin for the rest of the body
    x, cost, hypothesis = _best_start(model, x0, torch.arange(n), [every.index(s) for s in starts], data, config)
    hypothesis = [every[k] for k in hypothesis]
    # people still far from a confident keypoint: the other starts, then limb poses on far arms and legs
    retry_starts = [every.index(s) for s in config.retry_starts if s not in starts]
    far = _far_points(model, x, kp, w, focal, centre, config).any(dim=1)
    if retry_starts and bool(far.any()):
        who = torch.nonzero(far)[:, 0]
        x_r, cost_r, pick = _best_start(model, x0, who, retry_starts, data, config)
        better = cost_r < cost[who]
        for k in torch.nonzero(better)[:, 0].tolist():
            b = int(who[k])
            x[b], cost[b], hypothesis[b] = x_r[k], cost_r[k], every[pick[k]]
    for _ in range(config.retry_rounds):  # a second round for a far arm left by a retried leg, or the reverse
        x, hypothesis = _retry_far_limbs(model, x, kp, w, focal, centre, scale_t, config, hypothesis)
    # stage 3: each residual endpoint turns its own segment about the segment's upstream joint, and nothing else
    # moves (that joint's rotation moves only the limb's ignored distal part): declaring a residual limb leaves
    # the intact body exactly where the intact keypoints put it
    problem = FitObjective(model, kp, focal, centre, scale_t, config)
    free = _residual_freedom(w, 6 + model.num_betas)
    if bool(free.any()):
        x = problem.solve(x, w, (config.pose_weights[-1], config.shape_weights[-1]), config.stage_iters, free=free)
    global_orient, transl, betas, body_pose = problem.unpack(x)

    with torch.no_grad():
        out = model.joints_only(betas=betas, global_orient=global_orient, body_pose=body_pose, transl=transl)
        proj = _project(out.body25, focal, centre)
        err = torch.linalg.norm(proj - kp[:, :25], dim=-1)
    elapsed = (time.perf_counter() - t0) / n
    fits = []
    for b, cam in enumerate(cameras):
        used = (w[b, :25] > 0).numpy()
        fits.append(PersonFit(
            betas=betas[b].detach().numpy().astype(np.float64), global_orient=global_orient[b].detach().numpy(),
            body_pose=body_pose[b].detach().numpy(), transl=transl[b].detach().numpy(),
            expression=np.zeros(model.num_expression), camera=cam, joints_3d=out.joints[b].numpy(),
            body25_3d=out.body25[b].numpy(), body25_2d=proj[b].numpy(), used=used,
            fit_error_px=float(err[b][w[b, :25] > 0].mean()), timings_s={"fit": elapsed},
            reference_length_px=float(scale[b] * 100.0), hypothesis=hypothesis[b]))
    return fits
