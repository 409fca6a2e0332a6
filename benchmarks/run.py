"""Ground-truth benchmarks of the fit + RAFO against the paper's baselines, in one run: the synthetic people of
the embedded body (benchmarks/synth.py) and the foreign people of another body, Anny (benchmarks/foreign.py,
committed cases), side by side.

    python -m benchmarks.run [--people 120] [--seed 0] [--noise 3] [--foreign-people N] [--no-silhouette]
                             [--targets benchmarks/targets.toml] [--out benchmarks/RESULTS.md]

ResiHMR runs twice on each benchmark: from the keypoints alone ("ours"), and with the photo's person mask
("ours_silhouette", core/silhouette.py) — the mask of the TRUE amputated body at a quarter of the image size
(foreign: Anny's own cut mesh, committed with the cases; synthetic: `synth.true_silhouette`, cut the same way),
never a mask of any fit.

Methods (all on the same people, cameras and keypoints): see METHODS. Metrics (paper §4.1) are computed by
resihmr_blender.core.metrics, plus EXTRA_FIELDS here (intact error over the joints the input gave, RAFO's λ
interval coverage and width); the targets they are judged against are in benchmarks/targets.toml (metrics of
the foreign benchmark are prefixed `foreign.`). The report (--out) is written whole by this runner,
atomically: nothing in it is typed by hand, so a rerun reproduces it.
"""
from __future__ import annotations

import argparse
import inspect
import math
import operator
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from resihmr_blender.core.atomic import write_text_atomic
from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import JOINT_INDEX, load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.fit import FitConfig, fit_people
from resihmr_blender.core.layouts import BODY25_NAMES
from resihmr_blender.core.metrics import SUMMARY_FIELDS, MethodScores, keypoint_errors, mean_or_nan
from resihmr_blender.core.pipeline import PersonFailure, reconstruct
from resihmr_blender.core.rafo import RafoConfig, lambda_intervals, rafo_loss
from resihmr_blender.core.raster import silhouette
from resihmr_blender.core.residuals import RESIDUAL_KINDS, residual_by_name

from . import foreign, poses, synth

DEFAULT_TARGETS = Path(__file__).with_name("targets.toml")

# id -> (label, how it is made); "ours" first, then the baselines
METHODS: dict[str, tuple[str, str]] = {
    "ours": ("ResiHMR (ours)", "fit to the intact keypoints (distal ones ignored) → RAFO → cut at λ*"),
    "intact_fit_midpoint": ("intact fit + midpoint",
                            "the fit trusts every detected keypoint (hallucinated limbs included) and the residual "
                            "endpoint is the limb segment's midpoint, the paper's proxy for intact-topology "
                            "methods (no cut)"),
    "our_fit_midpoint": ("our fit + midpoint", "our fit, endpoint at the segment midpoint (λ = 0.5, cut there)"),
    "joint_collapse": ("joint collapse",
                       "our fit, endpoint at the upstream joint (λ = 1, cut there), as in joint-existence methods"),
    "ours_silhouette": ("ResiHMR + photo silhouette",
                        "ours with the photo's person mask (the true body's, at 0.25 × the image): the silhouette "
                        "stage refines shape and pose, each residual limb's outline gives RAFO its tilt"),
}
SILHOUETTE = "ours_silhouette"
MASK_SCALE = 0.25  # the input masks' size, × the image (foreign.py's committed masks are at this scale)
SPEED_METRICS: dict[str, str] = {
    "speed.single_median_s": "fit + RAFO seconds per person, one at a time (median)",
    "speed.batched_people_per_s": "fit + RAFO people per second, batched",
}
# measured here for ResiHMR only ("ours.<field>", "foreign.ours.<field>")
EXTRA_FIELDS: dict[str, str] = {
    "intact_given_mpjpe_px": "intact 2D MPJPE (px) over the existing BODY_25 points the input gave",
    "input_noise_px": "the input's own error: mean distance (px) of those input keypoints from the truth",
    "lambda_coverage": "share of residual limbs whose true λ lies inside RAFO's λ interval",
    "lambda_interval_width": "mean width of RAFO's λ interval",
    "far_from_input": "people whose fitted BODY_25 is > 25 px from an existing input keypoint of confidence ≥ 0.5",
}
FOREIGN_PREFIX = "foreign."
INTERVAL_TOLERANCES_PX = (1.0, 3.0, 10.0, 30.0)  # λ interval coverage is also reported at these tolerances
COMPARATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
COMPARATOR_SIGNS = {"<=": "≤", "<": "<", ">=": "≥", ">": ">"}


def metric_names() -> list[str]:
    own = ([f"{m}.{f}" for m in METHODS for f in SUMMARY_FIELDS] + [f"ours.{f}" for f in EXTRA_FIELDS]
           + [f"{SILHOUETTE}.{f}" for f in EXTRA_FIELDS] + ["speed.batched_people_per_s"])
    return own + list(SPEED_METRICS)[:1] + [FOREIGN_PREFIX + name for name in own]


# ---------------------------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    id: str
    description: str
    metric: str
    comparator: str
    threshold: float
    reference: str | None = None
    notes: str = ""


@dataclass(frozen=True)
class Verdict:
    target: Target
    value: float
    bound: float  # threshold, or threshold × the reference's value
    reference_value: float | None
    reached: bool


