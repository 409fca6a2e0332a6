"""Keypoint sequences (issue 16), reported, never asserted: the benchmark's synthetic people (synth.py: shape,
camera, residual limbs with their λ) move through continuous motions seen by a fixed camera: walking (a gait
cycle, travelling), sitting down (standing -> seated on a chair, the trunk leaning forward on the way down) and
reaching (the arms reaching forward in turn, the trunk following); every frame is observed like one synthetic
photo (noise, dropped points, hallucinated distal points drawn afresh per frame, a few frames missing).

Reported per motion: λ MAE of the sequence fit (one λ per limb for the clip) against single-frame fits of the same
frames (the photo pipeline on each frame alone), the per-frame intact 2D error of both, jitter (mean acceleration
error of the 3D body joints, mm/frame², against the truth's) of both; per way of taking λ and the anchor (the
envelope or eq. 3-5 summed; one anchor per frame or one offset per limb in its bone frame) the λ MAE, the
endpoint's error against the true endpoint's projection over every fitted frame (px) and the stump vector
(upstream joint -> tip) against the truth's (mm); where the clip's λ error comes from (per limb the fitted
segment's length against the truth's, per clip the torso's yaw error and travel along the body's forward, λ MAE of
the clips with yaw within / off 20°); and the time (wall and CPU) of a 300-frame walk.
Targets (issue 16): λ MAE ≤ 0.5x single-frame, jitter ≤ 0.3x, 300 frames ≤ 30 s on 2 cores.

    python -m benchmarks.bench_sequence [--people 4] [--frames 60] [--motions walking,sitting,reaching] [--long 300]
        [--threads 1] [--seed 11]
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
from resihmr_blender.core.body_model import JOINT_INDEX, BodyModel, load_body_model
from resihmr_blender.core.fit import FitConfig
from resihmr_blender.core.rafo import RafoConfig
from resihmr_blender.core.residuals import RESIDUAL_KINDS, distal_mask, residual_by_name
from resihmr_blender.core.rotations import aa_to_matrix
from resihmr_blender.core.sequence import SequenceConfig, fit_sequence
from resihmr_blender.core.sequence_frames import Frame, Sequence
from resihmr_blender.core.sequence_rafo import bone_rotations, sequence_rafo
from resihmr_blender.core.settings import Settings

CYCLE_S = 1.1  # one gait cycle (two steps)
MAX_TRAVEL_M = 1.2  # the walk's path length, whatever the clip's duration (the camera is fixed)
REACH_CYCLE_S = 2.4  # right arm out and back, then the left
MOTIONS = ("walk", "sit", "reach")
ALIASES = {"walking": "walk", "sitting": "sit", "sitting down": "sit", "reaching": "reach"}


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


def sit_pose(s: float) -> np.ndarray:
    """body_pose (63,) sitting down, s = 0 standing .. 1 seated (poses.KEYFRAMES' "sitting"): hips and knees flex
    to 86°, the shins lean forward, the trunk leans forward most half-way down, the arms come forward."""
    lean = math.sin(math.pi * s)
    legs = {f"{side}_{joint}": [("x", value)] for side in ("left", "right")
            for joint, value in (("hip", -1.5 * s), ("knee", 0.05 + 1.45 * s), ("ankle", -0.25 * lean))}
    arms = _arms(left_forward=0.55 * s + 0.35 * lean, right_forward=0.55 * s + 0.35 * lean,
                 left_elbow=0.2 + 0.7 * s, right_elbow=0.2 + 0.7 * s)
    return keyframe(**arms, **legs, spine1=[("x", 0.05 * s + 0.45 * lean)], spine2=[("x", 0.15 * lean)])


def reach_pose(right: float, left: float) -> np.ndarray:
    """body_pose (63,) reaching forward, right/left = 0 (arm hanging) .. 1 (arm out at shoulder height, elbow
    straight, poses.KEYFRAMES' "reach_forward"); the trunk bends and turns towards the reaching arm."""
    arms = _arms(right_down=1.3 + 0.2 * right, right_forward=1.45 * right, right_elbow=0.6 - 0.45 * right,
                 left_down=1.3 + 0.2 * left, left_forward=1.45 * left, left_elbow=0.6 - 0.45 * left)
    knees = {f"{side}_knee": [("x", 0.05 + 0.1 * (right + left))] for side in ("left", "right")}
    return keyframe(**arms, **knees, spine1=[("x", 0.15 * (right + left))],
                    spine2=[("x", 0.1 * (right + left)), ("y", 0.15 * (left - right))])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def motion_path(motion: str, frames: int, fps: float, rng: np.random.Generator, orient: np.ndarray):
    """(body poses (F, 63), translation offsets (F, 3) in the camera frame) of one motion."""
    body = aa_to_matrix(orient)
    up, front = body @ np.array([0.0, 1.0, 0.0]), body @ np.array([0.0, 0.0, 1.0])
    t = np.arange(frames) / fps
    if motion == "walk":
        facing = front.copy()
        facing[1] = 0.0
        facing /= max(np.linalg.norm(facing), 1e-9)
        speed = min(1.0, MAX_TRAVEL_M / (frames / fps))
        phase = 2.0 * math.pi * t / CYCLE_S + rng.uniform(0, 2 * math.pi)
        offset = (t - t.mean())[:, None] * speed * facing[None]
        offset[:, 1] += 0.015 * np.cos(2 * phase)  # the pelvis bobs twice a cycle
        return np.stack([walk_pose(p) for p in phase]), offset
    if motion == "sit":  # the middle 70 % of the clip goes from standing to seated
        s = _smoothstep((np.arange(frames) / max(frames - 1, 1) - 0.15) / 0.7)
        # the pelvis goes down onto the chair and back over it
        return np.stack([sit_pose(v) for v in s]), -0.42 * s[:, None] * up[None] - 0.18 * s[:, None] * front[None]
    if motion == "reach":
        wave = np.sin(2.0 * math.pi * t / REACH_CYCLE_S + rng.uniform(0, 2 * math.pi))
        right, left = np.maximum(wave, 0.0) ** 2, np.maximum(-wave, 0.0) ** 2
        poses = np.stack([reach_pose(r, v) for r, v in zip(right, left)])
        return poses, 0.05 * (right + left)[:, None] * front[None]  # the weight shifts forward
    raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")


def make_motion(model: BodyModel, index: int, frames: int, motion: str = "walk", fps: float = 30.0, seed: int = 11,
                noise_px: float = 3.0, drop_share: float = 0.05, hallucination_share: float = 0.7,
                missing_share: float = 0.02) -> dict:
    """Synthetic person `index` (synth.make_dataset) doing `motion` for `frames` frames. Returns the Sequence (in
    memory) and the truth: betas, λ per kind, per frame joints_3d and BODY_25 2D."""
    person = make_dataset(index + 1, seed=seed, model=model, coco_share=0.0)[index]
    # the walk keeps its stream of random numbers (and so its clips) from before the other motions came
    rng = np.random.default_rng([seed, index, frames] + ([] if motion == "walk" else [MOTIONS.index(motion)]))
    camera, orient = person.camera, person.params["global_orient"]
    poses, offset = motion_path(motion, frames, fps, rng, orient)
    transl = person.params["transl"] + offset
    dt = model.dtype
    with torch.no_grad():
        out = model.joints_only(betas=torch.tensor(person.params["betas"], dtype=dt).expand(frames, -1),
                                global_orient=torch.tensor(orient, dtype=dt).expand(frames, -1),
                                body_pose=torch.tensor(poses, dtype=dt), transl=torch.tensor(transl, dtype=dt))
    joints, body25 = out.joints.double().numpy(), out.body25.double().numpy()
    gt2d = camera.project_np(body25)
    exists = ~distal_mask(list(person.residuals))
    seq_frames = []
    for f in range(frames):
        if rng.uniform() < missing_share:
            seq_frames.append(Frame(f, None, status="missing file", reason="dropped by the benchmark"))
            continue
        obs = _observe(np.random.default_rng([seed, index, frames, f]), camera, joints[f], gt2d[f], person.residuals,
                       noise_px, 0.0, hallucination_share, drop_share)
        # a point the motion took out of the picture is not seen (synth.py would pin it to the border)
        outside = (gt2d[f] < 0).any(1) | (gt2d[f, :, 0] > camera.width - 1) | (gt2d[f, :, 1] > camera.height - 1)
        obs["person"].body25[outside & exists] = 0.0
        seq_frames.append(Frame(f, f"frame_{f}", person=obs["person"]))
    seq = Sequence(folder=f"synthetic {motion} {index}", video=motion, frames=seq_frames, fps=fps,
                   image_size=(camera.width, camera.height), focal_length_px=float(camera.focal_length))
    return {"sequence": seq, "camera": camera, "residuals": person.residuals, "joints": joints, "gt2d": gt2d,
            "betas": person.params["betas"], "exists": exists, "motion": motion}


def make_walk(model: BodyModel, index: int, frames: int, **kw) -> dict:
    """make_motion's walk (the tests' clips)."""
    return make_motion(model, index, frames, "walk", **kw)


def accel_error_mm(pred: np.ndarray, truth: np.ndarray, numbers: np.ndarray) -> float:
    """Mean |a_pred − a_true| over the 22 body joints, on consecutive frame triplets (mm/frame²)."""
    ok = (np.diff(numbers)[:-1] == 1) & (np.diff(numbers)[1:] == 1)
    if not ok.any():
        return math.nan
    acc = lambda p: p[:-2] - 2 * p[1:-1] + p[2:]  # noqa: E731
    diff = acc(pred[:, :22]) - acc(truth[:, :22])
    return float(np.linalg.norm(diff[ok], axis=-1).mean() * 1000.0)


def single_frame_fits(model, walk, seq_fit_rows: list[int], ends: dict | None = None):
    """The photo pipeline on every fitted frame alone: (λ per frame per kind, joints (T, 55, 3), 2D (T, 25, 2),
    fitted). `ends`, when given, gets per kind the rows (row, endpoint 2D, stump vector 3D) of those fits."""
    from resihmr_blender.core.pipeline import PersonFailure, reconstruct

    seq = walk["sequence"]
    people = [seq.frames[i].person for i in seq_fit_rows]
    results = reconstruct(model, people, [walk["camera"]] * len(people))
    lams = {k: [] for k in walk["residuals"]}
    joints, body2d, ok = [], [], []
    for row, res in enumerate(results):
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
            if ends is not None:
                ends.setdefault(r.kind, []).append((row, r.endpoint_2d, r.endpoint_3d - r.upstream_3d))
    return lams, np.stack(joints), np.stack(body2d), np.array(ok)


def intact_2d_px(body2d: np.ndarray, walk, rows: list[int]) -> float:
    exists = walk["exists"]
    gt = walk["gt2d"][[walk["sequence"].frames[i].number for i in rows]]
    return float(np.nanmean(np.linalg.norm(body2d[:, exists] - gt[:, exists], axis=-1)))


def true_ends(walk, kind: str, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true endpoint's projection (F, 2) and stump vector, upstream joint -> tip (F, 3), at these frames."""
    limb, lam = residual_by_name(kind), walk["residuals"][kind]
    ja = walk["joints"][numbers, JOINT_INDEX[limb.anchor_joint]]
    jt = walk["joints"][numbers, JOINT_INDEX[limb.upstream_joint]]
    end = ja + lam * (jt - ja)
    return walk["camera"].project_np(end), end - jt


def torso_yaw_deg(joints: np.ndarray) -> np.ndarray:
    """(T,) the torso's turn about the camera's vertical, degrees (0: facing the camera), from (T, 55, 3) joints:
    its forward direction is (person's left) x (up), left from the shoulders and hips, up from pelvis to neck."""
    j = lambda name: joints[:, JOINT_INDEX[name]]  # noqa: E731
    left = j("left_shoulder") + j("left_hip") - j("right_shoulder") - j("right_hip")
    forward = np.cross(left, j("neck") - j("pelvis"))
    return np.degrees(np.arctan2(forward[:, 0], -forward[:, 2]))


def body_errors(walk, fit, truth: np.ndarray) -> dict:
    """Where the clip's λ error comes from: per limb the fitted segment's length against the truth's (relative,
    the median over frames; the envelope divides by it), per clip the torso's yaw error (deg, mean over frames:
    the depth a 2D torso cannot settle) and the pelvis' travel along the body's forward direction (m, fitted vs
    true: a walker goes forward, so a mirrored yaw shows as little travel along it)."""
    out = {"segment_length_rel_err": []}
    for r in fit.residuals:
        limb = residual_by_name(r.kind)
        a, u = JOINT_INDEX[limb.anchor_joint], JOINT_INDEX[limb.upstream_joint]
        fitted = np.median(np.linalg.norm(fit.joints_3d[:, u] - fit.joints_3d[:, a], axis=1))
        out["segment_length_rel_err"].append(float(fitted / np.linalg.norm(truth[:, u] - truth[:, a], axis=1).mean()
                                                   - 1.0))
    out["yaw_err_deg"] = float(abs(torso_yaw_deg(fit.joints_3d).mean() - torso_yaw_deg(truth).mean()))

    def travel(joints):
        yaw = np.radians(torso_yaw_deg(joints).mean())
        return float(np.dot(joints[-1, 0] - joints[0, 0], [math.sin(yaw), 0.0, -math.cos(yaw)]))

    out["travel_forward_m"] = [travel(fit.joints_3d), travel(truth)]
    return out


VARIANTS = {"envelope/frame": ("envelope", "frame"), "envelope/shared": ("envelope", "shared"),
            "rafo/frame": ("rafo", "frame"), "rafo/shared": ("rafo", "shared")}


def rafo_variants(model, walk, fit) -> dict:
    """The clip's RAFO again on the same fit, for each way of taking λ and the anchors: per variant and limb
    (λ error, endpoint vs the true endpoint's projection in px (mean over fitted frames), stump vector error
    in mm (mean), median endpoint reprojection error against the observed endpoints in px)."""
    seq = walk["sequence"]
    people = [seq.frames[i].person for i in fit.fitted]
    numbers = np.array(fit.frame_numbers())
    flags = np.isin(RESIDUAL_KINDS, seq.residual_kinds())
    rotations = bone_rotations(fit.global_orient, fit.body_pose, model.parents)
    out = {}
    for name, (lambda_from, anchor) in VARIANTS.items():
        residuals = sequence_rafo(people, fit.joints_3d, fit.camera, fit.errors_px, RafoConfig(),
                                  FitConfig().min_confidence, flags, [], numbers, lambda_from=lambda_from,
                                  rotations=rotations, anchor=anchor)
        rows = []
        for r in residuals:
            end2d, stump = true_ends(walk, r.kind, numbers)
            rows.append([abs(r.lam - walk["residuals"][r.kind]),
                         float(np.linalg.norm(r.endpoint_2d - end2d, axis=1).mean()),
                         float(np.linalg.norm(r.endpoint_3d - r.upstream_3d - stump, axis=1).mean() * 1000.0),
                         r.median_error_px])
        out[name] = rows
    return out


def single_ends(walk, ends: dict, numbers: np.ndarray) -> list[list[float]]:
    """Per limb of the single-frame fits: (endpoint vs truth px, stump vector error mm), means over frames."""
    rows = []
    for kind, entries in ends.items():
        end2d, stump = true_ends(walk, kind, numbers[[row for row, _, _ in entries]])
        rows.append([float(np.linalg.norm(np.stack([e for _, e, _ in entries]) - end2d, axis=1).mean()),
                     float(np.linalg.norm(np.stack([v for _, _, v in entries]) - stump, axis=1).mean() * 1000.0)])
    return rows


def evaluate(model, people: int, frames: int, seed: int, config: SequenceConfig | None = None,
             single: bool = True, motion: str = "walk") -> dict:
    rows_out = []
    for i in range(people):
        walk = make_motion(model, i, frames, motion, seed=seed)
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fit_sequence(model, walk["sequence"], config=config)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        numbers = np.array(fit.frame_numbers())
        truth = walk["joints"][numbers]
        row = {"motion": motion, "person": i, "frames": frames, "fitted": len(fit.fitted), "seconds": seconds,
               "cpu_seconds": cpu,
               "lambda_abs_err_seq": [abs(r.lam - walk["residuals"][r.kind]) for r in fit.residuals],
               "kinds": [r.kind for r in fit.residuals],
               "intact_2d_px_seq": intact_2d_px(fit.body25_2d, walk, fit.fitted),
               "accel_err_mm_seq": accel_error_mm(fit.joints_3d, truth, numbers),
               "variants": rafo_variants(model, walk, fit), **body_errors(walk, fit, truth)}
        if single:
            ends: dict = {}
            lams, joints, body2d, ok = single_frame_fits(model, walk, fit.fitted, ends)
            row["lambda_abs_err_single"] = [abs(lam - walk["residuals"][k]) for k, v in lams.items() for lam in v]
            row["intact_2d_px_single"] = intact_2d_px(body2d[ok], walk, [r for r, o in zip(fit.fitted, ok) if o])
            row["accel_err_mm_single"] = accel_error_mm(joints[ok], truth[ok], numbers[ok])
            row["ends_single"] = single_ends(walk, ends, numbers)
        rows_out.append(row)
        brief = {k: v for k, v in row.items() if k not in ("variants", "lambda_abs_err_single", "ends_single")}
        print(json.dumps({k: (np.round(v, 4).tolist() if k.startswith(("lambda", "intact", "accel", "sec", "cpu",
                                                                           "segment", "yaw", "travel"))
                              else v) for k, v in brief.items()}), flush=True)
    return {"rows": rows_out}


def summary(rows: list[dict]) -> dict:
    seq = [e for r in rows for e in r["lambda_abs_err_seq"]]
    out = {"people": len(rows), "limbs": len(seq), "lambda_mae_sequence": float(np.mean(seq)),
           "intact_2d_px_sequence": float(np.mean([r["intact_2d_px_seq"] for r in rows])),
           "accel_err_mm_sequence": float(np.nanmean([r["accel_err_mm_seq"] for r in rows])),
           "fit_seconds_mean": float(np.mean([r["seconds"] for r in rows])),
           "fit_cpu_seconds_mean": float(np.mean([r["cpu_seconds"] for r in rows])),
           "segment_length_abs_rel_err": float(np.mean([abs(e) for r in rows for e in r["segment_length_rel_err"]])),
           "yaw_err_deg_mean": float(np.mean([r["yaw_err_deg"] for r in rows]))}
    # the clips whose torso yaw is off by more than 20° (mirrored or pulled towards facing the camera) apart
    off = [r["yaw_err_deg"] > 20.0 for r in rows]
    for name, keep in (("yaw_within_20deg", False), ("yaw_off_20deg", True)):
        errors = [e for r, o in zip(rows, off) if o == keep for e in r["lambda_abs_err_seq"]]
        out[f"lambda_mae_sequence_{name}"] = [float(np.mean(errors)) if errors else None, sum(o == keep for o in off)]
    if "lambda_abs_err_single" in rows[0]:
        out.update(lambda_mae_single=float(np.mean([e for r in rows for e in r["lambda_abs_err_single"]])),
                   intact_2d_px_single=float(np.mean([r["intact_2d_px_single"] for r in rows])),
                   accel_err_mm_single=float(np.nanmean([r["accel_err_mm_single"] for r in rows])))
        out["lambda_ratio"] = out["lambda_mae_sequence"] / out["lambda_mae_single"]
        out["jitter_ratio"] = out["accel_err_mm_sequence"] / out["accel_err_mm_single"]
        ends = np.array([e for r in rows for e in r["ends_single"]]).reshape(-1, 2)
        out["single_frame_ends"] = {"endpoint_vs_truth_px": float(ends[:, 0].mean()),
                                    "stump_vector_mm": float(ends[:, 1].mean())}
    variants = {}
    for name in VARIANTS:
        values = np.array([v for r in rows for v in r["variants"][name]]).reshape(-1, 4)
        variants[name] = {"lambda_mae": float(values[:, 0].mean()), "endpoint_vs_truth_px": float(values[:, 1].mean()),
                          "stump_vector_mm": float(values[:, 2].mean()),
                          "endpoint_reproj_median_px": float(np.nanmean(values[:, 3]))}
    out["variants"] = variants
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=4, help="people per motion")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--motions", default=",".join(MOTIONS), help=f"some of {', '.join(MOTIONS)}")
    parser.add_argument("--long", type=int, default=300, help="frames of the timed walk (0: skip)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--anchor", choices=("frame", "shared"), default=SequenceConfig.anchor)
    parser.add_argument("--no-retilt", action="store_true", help="without SequenceConfig.retilt (the stage after λ)")
    parser.add_argument("--no-single", action="store_true", help="skip the single-frame fits")
    args = parser.parse_args()
    config = SequenceConfig(anchor=args.anchor, retilt=not args.no_retilt)
    torch.set_num_threads(args.threads)
    model = load_body_model()
    # fit_sequence takes one torch thread unless the settings ask for more
    settings = Settings(fit=FitConfig(num_threads=args.threads)) if args.threads != 1 else None
    report = {"motions": {}}
    motions = [ALIASES.get(m.strip(), m.strip()) for m in args.motions.split(",") if m.strip()]
    unknown = [m for m in motions if m not in MOTIONS]
    if unknown:
        parser.error(f"--motions: unknown {', '.join(unknown)}; known: {', '.join(MOTIONS)} (or {', '.join(ALIASES)})")
    for motion in motions:
        result = evaluate(model, args.people, args.frames, args.seed, config, not args.no_single, motion)
        report["motions"][motion] = summary(result["rows"])
    if args.long:
        walk = make_walk(model, 0, args.long, seed=args.seed + 1)
        load_before = os.getloadavg()
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fit_sequence(model, walk["sequence"], settings, config)
        report.update(long_frames=args.long, long_seconds=time.perf_counter() - t0,
                      long_cpu_seconds=time.process_time() - c0,
                      long_load_before_after=[round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                      long_stages_s={k: round(v, 2) for k, v in fit.timings_s.items()})
    report.update(machine={"cpus": os.cpu_count(), "threads": args.threads, "load": os.getloadavg()},
                  targets={"lambda_ratio": "<= 0.5", "jitter_ratio": "<= 0.3", "long_seconds": "<= 30"})
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
