"""Synthetic ground-truth benchmark of the fit + RAFO against the paper's baselines, in one run.

    python -m benchmarks.run [--people 120] [--seed 0] [--noise 3] [--out benchmarks/RESULTS.md]

Methods (all on the same people, cameras and keypoints):
- ResiHMR (ours): fit to intact keypoints (distal ones ignored) -> RAFO -> cut at λ*;
- intact fit + midpoint: the fit trusts every detected keypoint (hallucinated limbs included) and the residual
  endpoint is the midpoint of the limb segment, the paper's proxy for intact-topology methods (no cut);
- our fit + midpoint: our fit, endpoint at the segment midpoint (λ = 0.5, cut there);
- joint collapse: our fit, endpoint at the upstream joint (λ = 1, cut there), as in joint-existence methods.

Metrics (paper §4.1): 2D MPJPE in pixels over the intact keypoints that exist (25 minus those distal to an
amputation), the residual endpoints (8 kinds, those present) and both ("body", up to 33); λ mean absolute
error; 3D residual-length error in cm; silhouette IoU against the ground-truth amputated body (rendered at a
quarter of the image size); seconds per person, one at a time (median) and batched.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import JOINT_INDEX, load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.fit import FitConfig, fit_people
from resihmr_blender.core.metrics import mask_iou
from resihmr_blender.core.pipeline import PersonFailure, reconstruct
from resihmr_blender.core.raster import silhouette
from resihmr_blender.core.residuals import RESIDUAL_KINDS, residual_by_name

from . import synth

METHODS = ("ResiHMR (ours)", "intact fit + midpoint", "our fit + midpoint", "joint collapse")


@dataclass
class Scores:
    intact: list = field(default_factory=list)
    residual: list = field(default_factory=list)
    intact_halluc: list = field(default_factory=list)
    lam: list = field(default_factory=list)
    length_cm: list = field(default_factory=list)
    iou: list = field(default_factory=list)
    accepted: list = field(default_factory=list)
    lam_by_kind: dict = field(default_factory=dict)
    failures: int = 0


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


def score_keypoints(s: Scores, pred25, gt, halluc: bool) -> None:
    exists = gt.gt_body25_exists
    err = np.linalg.norm(pred25[exists] - gt.gt_body25_2d[exists], axis=1)
    s.intact += err.tolist()
    if halluc:
        s.intact_halluc += err.tolist()


def run(n_people: int, seed: int, noise: float, iou_scale: float, timing_people: int) -> dict:
    torch.set_num_threads(2)
    model = load_body_model()
    dataset = synth.make_dataset(n_people, seed=seed, model=model, noise_px=noise)
    people = [p.keypoints for p in dataset]
    cameras = [p.camera for p in dataset]
    scores = {m: Scores() for m in METHODS}

    t0 = time.perf_counter()
    ours = []
    for start in range(0, len(people), 64):
        ours += reconstruct(model, people[start:start + 64], cameras[start:start + 64])
    batched_s = (time.perf_counter() - t0) / len(people)
    trusting = fit_people(model, people, cameras, FitConfig(ignore_distal=False, residual_segments=False))

    singles = []
    for i in range(min(timing_people, len(people))):
        t = time.perf_counter()
        reconstruct(model, people[i:i + 1], cameras[i:i + 1])
        singles.append(time.perf_counter() - t)

    for gt, res, trust, cam in zip(dataset, ours, trusting, cameras):
        kinds = list(gt.residuals)
        k_index = [RESIDUAL_KINDS.index(k) for k in kinds]
        gt_end = gt.gt_residual_2d[k_index]
        gt_len = [gt.gt_residual_length_m[k] for k in kinds]
        halluc = bool(np.any(gt.hallucinated))
        small = small_camera(cam, iou_scale)
        gt_mask = mask_of(model, gt.params, [(k, gt.residuals[k]) for k in kinds], small)
        if isinstance(res, PersonFailure) or isinstance(trust, Exception):
            for m in METHODS:
                scores[m].failures += 1
            continue
        # ours
        s = scores[METHODS[0]]
        score_keypoints(s, res.body25_2d, gt, halluc)
        by_kind = {r.kind: r for r in res.residuals}
        for k, ge, gl in zip(kinds, gt_end, gt_len):
            r = by_kind[k]
            s.residual.append(float(np.linalg.norm(r.endpoint_2d - ge)))
            s.lam.append(abs(r.lam - gt.residuals[k]))
            s.lam_by_kind.setdefault(k, []).append(abs(r.lam - gt.residuals[k]))
            s.length_cm.append(abs(r.residual_length_m - gl) * 100)
            s.accepted.append(r.accepted)
        s.iou.append(mask_iou(mask_of(model, res.params(), [(r.kind, r.lam) for r in res.residuals if r.accepted],
                                      small), gt_mask))
        # baselines
        for name, fit, lam, cut in ((METHODS[1], trust, 0.5, False), (METHODS[2], res.fit, 0.5, True),
                                    (METHODS[3], res.fit, 1.0, True)):
            s = scores[name]
            score_keypoints(s, fit.body25_2d, gt, halluc)
            pts, lengths = endpoints_on_segment(fit.joints_3d, kinds, lam, cam)
            for p, ge, pl, gl, k in zip(pts, gt_end, lengths, gt_len, kinds):
                s.residual.append(float(np.linalg.norm(p - ge)))
                s.lam.append(abs(lam - gt.residuals[k]))
                s.length_cm.append(abs(pl - gl) * 100)
            cuts = [(k, lam) for k in kinds] if cut else []
            s.iou.append(mask_iou(mask_of(model, fit.params(), cuts, small), gt_mask))
    return {"scores": scores, "batched_s": batched_s, "single_median_s": statistics.median(singles),
            "n": len(dataset), "n_halluc": sum(bool(np.any(p.hallucinated)) for p in dataset),
            "n_coco": sum(p.keypoints.source_format != "openpose" for p in dataset),
            "n_residuals": sum(len(p.residuals) for p in dataset)}


def table(report: dict) -> str:
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    lines = ["| method | body MPJPE (px) | residual MPJPE (px) | intact MPJPE (px) | intact, hallucination cases "
             "(px) | λ MAE | residual length error (cm) | silhouette IoU | failures |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in report["scores"].items():
        lines.append(f"| {name} | {mean(s.intact + s.residual):.2f} | {mean(s.residual):.2f} | {mean(s.intact):.2f} "
                     f"| {mean(s.intact_halluc):.2f} | {mean(s.lam):.3f} | {mean(s.length_cm):.2f} "
                     f"| {mean(s.iou):.3f} | {s.failures} |")
    ours = report["scores"][METHODS[0]]
    lines.append("")
    lines.append(f"{report['n']} people ({report['n_coco']} given as LDPose-style COCO keypoints, "
                 f"{report['n_halluc']} with hallucinated distal keypoints), {report['n_residuals']} residual limbs; "
                 f"RAFO accepted {sum(ours.accepted)}/{len(ours.accepted)} (threshold 15 px).")
    per_kind = ", ".join(f"{k} {np.mean(v):.3f} (n={len(v)})" for k, v in sorted(ours.lam_by_kind.items()))
    lines.append(f"ResiHMR λ MAE per kind: {per_kind}.")
    lines.append(f"Fit + RAFO time per person: {report['single_median_s']:.3f} s median one at a time; "
                 f"{report['batched_s']:.3f} s per person in batches of 64 "
                 f"({1.0 / report['batched_s']:.1f} people/s).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=3.0)
    parser.add_argument("--iou-scale", type=float, default=0.25)
    parser.add_argument("--timing-people", type=int, default=20)
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    t0 = time.perf_counter()
    report = run(args.people, args.seed, args.noise, args.iou_scale, args.timing_people)
    text = table(report)
    print(text)
    if args.out:
        command = (f"python -m benchmarks.run --people {args.people} --seed {args.seed} --noise {args.noise} "
                   f"--iou-scale {args.iou_scale} --out {args.out}")
        Path(args.out).write_text(f"# Benchmark results\n\nMade by `{command}` on a 2-core CPU "
                                  f"({time.perf_counter() - t0:.0f} s in all).\n\n{text}\n")


if __name__ == "__main__":
    main()