def load_targets(path: str | os.PathLike = DEFAULT_TARGETS) -> list[Target]:
    """The targets of a TOML file; a wrong entry is an error here, not a silently missing row later."""
    with open(path, "rb") as handle:
        entries = tomllib.load(handle).get("target", [])
    known, targets = set(metric_names()), []
    for i, e in enumerate(entries):
        where = f"{path}: target {i + 1} ({e.get('id', '?')})"
        missing = {"id", "description", "metric", "comparator", "threshold"} - set(e)
        if missing:
            raise ValueError(f"{where}: missing {', '.join(sorted(missing))}")
        extra = set(e) - {"id", "description", "metric", "comparator", "threshold", "reference", "notes"}
        if extra:
            raise ValueError(f"{where}: unknown keys {', '.join(sorted(extra))}")
        for key in ("metric", "reference"):
            if key in e and e[key] not in known:
                raise ValueError(f"{where}: unknown {key} {e[key]!r}; known: {', '.join(sorted(known))}")
        if e["comparator"] not in COMPARATORS:
            raise ValueError(f"{where}: comparator must be one of {', '.join(COMPARATORS)}")
        if any(t.id == e["id"] for t in targets):
            raise ValueError(f"{where}: duplicate id")
        targets.append(Target(str(e["id"]), str(e["description"]), e["metric"], e["comparator"],
                              float(e["threshold"]), e.get("reference"), str(e.get("notes", "")).strip()))
    if not targets:
        raise ValueError(f"{path}: no [[target]] entries")
    return targets


