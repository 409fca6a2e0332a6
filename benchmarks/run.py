"""Synthetic ground-truth benchmark of the fit + RAFO against the paper's baselines, in one run.

    python -m benchmarks.run [--people 120] [--seed 0] [--noise 3] [--targets benchmarks/targets.toml]
                             [--out benchmarks/RESULTS.md]

Methods (all on the same people, cameras and keypoints): see METHODS. Metrics (paper §4.1) are computed by
resihmr_blender.core.metrics; the targets they are judged against are in benchmarks/targets.toml. The report
(--out) is written whole by this runner, atomically: nothing in it is typed by hand, so a rerun reproduces it.
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
from resihmr_blender.core.metrics import SUMMARY_FIELDS, MethodScores, keypoint_errors
from resihmr_blender.core.pipeline import PersonFailure, reconstruct
from resihmr_blender.core.rafo import RafoConfig
from resihmr_blender.core.raster import silhouette
from resihmr_blender.core.residuals import RESIDUAL_KINDS, residual_by_name

from . import poses, synth

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
}
SPEED_METRICS: dict[str, str] = {
    "speed.single_median_s": "fit + RAFO seconds per person, one at a time (median)",
    "speed.batched_people_per_s": "fit + RAFO people per second, batched",
}
COMPARATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
COMPARATOR_SIGNS = {"<=": "≤", "<": "<", ">=": "≥", ">": ">"}


def metric_names() -> list[str]:
    return [f"{m}.{f}" for m in METHODS for f in SUMMARY_FIELDS] + list(SPEED_METRICS)


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


def small_camera(camera: Camera, scale: float) -> Camera:
    return Camera(max(1, round(camera.width * scale)), max(1, round(camera.height * scale)),
                  camera.focal_length * scale, (camera.principal_point[0] * scale, camera.principal_point[1] * scale))


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
        threads: int = 2) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(n_people, seed, noise, iou_scale, timing_people, batch, threads)
    finally:
        torch.set_num_threads(before)  # a caller in the same process (a test) keeps its own setting


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _run(n_people: int, seed: int, noise: float, iou_scale: float, timing_people: int, batch: int,
         threads: int) -> dict:
    model = load_body_model()
    # the defaults are what users get; the report reads its thresholds from the same config objects
    rafo_config = RafoConfig()
    dataset = synth.make_dataset(n_people, seed=seed, model=model, noise_px=noise)
    people = [p.keypoints for p in dataset]
    cameras = [p.camera for p in dataset]
    scores = {m: MethodScores() for m in METHODS}

    reconstruct(model, people[:1], cameras[:1])  # warm-up (scripted functions compile on first call), untimed
    load = [load_average()]  # before and after the timed part: other work on the cores slows it
    # CPU time beside wall time: wall time far above CPU time / threads means other work shared the cores
    t0, c0 = time.perf_counter(), time.process_time()
    ours = []
    for start in range(0, len(people), batch):
        ours += reconstruct(model, people[start:start + batch], cameras[start:start + batch])
    batched_s = (time.perf_counter() - t0) / len(people)
    batched_cpu_s = (time.process_time() - c0) / len(people)
    trusting = fit_people(model, people, cameras, FitConfig(ignore_distal=False, residual_segments=False))

    singles, singles_cpu = [], []
    for i in range(min(timing_people, len(people))):
        t, c = time.perf_counter(), time.process_time()
        reconstruct(model, people[i:i + 1], cameras[i:i + 1])
        singles.append(time.perf_counter() - t)
        singles_cpu.append(time.process_time() - c)
    load.append(load_average())

    accepted, missing_limbs, skipped = [], 0, 0
    for gt, res, trust, cam in zip(dataset, ours, trusting, cameras):
        kinds = list(gt.residuals)
        halluc = bool(np.any(gt.hallucinated))
        ours_failed, trust_failed = isinstance(res, PersonFailure), isinstance(trust, Exception)
        if ours_failed or trust_failed:
            # a person is scored by all methods or by none, so every column is over the same people
            for m in METHODS:
                scores[m].failures += int(trust_failed if m == "intact_fit_midpoint" else ours_failed)
            skipped += 1
            continue
        small = small_camera(cam, iou_scale)
        gt_mask = mask_of(model, gt.params, [(k, gt.residuals[k]) for k in kinds], small)

        s = scores["ours"]
        by_kind = {r.kind: r for r in res.residuals}
        missing_limbs += sum(k not in by_kind for k in kinds)
        found = gt.gt_residual_exists & np.array([k in by_kind for k in RESIDUAL_KINDS])
        s.add_keypoints(keypoint_errors(res.body25_2d, gt.gt_body25_2d, gt.gt_body25_exists,
                                        residual_array({k: r.endpoint_2d for k, r in by_kind.items()}),
                                        gt.gt_residual_2d, found), halluc)
        for k in kinds:
            if k in by_kind:
                r = by_kind[k]
                s.add_residual(k, r.lam, gt.residuals[k], r.residual_length_m, gt.gt_residual_length_m[k])
                accepted.append(r.accepted)
        s.add_masks(mask_of(model, res.params(), [(r.kind, r.lam) for r in res.residuals if r.accepted], small),
                    gt_mask)

        for name, fit, lam, cut in (("intact_fit_midpoint", trust, 0.5, False),
                                    ("our_fit_midpoint", res.fit, 0.5, True), ("joint_collapse", res.fit, 1.0, True)):
            s = scores[name]
            pts, lengths = endpoints_on_segment(fit.joints_3d, kinds, lam, cam)
            s.add_keypoints(keypoint_errors(fit.body25_2d, gt.gt_body25_2d, gt.gt_body25_exists,
                                            residual_array(dict(zip(kinds, pts))), gt.gt_residual_2d,
                                            gt.gt_residual_exists), halluc)
            for k, pl in zip(kinds, lengths):
                s.add_residual(k, lam, gt.residuals[k], pl, gt.gt_residual_length_m[k])
            s.add_masks(mask_of(model, fit.params(), [(k, lam) for k in kinds] if cut else [], small), gt_mask)

    metrics = {f"{m}.{f}": v for m, s in scores.items() for f, v in s.summary().items()}
    metrics["speed.single_median_s"] = statistics.median(singles) if singles else float("nan")
    metrics["speed.batched_people_per_s"] = 1.0 / batched_s
    return {"scores": scores, "metrics": metrics, "batched_s": batched_s, "batched_cpu_s": batched_cpu_s,
            "single_cpu_median_s": statistics.median(singles_cpu) if singles_cpu else float("nan"),
            "batch": batch, "threads": threads,
            "load": load, "timing_people": len(singles), "n": len(dataset), "skipped": skipped,
            "n_halluc": sum(bool(np.any(p.hallucinated)) for p in dataset),
            "n_coco": sum(p.keypoints.source_format != "openpose" for p in dataset),
            "n_residuals": sum(len(p.residuals) for p in dataset), "accepted": accepted,
            "missing_limbs": missing_limbs, "accept_threshold_px": rafo_config.accept_threshold_px,
            "seed": seed, "noise": noise, "iou_scale": iou_scale}


# ---------------------------------------------------------------------------------------------------------------
# Reporting


def fmt(metric: str, value: float | None) -> str:
    """A metric's value with the digits and unit it is read in."""
    if value is None or not math.isfinite(value):
        return "n/a"
    field_name = metric.split(".", 1)[1]
    if field_name.endswith("_px"):
        return f"{value:.2f} px"
    if field_name == "length_error_cm":
        return f"{value:.2f} cm"
    if field_name == "failures":
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


def metrics_table(report: dict) -> list[str]:
    header = ["body MPJPE (px)", "residual MPJPE (px)", "intact MPJPE (px)", "intact, hallucination cases (px)",
              "λ MAE", "residual length error (cm)", "silhouette IoU", "failures"]
    lines = ["| method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    digits = {"lambda_mae": 3, "iou": 3, "failures": 0}
    for m, (label, _) in METHODS.items():
        cells = [f"{report['metrics'][f'{m}.{f}']:.{digits.get(f, 2)}f}" for f in SUMMARY_FIELDS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


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
            "", "## Against the targets", "",
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
    parser.add_argument("--targets", default=str(DEFAULT_TARGETS.relative_to(Path.cwd()))
                        if DEFAULT_TARGETS.is_relative_to(Path.cwd()) else str(DEFAULT_TARGETS))
    parser.add_argument("--out", default=None, help="write the report (markdown) to this file")
    args = parser.parse_args(argv)
    targets = load_targets(args.targets)  # before the run: a bad targets file should not cost two minutes
    started, t0 = datetime.now(UTC), time.perf_counter()
    report = run(args.people, args.seed, args.noise, args.iou_scale, args.timing_people, args.batch, args.threads)
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
