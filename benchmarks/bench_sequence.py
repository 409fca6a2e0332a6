"""Keypoint sequences (issue 16), reported, never asserted: the benchmark's synthetic people (synth.py: shape,
camera, residual limbs with their λ) walk through a continuous gait cycle seen by a fixed camera; every frame is
observed like one synthetic photo (noise, dropped points, hallucinated distal points drawn afresh per frame).

Reported: λ MAE of the sequence fit (one λ per limb for the clip) against single-frame fits of the same frames
(the photo pipeline on each frame alone), the per-frame intact 2D error of both, jitter (mean acceleration error
of the 3D body joints, mm/frame², against the truth's) of both, and the time for a 300-frame clip.
Targets (issue 16): λ MAE ≤ 0.5x single-frame, jitter ≤ 0.3x, 300 frames ≤ 30 s on 2 cores.

    python -m benchmarks.bench_sequence [--people 4] [--frames 60] [--long 300] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch

from benchmarks.poses import _arms, keyframe
from benchmarks.synth import _observe, make_dataset
from resihmr_blender.core.body_model import BodyModel, load_body_model
from resihmr_blender.core.residuals import distal_mask
from resihmr_blender.core.rotations import aa_to_matrix
from resihmr_blender.core.sequence import Frame, Sequence, SequenceConfig, fit_sequence

CYCLE_S = 1.1  # one gait cycle (two steps)
MAX_TRAVEL_M = 1.2  # the walk's path length, whatever the clip's duration (the camera is fixed)


def walk_pose(phase: float) -> np.ndarray:
    """body_pose (63,) at gait phase `phase` (radians; the right leg's cycle, the left half a cycle later):
    hips swing from 10° extension to 30° flexion, knees flex to ~55° in swing, arms swing opposite."""
    legs = {}
    for side, shift in (("right", 0.0), ("left", math.pi)):
        p = phase + shift
        hip = 0.17 + 0.35 * math.sin(p)  # flexion (thigh forwards) is x- on the hip
        knee = 0.08 + 0.9 * max(0.0, math.sin(p + 0.9)) ** 3  # peak in swing, just before the hip's peak
        legs[f"{side}_hip"] = [("x", -hip)]
        legs[f"{side}_knee"] = [("x", knee)]
        legs[f"{side}_ankle"] = [("x", 0.1 * math.sin(p - 0.5))]
    swing = 0.3 * math.sin(phase)  # the right arm swings forwards while the left leg does
    arms = _arms(right_forward=-swing, left_forward=swing, right_elbow=0.3 + 0.15 * max(0.0, -swing),
                 left_elbow=0.3 + 0.15 * max(0.0, swing))
    return keyframe(**arms, **legs, spine2=[("y", 0.05 * math.sin(phase))])


def make_walk(model: BodyModel, index: int, frames: int, fps: float = 30.0, seed: int = 11, noise_px: float = 3.0,
              drop_share: float = 0.05, hallucination_share: float = 0.7, missing_share: float = 0.02) -> dict:
    """Synthetic person `index` (synth.make_dataset) walking for `frames` frames towards where their body faces.
    Returns the Sequence (in memory) and the truth: betas, λ per kind, per frame joints_3d and BODY_25 2D."""
    person = make_dataset(index + 1, seed=seed, model=model, coco_share=0.0)[index]
    rng = np.random.default_rng([seed, index, frames])
    camera, orient = person.camera, person.params["global_orient"]
    facing = aa_to_matrix(orient) @ np.array([0.0, 0.0, 1.0])  # the body's front in the camera frame
    facing[1] = 0.0
    facing /= max(np.linalg.norm(facing), 1e-9)
    speed = min(1.0, MAX_TRAVEL_M / (frames / fps))
    t = np.arange(frames) / fps
    phase = 2.0 * math.pi * t / CYCLE_S + rng.uniform(0, 2 * math.pi)
    poses = np.stack([walk_pose(p) for p in phase])
    transl = person.params["transl"] + (t - t.mean())[:, None] * speed * facing[None]
    transl[:, 1] += 0.015 * np.cos(2 * phase)  # the pelvis bobs twice a cycle
    dt = model.dtype
    with torch.no_grad():
        out = model.joints_only(betas=torch.tensor(person.params["betas"], dtype=dt).expand(frames, -1),
                                global_orient=torch.tensor(orient, dtype=dt).expand(frames, -1),
                                body_pose=torch.tensor(poses, dtype=dt), transl=torch.tensor(transl, dtype=dt))
    joints, body25 = out.joints.double().numpy(), out.body25.double().numpy()
    gt2d = camera.project_np(body25)
    seq_frames = []
    for f in range(frames):
        if rng.uniform() < missing_share:
            seq_frames.append(Frame(f, None, status="missing file", reason="dropped by the benchmark"))
            continue
        obs = _observe(np.random.default_rng([seed, index, frames, f]), camera, joints[f], gt2d[f], person.residuals,
                       noise_px, 0.0, hallucination_share, drop_share)
        seq_frames.append(Frame(f, f"frame_{f}", person=obs["person"]))
    seq = Sequence(folder=f"synthetic walk {index}", video="walk", frames=seq_frames, fps=fps,
                   image_size=(camera.width, camera.height), focal_length_px=float(camera.focal_length))
    return {"sequence": seq, "camera": camera, "residuals": person.residuals, "joints": joints, "gt2d": gt2d,
            "betas": person.params["betas"], "exists": ~distal_mask(list(person.residuals))}


def accel_error_mm(pred: np.ndarray, truth: np.ndarray, numbers: np.ndarray) -> float:
    """Mean |a_pred − a_true| over the 22 body joints, on consecutive frame triplets (mm/frame²)."""
    ok = (np.diff(numbers)[:-1] == 1) & (np.diff(numbers)[1:] == 1)
    if not ok.any():
        return math.nan
    acc = lambda p: p[:-2] - 2 * p[1:-1] + p[2:]  # noqa: E731
    diff = acc(pred[:, :22]) - acc(truth[:, :22])
    return float(np.linalg.norm(diff[ok], axis=-1).mean() * 1000.0)


def single_frame_fits(model, walk, seq_fit_rows: list[int]):
    """The photo pipeline on every fitted frame alone: (λ per frame per kind, joints (T, 55, 3), 2D (T, 25, 2))."""
    from resihmr_blender.core.pipeline import PersonFailure, reconstruct

    seq = walk["sequence"]
    people = [seq.frames[i].person for i in seq_fit_rows]
    results = reconstruct(model, people, [walk["camera"]] * len(people))
    lams = {k: [] for k in walk["residuals"]}
    joints, body2d, ok = [], [], []
    for res in results:
        if isinstance(res, PersonFailure):
            ok.append(False)
            joints.append(np.full((55, 3), np.nan))
            body2d.append(np.full((25, 2), np.nan))
            continue
        ok.append(True)
        joints.append(res.joints_3d)
        body2d.append(res.body25_2d)
        for r in res.residuals:
            lams[r.kind].append(r.lam)
    return lams, np.stack(joints), np.stack(body2d), np.array(ok)


def intact_2d_px(body2d: np.ndarray, walk, rows: list[int]) -> float:
    exists = walk["exists"]
    gt = walk["gt2d"][[walk["sequence"].frames[i].number for i in rows]]
    return float(np.nanmean(np.linalg.norm(body2d[:, exists] - gt[:, exists], axis=-1)))


def evaluate(model, people: int, frames: int, seed: int, config: SequenceConfig | None = None,
             single: bool = True) -> dict:
    rows_out = []
    for i in range(people):
        walk = make_walk(model, i, frames, seed=seed)
        t0 = time.perf_counter()
        fit = fit_sequence(model, walk["sequence"], config=config)
        seconds = time.perf_counter() - t0
        numbers = np.array(fit.frame_numbers())
        truth = walk["joints"][numbers]
        row = {"person": i, "frames": frames, "fitted": len(fit.fitted), "seconds": seconds,
               "lambda_abs_err_seq": [abs(r.lam - walk["residuals"][r.kind]) for r in fit.residuals],
               "kinds": [r.kind for r in fit.residuals],
               "intact_2d_px_seq": intact_2d_px(fit.body25_2d, walk, fit.fitted),
               "accel_err_mm_seq": accel_error_mm(fit.joints_3d, truth, numbers)}
        if single:
            lams, joints, body2d, ok = single_frame_fits(model, walk, fit.fitted)
            row["lambda_abs_err_single"] = [abs(lam - walk["residuals"][k]) for k, v in lams.items() for lam in v]
            row["intact_2d_px_single"] = intact_2d_px(body2d[ok], walk, [r for r, o in zip(fit.fitted, ok) if o])
            row["accel_err_mm_single"] = accel_error_mm(joints[ok], truth[ok], numbers[ok])
        rows_out.append(row)
        print(json.dumps({k: (np.round(v, 4).tolist() if k.startswith(("lambda", "intact", "accel", "sec")) else v)
                          for k, v in row.items()}), flush=True)
    return {"rows": rows_out}


def summary(rows: list[dict]) -> dict:
    seq = [e for r in rows for e in r["lambda_abs_err_seq"]]
    out = {"lambda_mae_sequence": float(np.mean(seq)),
           "intact_2d_px_sequence": float(np.mean([r["intact_2d_px_seq"] for r in rows])),
           "accel_err_mm_sequence": float(np.nanmean([r["accel_err_mm_seq"] for r in rows]))}
    if "lambda_abs_err_single" in rows[0]:
        out.update(lambda_mae_single=float(np.mean([e for r in rows for e in r["lambda_abs_err_single"]])),
                   intact_2d_px_single=float(np.mean([r["intact_2d_px_single"] for r in rows])),
                   accel_err_mm_single=float(np.nanmean([r["accel_err_mm_single"] for r in rows])))
        out["lambda_ratio"] = out["lambda_mae_sequence"] / out["lambda_mae_single"]
        out["jitter_ratio"] = out["accel_err_mm_sequence"] / out["accel_err_mm_single"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--long", type=int, default=300, help="frames of the timed clip (0: skip)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_body_model()
    result = evaluate(model, args.people, args.frames, args.seed)
    report = summary(result["rows"])
    if args.long:
        walk = make_walk(model, 0, args.long, seed=args.seed + 1)
        t0 = time.perf_counter()
        fit = fit_sequence(model, walk["sequence"])
        report.update(long_frames=args.long, long_seconds=time.perf_counter() - t0,
                      long_stages_s={k: round(v, 2) for k, v in fit.timings_s.items()})
    report.update(machine={"cpus": os.cpu_count(), "threads": args.threads, "load": os.getloadavg()[0]},
                  targets={"lambda_ratio": "<= 0.5", "jitter_ratio": "<= 0.3", "long_seconds": "<= 30"})
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