def evaluate(targets: list[Target], metrics: dict[str, float]) -> list[Verdict]:
    """Reached or missed for each target; a value that is not a number (nothing measured) is a miss."""
    out = []
    for t in targets:
        value = metrics[t.metric]
        ref = metrics[t.reference] if t.reference else None
        bound = t.threshold * ref if ref is not None else t.threshold
        reached = math.isfinite(value) and math.isfinite(bound) and COMPARATORS[t.comparator](value, bound)
        out.append(Verdict(t, value, bound, ref, bool(reached)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Measuring


def mask_of(model, params: dict, cuts: list, camera: Camera) -> np.ndarray:
    mesh = build_mesh(model, params, cuts, pose=True)
    return silhouette(mesh.posed_vertices, mesh.faces, camera)


def endpoints_on_segment(joints: np.ndarray, kinds: list[str], lam: float, camera: Camera):
    """2D endpoints and 3D residual lengths for a fixed λ on the fitted skeleton."""
    pts, lengths = [], []
    for kind_name in kinds:
        kind = residual_by_name(kind_name)
        ja, jt = joints[JOINT_INDEX[kind.anchor_joint]], joints[JOINT_INDEX[kind.upstream_joint]]
        pts.append(camera.project_np(ja + lam * (jt - ja)))
        lengths.append((1.0 - lam) * float(np.linalg.norm(jt - ja)))
    return pts, lengths


def residual_array(points_by_kind: dict[str, np.ndarray]) -> np.ndarray:
    """(8, 2) endpoints in RESIDUAL_KINDS order (zeros where absent, masked out by the caller)."""
    out = np.zeros((len(RESIDUAL_KINDS), 2))
    for kind, p in points_by_kind.items():
        out[RESIDUAL_KINDS.index(kind)] = p
    return out


def run(n_people: int, seed: int, noise: float, iou_scale: float, timing_people: int, batch: int = 64,
        threads: int = 2, foreign_people: int | None = None, foreign_path: str | os.PathLike = foreign.DEFAULT_CASES,
        silhouette: bool = True) -> dict:
    """Both benchmarks; `foreign_people` None = as many as `n_people` (at most the file's), 0 = none;
    `silhouette` False skips the runs with the photo's mask."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(n_people, seed, noise, iou_scale, timing_people, batch, threads, foreign_people, foreign_path,
                    silhouette)
    finally:
        torch.set_num_threads(before)  # a caller in the same process (a test) keeps its own setting


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _batched(model, people, cameras, batch: int, masks=None):
    """reconstruct() over all people in batches (with their photo masks when given): results, wall and CPU seconds
    per person."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = []
    for start in range(0, len(people), batch):
        out += reconstruct(model, people[start:start + batch], cameras[start:start + batch],
                           masks=None if masks is None else masks[start:start + batch])
    n = max(1, len(people))
    return out, (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def _with_silhouette(model, part: dict, cases, cameras, masks, gt_mask, iou_scale, batch: int) -> dict:
    """Ours again with the photo's mask, scored like ours; its figures under SILHOUETTE in `part`."""
    load = [load_average()]
    results, batched_s, cpu_s = _batched(model, [c.keypoints for c in cases], cameras, batch, masks)
    load.append(load_average())
    scored = score_cases(model, cases, cameras, results, None, gt_mask, iou_scale)
    part["metrics"].update({SILHOUETTE + k[len("ours"):]: v for k, v in scored["metrics"].items()
                            if k.startswith("ours.")})
    part["scores"][SILHOUETTE] = scored["scores"]["ours"]
    part["silhouette"] = {"batched_s": batched_s, "batched_cpu_s": cpu_s, "load": load,
                          "coverage_by_kind": scored["coverage_by_kind"], "by_family": scored["by_family"],
                          "cues_used": scored["cues_used"]}
    return part


def _mask_of_truth(pixels: np.ndarray, what: str):
    from resihmr_blender.core.silhouette import PersonMask

    return PersonMask(pixels.astype(np.float32), f"benchmark:{what}")


def _run(n_people: int, seed: int, noise: float, iou_scale: float, timing_people: int, batch: int,
         threads: int, foreign_people: int | None, foreign_path, silhouette: bool = True) -> dict:
    model = load_body_model()
    # the defaults are what users get; the report reads its thresholds from the same config objects
    rafo_config = RafoConfig()
    dataset = synth.make_dataset(n_people, seed=seed, model=model, noise_px=noise)
    people = [p.keypoints for p in dataset]
    cameras = [p.camera for p in dataset]

    reconstruct(model, people[:1], cameras[:1])  # warm-up (scripted functions compile on first call), untimed
    load = [load_average()]  # before and after the timed part: other work on the cores slows it
    # CPU time beside wall time: wall time far above CPU time / threads means other work shared the cores
    ours, batched_s, batched_cpu_s = _batched(model, people, cameras, batch)
    trusting = fit_people(model, people, cameras, FitConfig(ignore_distal=False, residual_segments=False))

    singles, singles_cpu = [], []
    for i in range(min(timing_people, len(people))):
        t, c = time.perf_counter(), time.process_time()
        reconstruct(model, people[i:i + 1], cameras[i:i + 1])
        singles.append(time.perf_counter() - t)
        singles_cpu.append(time.process_time() - c)
    load.append(load_average())

    def synth_mask(gt, small):
        return mask_of(model, gt.params, [(k, gt.residuals[k]) for k in gt.residuals], small)

    part = score_cases(model, dataset, cameras, ours, trusting, synth_mask, iou_scale)
    if silhouette:
        masks = [_mask_of_truth(synth.true_silhouette(model, p, p.camera.scaled(MASK_SCALE)),
                                "synth.true_silhouette") for p in dataset]
        _with_silhouette(model, part, dataset, cameras, masks, synth_mask, iou_scale, batch)
    metrics = dict(part.pop("metrics"))
    metrics["speed.single_median_s"] = statistics.median(singles) if singles else float("nan")
    metrics["speed.batched_people_per_s"] = 1.0 / batched_s
    report = {**part, "metrics": metrics, "batched_s": batched_s, "batched_cpu_s": batched_cpu_s,
              "single_cpu_median_s": statistics.median(singles_cpu) if singles_cpu else float("nan"),
              "batch": batch, "threads": threads, "load": load, "timing_people": len(singles),
              "accept_threshold_px": rafo_config.accept_threshold_px,
              "interval_tolerance_px": rafo_config.interval_tolerance_px,
              "seed": seed, "noise": noise, "iou_scale": iou_scale, "foreign": None}

    cases = foreign.load_cases(foreign_path) if foreign_people != 0 else []
    cases = cases[:n_people if foreign_people is None else foreign_people]
    if cases:
        f_people, f_cameras = [c.keypoints for c in cases], [c.fit_camera for c in cases]
        f_load = [load_average()]
        f_ours, f_batched_s, f_cpu_s = _batched(model, f_people, f_cameras, batch)
        f_load.append(load_average())
        f_trusting = fit_people(model, f_people, f_cameras, FitConfig(ignore_distal=False, residual_segments=False))
        f_part = score_cases(model, cases, f_cameras, f_ours, f_trusting, lambda c, small: c.mask, None)
        if silhouette:
            f_masks = [_mask_of_truth(c.mask, "foreign.mask") for c in cases]
            _with_silhouette(model, f_part, cases, f_cameras, f_masks, lambda c, small: c.mask, None, batch)
        f_part["metrics"]["speed.batched_people_per_s"] = 1.0 / f_batched_s
        metrics.update({FOREIGN_PREFIX + k: v for k, v in f_part["metrics"].items()})
        f_part.update(batched_s=f_batched_s, batched_cpu_s=f_cpu_s, load=f_load, meta=foreign.read_meta(foreign_path),
                      path=str(foreign_path), n_focal_given=sum(c.focal_given for c in cases),
                      families={f: sum(c.family == f for c in cases) for f in foreign.POSE_FAMILIES},
                      heights=[c.height_m for c in cases])
        report["foreign"] = f_part
    else:
        metrics.update({FOREIGN_PREFIX + k: float("nan") for k in metric_names() if not k.startswith(
            (FOREIGN_PREFIX, "speed.single"))})
    return report


def interval_coverage(limbs: list, tolerance_px: float) -> tuple[float, float]:
    """(coverage, mean width) of RAFO's λ intervals recomputed at another tolerance from the solved limbs
    (rafo.ResidualResult, its camera, the true λ): eq. 4's profile at that tolerance (without the outline cue), widened
    to the λ hypotheses as rafo.solve does."""
    if not limbs:
        return float("nan"), float("nan")
    stack = lambda get: np.stack([np.asarray(get(r, c), np.float64) for r, c, _ in limbs])  # noqa: E731
    anchor, lam = stack(lambda r, c: r.anchor_3d), stack(lambda r, c: r.lam)
    init, up, target = stack(lambda r, c: r.anchor_init_3d), stack(lambda r, c: r.upstream_3d), \
        stack(lambda r, c: r.target_2d)
    focal, centre = stack(lambda r, c: c.focal_length), stack(lambda r, c: c.principal_point)
    alpha, mu = stack(lambda r, c: r.alpha), stack(lambda r, c: r.mu)
    t = torch.from_numpy
    loss = rafo_loss(t(anchor), t(lam), t(init), t(up), t(target), t(focal), t(centre), t(alpha), t(mu)).numpy()
    config = RafoConfig(interval_tolerance_px=tolerance_px)
    iv = lambda_intervals(anchor, lam, loss, init, up, target, focal, centre, alpha, mu, config)
    for i, (r, _, _) in enumerate(limbs):
        iv[i] = min(iv[i, 0], *r.lam_hypotheses.values()), max(iv[i, 1], *r.lam_hypotheses.values())
    truth = np.array([g for _, _, g in limbs])
    return float(((iv[:, 0] <= truth) & (truth <= iv[:, 1])).mean()), float((iv[:, 1] - iv[:, 0]).mean())


def score_cases(model, cases, cameras, ours, trusting, gt_mask, iou_scale: float | None) -> dict:
    """Every method's scores over one benchmark's people (synth.SyntheticPerson or foreign.ForeignCase).

    gt_mask(case, small_camera) -> the true amputated silhouette; iou_scale None = the case's own mask_scale.
    trusting None: ours only (the baselines' columns stay empty)."""
    baselines = trusting is not None
    trusting = trusting if baselines else [None] * len(ours)
    cues_used = [0, 0]  # residual limbs whose outline gave a cue, of those with a mask
    scores = {m: MethodScores() for m in METHODS}
    given_errors, input_errors, cover_by_kind, widths, limbs = [], [], {}, [], []
    joint_errors: dict[int, list[float]] = {}
    far = 0
    by_family: dict[str, MethodScores] = {}
    by_focal: dict[bool, MethodScores] = {True: MethodScores(), False: MethodScores()}
    accepted, missing_limbs, skipped = [], 0, 0
    for gt, res, trust, cam in zip(cases, ours, trusting, cameras):
        kinds = list(gt.residuals)
        halluc = bool(np.any(gt.hallucinated))
        ours_failed, trust_failed = isinstance(res, PersonFailure), baselines and isinstance(trust, Exception)
        if ours_failed or trust_failed:
            # a person is scored by all methods or by none, so every column is over the same people
            for m in METHODS:
                scores[m].failures += int(trust_failed if m == "intact_fit_midpoint" else ours_failed)
            skipped += 1
            continue
        scale = iou_scale if iou_scale is not None else gt.mask_scale
        small = cam.scaled(scale)
        gt_mask_small = gt_mask(gt, small)

        s = scores["ours"]
        by_kind = {r.kind: r for r in res.residuals}
        missing_limbs += sum(k not in by_kind for k in kinds)
        found = gt.gt_residual_exists & np.array([k in by_kind for k in RESIDUAL_KINDS])
        errors = keypoint_errors(res.body25_2d, gt.gt_body25_2d, gt.gt_body25_exists,
                                 residual_array({k: r.endpoint_2d for k, r in by_kind.items()}),
                                 gt.gt_residual_2d, found)
        s.add_keypoints(errors, halluc)
        given = gt.gt_body25_exists & (gt.keypoints.body25[:, 2] > 0)
        given_errors.append(np.linalg.norm(res.body25_2d[given] - gt.gt_body25_2d[given], axis=-1))
        input_errors.append(np.linalg.norm(gt.keypoints.body25[given, :2] - gt.gt_body25_2d[given], axis=-1))
        confident = gt.gt_body25_exists & (gt.keypoints.body25[:, 2] >= 0.5)
        far += bool((np.linalg.norm(res.body25_2d[confident] - gt.keypoints.body25[confident, :2], axis=-1)
                     > 25.0).any())
        for j in np.flatnonzero(gt.gt_body25_exists):
            joint_errors.setdefault(int(j), []).append(float(np.linalg.norm(res.body25_2d[j] - gt.gt_body25_2d[j])))
        focal_given = getattr(gt, "focal_given", True)
        by_focal[focal_given].add_keypoints(errors, halluc)
        family = by_family.setdefault(getattr(gt, "family", "all"), MethodScores())
        family.add_keypoints(errors, halluc)
        for k in kinds:
            if k in by_kind:
                r = by_kind[k]
                s.add_residual(k, r.lam, gt.residuals[k], r.residual_length_m, gt.gt_residual_length_m[k])
                for scored in (by_focal[focal_given], family):
                    scored.add_residual(k, r.lam, gt.residuals[k], r.residual_length_m, gt.gt_residual_length_m[k])
                accepted.append(r.accepted)
                limbs.append((r, cam, gt.residuals[k]))
                if r.lam_interval is not None:
                    lo, hi = r.lam_interval
                    cover_by_kind.setdefault(k, []).append(lo <= gt.residuals[k] <= hi)
                    widths.append(hi - lo)
        ours_mask = mask_of(model, res.params(), [(r.kind, r.lam) for r in res.residuals if r.accepted], small)
        s.add_masks(ours_mask, gt_mask_small)
        family.add_masks(ours_mask, gt_mask_small)
        if res.silhouette is not None:
            cues_used[0] += sum(c.sin_tilt is not None or c.target_2d is not None for c in res.silhouette.cues.values())
            cues_used[1] += len(res.silhouette.cues)
        if not baselines:
            continue

        for name, fit, lam, cut in (("intact_fit_midpoint", trust, 0.5, False),
                                    ("our_fit_midpoint", res.fit, 0.5, True), ("joint_collapse", res.fit, 1.0, True)):
            s = scores[name]
            pts, lengths = endpoints_on_segment(fit.joints_3d, kinds, lam, cam)
            s.add_keypoints(keypoint_errors(fit.body25_2d, gt.gt_body25_2d, gt.gt_body25_exists,
                                            residual_array(dict(zip(kinds, pts))), gt.gt_residual_2d,
                                            gt.gt_residual_exists), halluc)
            for k, pl in zip(kinds, lengths):
                s.add_residual(k, lam, gt.residuals[k], pl, gt.gt_residual_length_m[k])
            s.add_masks(mask_of(model, fit.params(), [(k, lam) for k in kinds] if cut else [], small), gt_mask_small)

    metrics = {f"{m}.{f}": v for m, sc in scores.items() for f, v in sc.summary().items()}
    covered = [c for v in cover_by_kind.values() for c in v]
    metrics["ours.intact_given_mpjpe_px"] = mean_or_nan(given_errors)
    metrics["ours.input_noise_px"] = mean_or_nan(input_errors)
    metrics["ours.lambda_coverage"] = mean_or_nan(covered)
    metrics["ours.lambda_interval_width"] = mean_or_nan(widths)
    metrics["ours.far_from_input"] = float(far)
    return {"scores": scores, "metrics": metrics, "n": len(cases), "skipped": skipped,
            "coverage_by_tolerance": {tol: interval_coverage(limbs, tol) for tol in INTERVAL_TOLERANCES_PX},
            "coverage_by_kind": {k: mean_or_nan(v) for k, v in sorted(cover_by_kind.items())},
            "by_focal": by_focal, "by_family": by_family,
            "joint_mpjpe_px": {j: (mean_or_nan(v), float(np.median(v))) for j, v in sorted(joint_errors.items())},
            "n_halluc": sum(bool(np.any(p.hallucinated)) for p in cases),
            "n_coco": sum(p.keypoints.source_format != "openpose" for p in cases),
            "n_residuals": sum(len(p.residuals) for p in cases), "accepted": accepted,
            "missing_limbs": missing_limbs, "cues_used": cues_used}


# ---------------------------------------------------------------------------------------------------------------
# Reporting


def fmt(metric: str, value: float | None) -> str:
    """A metric's value with the digits and unit it is read in."""
    if value is None or not math.isfinite(value):
        return "n/a"
    field_name = metric.rsplit(".", 1)[1]
    if field_name.endswith("_px"):
        return f"{value:.2f} px"
    if field_name == "length_error_cm":
        return f"{value:.2f} cm"
    if field_name in ("failures", "far_from_input"):
        return f"{value:.0f}"
    if field_name == "single_median_s":
        return f"{value:.3f} s"
    if field_name == "batched_people_per_s":
        return f"{value:.1f} people/s"
    return f"{value:.3f}"


def targets_table(verdicts: list[Verdict]) -> list[str]:
    lines = ["| target | promise | metric | measured | bound | result |", "|---|---|---|---:|---|---|"]
    for v in verdicts:
        t = v.target
        measured = fmt(t.metric, v.value)
        bound = f"{COMPARATOR_SIGNS[t.comparator]} "
        if t.reference:
            bound += (f"{t.threshold:g} × {fmt(t.reference, v.reference_value)} (`{t.reference}`) "
                      f"= {fmt(t.metric, v.bound)}")
            if v.reference_value and math.isfinite(v.value):
                measured += f" ({v.value / v.reference_value:.2f} ×)"
        else:
            bound += fmt(t.metric, t.threshold)
        result = "reached" if v.reached else "**missed**"
        lines.append(f"| {t.id} | {t.description} | `{t.metric}` | {measured} | {bound} | {result} |")
    return lines


def metrics_table(report: dict, prefix: str = "") -> list[str]:
    header = ["body MPJPE (px)", "residual MPJPE (px)", "intact MPJPE (px)", "intact, hallucination cases (px)",
              "λ MAE", "residual length error (cm)", "silhouette IoU", "failures"]
    lines = ["| method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    digits = {"lambda_mae": 3, "iou": 3, "failures": 0}
    for m, (label, _) in METHODS.items():
        cells = [f"{report['metrics'][f'{prefix}{m}.{f}']:.{digits.get(f, 2)}f}" for f in SUMMARY_FIELDS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _shown(path) -> str:
    """A path relative to the repository when inside it (the report should not name this machine's folders)."""
    root, path = Path(__file__).resolve().parent.parent, Path(path).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _num(value: float, digits: int = 2, unit: str = "") -> str:
    return f"{value:.{digits}f}{unit}" if value is not None and math.isfinite(value) else "n/a"


def foreign_section(report: dict) -> list[str]:
    """The foreign-body benchmark: its data, the methods table and RAFO's counts."""
    f = report["foreign"]
    if f is None:
        return ["## Foreign bodies (Anny)", "", "Not run (`--foreign-people 0`).", ""]
    meta, heights = f["meta"], f["heights"]
    families = ", ".join(f"{name} {count}" for name, count in f["families"].items())
    out = ["## Foreign bodies (Anny)", "",
           f"- Data: `{_shown(f['path'])}` "
           f"(`benchmarks/foreign.py`, made by `tools/make_foreign_cases.py`), the first {f['n']} of "
           f"{meta['n']} people of held-out seed {meta['seed']}: Anny {meta['anny_version']} with its own skeleton "
           f"and skinning (never the embedded body), ages {meta['age_range_years'][0]:g}-"
           f"{meta['age_range_years'][1]:g} (heights {min(heights):.2f}-{max(heights):.2f} m); poses: {families}; "
           f"focal length {meta['focal_range_px'][0]:g}-{meta['focal_range_px'][1]:g} px, given to the fit for "
           f"{f['n_focal_given']} people and withheld (the add-on's guess) for {f['n'] - f['n_focal_given']}; "
           f"keypoint noise σ = {meta['noise_px']:g} px, {f['n_coco']} as COCO keypoints, {f['n_halluc']} with "
           f"hallucinated distal keypoints. Joints compared after mapping both skeletons to BODY_25 by anatomy "
           f"(table in `benchmarks/foreign.py`); silhouettes of Anny's own mesh, cut at the true endpoints, at "
           f"{meta['mask_scale']:g} × the image size.", ""]
    out += metrics_table(report, FOREIGN_PREFIX)
    n_rafo = f"RAFO returned {len(f['accepted'])}/{f['n_residuals']} residual limbs"
    if f["missing_limbs"]:
        n_rafo += f" (**{f['missing_limbs']} missing**, not scored)"
    busy = (f" (1-min load average {f['load'][0]:.1f} before, {f['load'][-1]:.1f} after)"
            if None not in f["load"] else "")
    out += ["", f"{n_rafo} and accepted {sum(f['accepted'])}."
            + (f" {f['skipped']} people skipped because a method failed on them." if f["skipped"] else ""), "",
            f"Fit + RAFO time per person, batched as for the synthetic people: {f['batched_s']:.3f} s "
            f"(CPU {f['batched_cpu_s']:.3f} s){busy}.", ""]
    return out


def side_by_side(report: dict) -> list[str]:
    """ResiHMR on both benchmarks: the headline numbers, λ per kind with interval coverage, focal given or not."""
    m, f = report["metrics"], report["foreign"]
    both = [("", report)] + ([(FOREIGN_PREFIX, f)] if f else [])
    rows = [("intact MPJPE, all existing BODY_25 points (px)", "ours.intact_mpjpe_px", 2),
            ("intact MPJPE, the points the input gave (px)", "ours.intact_given_mpjpe_px", 2),
            ("the input's own error on those points (px)", "ours.input_noise_px", 2),
            ("residual-endpoint MPJPE (px)", "ours.residual_mpjpe_px", 2),
            ("λ MAE", "ours.lambda_mae", 3),
            ("λ interval coverage (true λ inside)", "ours.lambda_coverage", 3),
            ("λ interval mean width", "ours.lambda_interval_width", 3),
            ("residual length error (cm)", "ours.length_error_cm", 2),
            ("silhouette IoU", "ours.iou", 3),
            ("people > 25 px from a confident input keypoint (wrong minima)", "ours.far_from_input", 0),
            ("failures", "ours.failures", 0),
            ("**with the photo silhouette**: intact MPJPE, all existing points (px)", f"{SILHOUETTE}.intact_mpjpe_px",
             2),
            ("with the photo silhouette: residual-endpoint MPJPE (px)", f"{SILHOUETTE}.residual_mpjpe_px", 2),
            ("with the photo silhouette: λ MAE", f"{SILHOUETTE}.lambda_mae", 3),
            ("with the photo silhouette: λ interval coverage", f"{SILHOUETTE}.lambda_coverage", 3),
            ("with the photo silhouette: λ interval mean width", f"{SILHOUETTE}.lambda_interval_width", 3),
            ("with the photo silhouette: residual length error (cm)", f"{SILHOUETTE}.length_error_cm", 2),
            ("with the photo silhouette: silhouette IoU", f"{SILHOUETTE}.iou", 3),
            ("with the photo silhouette: failures", f"{SILHOUETTE}.failures", 0)]
    out = ["## Both benchmarks side by side", "",
           "ResiHMR (ours). The λ interval is RAFO's own (result.json `lambda_interval`, `core/rafo.py` `solve`): "
           "the λ in [0, 1] whose best anchor keeps eq. 4 (reprojection + α·anchor shift + μ·length change, with the "
           f"outline's tilt cue when there is a mask, all in px²) within {report['interval_tolerance_px']:g}² px² of "
           "RAFO's optimum, widened to the λ hypotheses (RAFO with its tilt prior centred on a low and a steep tilt, "
           "result.json `lambda_hypotheses`).", "",
           "| ResiHMR (ours) | synthetic (embedded body) | foreign (Anny) |", "|---|---:|---:|"]
    for label, key, digits in rows:
        out.append(f"| {label} | " + " | ".join(_num(m.get(p + key, float("nan")), digits) for p in ("",
                                                                                               FOREIGN_PREFIX)) + " |")
    proxy = [m.get(p + "ours.residual_mpjpe_px", float("nan")) / m.get(p + "intact_fit_midpoint.residual_mpjpe_px",
                                                                         float("nan")) for p in ("", FOREIGN_PREFIX)]
    out.append("| residual MPJPE / midpoint proxy of the trusting fit | "
               + " | ".join(_num(v, 3) for v in proxy) + " |")
    times = [report["batched_s"], f["batched_s"] if f else float("nan")]
    out.append("| fit + RAFO time per person, batched (s) | " + " | ".join(_num(v, 3) for v in times) + " |")
    sil = [part.get("silhouette") for _, part in both] + ([] if f else [None])
    out.append("| with the photo silhouette: fit + silhouette + RAFO time per person, batched (s) | "
               + " | ".join(_num(x["batched_s"], 3) if x else "n/a" for x in sil) + " |")
    out.append("| with the photo silhouette: residual limbs whose outline gave RAFO a cue | "
               + " | ".join(f"{x['cues_used'][0]} of {x['cues_used'][1]}" if x else "n/a" for x in sil) + " |")
    cover = [part["coverage_by_tolerance"] for _, part in both]
    out += ["", "The λ interval at other tolerances (coverage / mean width; synthetic, then foreign): " + "; ".join(
        f"{tol:g} px: " + ", ".join(f"{c[tol][0]:.2f} / {c[tol][1]:.2f}" for c in cover)
        for tol in INTERVAL_TOLERANCES_PX) + "."]
    out += ["", "λ per kind (MAE, coverage of the λ interval, limbs):", "",
            "| kind | synthetic λ MAE | synthetic coverage | n | foreign λ MAE | foreign coverage | n |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for kind in RESIDUAL_KINDS:
        cells = []
        for _, part in both + ([] if f else [(None, None)]):
            if part is None:
                cells += ["n/a"] * 3
                continue
            sc = part["scores"]["ours"]
            cells += [_num(sc.lambda_mae_by_kind().get(kind, float("nan")), 3),
                      _num(part["coverage_by_kind"].get(kind, float("nan")), 3), str(len(sc.lam_by_kind.get(kind, [])))]
        out.append(f"| {kind} | " + " | ".join(cells) + " |")
    if any(sil):
        out += ["", "λ per kind without and with the photo silhouette (MAE; coverage of the λ interval with it):", "",
                "| kind | synthetic λ MAE | + silhouette | coverage | foreign λ MAE | + silhouette | coverage |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for kind in RESIDUAL_KINDS:
            cells = []
            for (_, part), x in zip(both + ([] if f else [(None, None)]), sil):
                if part is None or x is None:
                    cells += ["n/a"] * 3
                    continue
                plain, with_mask = part["scores"]["ours"], part["scores"][SILHOUETTE]
                cells += [_num(plain.lambda_mae_by_kind().get(kind, float("nan")), 3),
                          _num(with_mask.lambda_mae_by_kind().get(kind, float("nan")), 3),
                          _num(x["coverage_by_kind"].get(kind, float("nan")), 3)]
            out.append(f"| {kind} | " + " | ".join(cells) + " |")
    out += ["", "Intact error per BODY_25 point, the five largest means (px, median in brackets; synthetic, then "
            "foreign): " + "; ".join(", ".join(
                f"{BODY25_NAMES[j]} {mean:.1f} ({median:.1f})" for j, (mean, median) in sorted(
                    part["joint_mpjpe_px"].items(), key=lambda item: -item[1][0])[:5]) for _, part in both) + "."]
    if f:
        out += ["", "Foreign people per pose family (ResiHMR; λ MAE and IoU also with the photo silhouette):", "",
                "| pose | people | intact MPJPE (px) | residual MPJPE (px) | λ MAE | + silhouette | silhouette IoU "
                "| + silhouette |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, count in f["families"].items():
            summary = f["by_family"].get(name, MethodScores()).summary()
            with_mask = (f["silhouette"]["by_family"].get(name, MethodScores()) if f.get("silhouette")
                         else MethodScores()).summary()
            out.append(f"| {name} | {count} | {_num(summary['intact_mpjpe_px'])} | {_num(summary['residual_mpjpe_px'])}"
                       f" | {_num(summary['lambda_mae'], 3)} | {_num(with_mask['lambda_mae'], 3)}"
                       f" | {_num(summary['iou'], 3)} | {_num(with_mask['iou'], 3)} |")
        out += ["", "Foreign people with the focal length given and withheld (ResiHMR):", "",
                "| focal length | people | intact MPJPE (px) | residual MPJPE (px) | λ MAE |",
                "|---|---:|---:|---:|---:|"]
        for given, label in ((True, "given"), (False, "withheld (guessed)")):
            summary = f["by_focal"][given].summary()
            people = f["n_focal_given"] if given else f["n"] - f["n_focal_given"]
            out.append(f"| {label} | {people} | {_num(summary['intact_mpjpe_px'])} | "
                       f"{_num(summary['residual_mpjpe_px'])} | {_num(summary['lambda_mae'], 3)} |")
    return out + [""]


def machine_line(threads: int, load: list[float | None] | None = None) -> str:
    """The machine as the platform reports it (never typed by hand)."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine() or "unknown CPU"
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    # timings depend on what else runs: the load average around the timed part says whether the cores were shared
    busy = ""
    if load and None not in load:
        busy = f"; 1-min load average {load[0]:.1f} before the timed part, {load[-1]:.1f} after it"
    return (f"{platform.platform()}; {cpu}; {cores} logical cores ({usable} usable); torch threads {threads}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}{busy}")


def source_line() -> str:
    """The commit the code came from, and whether the tree differed from it (a benchmark of uncommitted code)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def render(report: dict, verdicts: list[Verdict], command: str, started: datetime, elapsed_s: float,
           targets_path: str) -> str:
    data_defaults = {k: p.default for k, p in inspect.signature(synth.make_dataset).parameters.items()
                     if p.default is not inspect.Parameter.empty}
    ours = report["scores"]["ours"]
    accepted = report["accepted"]
    n_limbs_ours = len(accepted)
    out = ["# Benchmark results", "",
           "Written whole by `benchmarks/run.py`; do not edit by hand, rerun the command instead.", "",
           f"- Command: `{command}`",
           f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}, {elapsed_s:.0f} s in all",
           f"- Machine: {machine_line(report['threads'], report['load'])}",
           f"- Code: {source_line()}",
           f"- Data: `benchmarks/synth.py`, seed {report['seed']}: {len(poses.KEYFRAMES)} keyframe poses blended by "
           f"slerp, keypoint noise σ = {report['noise']:g} px, {data_defaults['coco_share']:.0%} as COCO keypoints, "
           f"hallucinated distal keypoints on {data_defaults['hallucination_share']:.0%} of the amputated limbs "
           f"({len(synth.HALLUCINATION_MODES)} modes, ≥ {synth.MIN_HALLUCINATION_OFFSET_PX:g} px from the truth), "
           f"{data_defaults['drop_share']:.0%} of the existing keypoints dropped",
           "", "## Methods", ""]
    out += [f"- **{label}**: {how}" for label, how in METHODS.values()]
    out += ["", "## Metrics", "",
            "2D MPJPE (paper §4.1) is a mean over all scored points of all people: *intact* over the BODY_25 "
            "keypoints that exist (those distal to an amputation do not), *residual* over the residual-limb "
            "endpoints (8 kinds, those present), *body* over both (up to 33). Silhouette IoU is against the "
            f"ground-truth amputated body, rendered at {report['iou_scale']:g} × the image size, averaged over "
            "people. λ MAE and the residual length error (3D, cm) are over the residual limbs.", ""]
    out += metrics_table(report)
    n_rafo = f"RAFO returned {n_limbs_ours}/{report['n_residuals']} residual limbs"
    if report["missing_limbs"]:
        n_rafo += f" (**{report['missing_limbs']} missing**, not scored)"
    out += ["",
            f"{report['n']} people ({report['n_coco']} given as LDPose-style COCO keypoints, {report['n_halluc']} "
            f"with hallucinated distal keypoints), {report['n_residuals']} residual limbs; {n_rafo} and accepted "
            f"{sum(accepted)} (reprojection threshold {report['accept_threshold_px']:g} px, `RafoConfig`)."
            + (f" {report['skipped']} people skipped because a method failed on them." if report["skipped"] else ""),
            "",
            "ResiHMR λ MAE per kind: " + ", ".join(
                f"{k} {v:.3f} (n={len(ours.lam_by_kind[k])})" for k, v in ours.lambda_mae_by_kind().items()) + ".",
            "",
            f"Fit + RAFO time per person: {fmt('speed.single_median_s', report['metrics']['speed.single_median_s'])} "
            f"median one at a time (over the first {report['timing_people']}); {report['batched_s']:.3f} s per person "
            f"in batches of up to {report['batch']}, after one untimed warm-up call "
            f"({fmt('speed.batched_people_per_s', report['metrics']['speed.batched_people_per_s'])}). "
            f"CPU time of this process (all threads): {report['single_cpu_median_s']:.3f} s and "
            f"{report['batched_cpu_s']:.3f} s per person.",
            ""]
    out += foreign_section(report) + side_by_side(report)
    out += ["## Against the targets", "",
            f"From `{targets_path}`: {sum(v.reached for v in verdicts)} of {len(verdicts)} reached.", ""]
    out += targets_table(verdicts)
    missed = [v for v in verdicts if not v.reached and v.target.notes]
    if missed:
        out += ["", "### Notes on the missed targets"]
        for v in missed:
            out += ["", f"**{v.target.id}**: " + " ".join(v.target.notes.split())]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=3.0)
    parser.add_argument("--iou-scale", type=float, default=0.25)
    parser.add_argument("--timing-people", type=int, default=20, help="people timed one at a time")
    parser.add_argument("--batch", type=int, default=64, help="people per reconstruct() call when batched")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--foreign-people", type=int, default=None,
                        help="foreign (Anny) people scored; default as many as --people, at most the file's; 0 = none")
    parser.add_argument("--foreign-cases", default=str(foreign.DEFAULT_CASES), help=argparse.SUPPRESS)
    parser.add_argument("--no-silhouette", dest="silhouette", action="store_false",
                        help="skip the runs with the photo's person mask")
    parser.add_argument("--targets", default=str(DEFAULT_TARGETS.relative_to(Path.cwd()))
                        if DEFAULT_TARGETS.is_relative_to(Path.cwd()) else str(DEFAULT_TARGETS))
    parser.add_argument("--out", default=None, help="write the report (markdown) to this file")
    args = parser.parse_args(argv)
    targets = load_targets(args.targets)  # before the run: a bad targets file should not cost two minutes
    started, t0 = datetime.now(UTC), time.perf_counter()
    report = run(args.people, args.seed, args.noise, args.iou_scale, args.timing_people, args.batch, args.threads,
                 args.foreign_people, args.foreign_cases, args.silhouette)
    verdicts = evaluate(targets, report["metrics"])
    command = "python -m benchmarks.run" + (" " + shlex.join(argv) if argv else "")
    text = render(report, verdicts, command, started, time.perf_counter() - t0, args.targets)
    print(text, end="")
    if args.out:
        write_text_atomic(args.out, text)
    report.update(verdicts=verdicts, text=text)
    return report


if __name__ == "__main__":
    main()
