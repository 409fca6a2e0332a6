"""The body fit alone on both benchmarks' people (no RAFO): wrong minima, intact error per input layout, which
fit hypothesis won, and time — the figures of issue 15 items 4 and 5.

    python -m benchmarks.fit_study [--people 128] [--seed 0] [--foreign-people 100] [--batch 64] [--threads 2]

A person counts as a wrong minimum when its fitted BODY_25 lies > 25 px from an input keypoint of confidence
≥ 0.5 on a joint it has (run.py's `far_from_input`, here on the fit before RAFO, which moves no existing joint).
"""
from __future__ import annotations

import argparse
import collections
import os
import time

import numpy as np

from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.fit import FitConfig, FitError, fit_people

from . import foreign, synth


def study(model, cases, cameras, batch: int, config: FitConfig) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    fits = []
    for s in range(0, len(cases), batch):
        fits += fit_people(model, [c.keypoints for c in cases[s:s + batch]], cameras[s:s + batch], config)
    seconds = (time.perf_counter() - t0) / max(1, len(cases))
    cpu = (time.process_time() - c0) / max(1, len(cases))
    far, wins, layout = [], collections.Counter(), collections.defaultdict(list)
    all_err, given_err = [], []
    for i, (case, fit) in enumerate(zip(cases, fits)):
        if isinstance(fit, FitError):
            continue
        exists = case.gt_body25_exists
        err = np.linalg.norm(fit.body25_2d - case.gt_body25_2d, axis=-1)
        all_err.append(err[exists])
        given_err.append(err[exists & (case.keypoints.body25[:, 2] > 0)])
        layout[case.keypoints.source_format].append(err[exists])
        confident = exists & (case.keypoints.body25[:, 2] >= 0.5)
        off = np.linalg.norm(fit.body25_2d[confident] - case.keypoints.body25[confident, :2], axis=-1)
        if (off > 25.0).any():
            far.append((i, float(off.max())))
        wins[fit.hypothesis] += 1
    mean = lambda parts: float(np.concatenate(parts).mean()) if parts else float("nan")  # noqa: E731
    return {"far": far, "intact": mean(all_err), "given": mean(given_err), "seconds": seconds, "cpu": cpu,
            "layout": {k: (mean(v), len(v)) for k, v in layout.items()}, "wins": dict(wins), "fits": fits}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--foreign-people", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the fit (0: the fit's own, one)")
    args = parser.parse_args(argv)
    model = load_body_model()
    config = FitConfig(num_threads=args.threads)  # fit_people sets the threads itself: a global setting is undone
    benches = []
    if args.people:
        data = synth.make_dataset(args.people, seed=args.seed, model=model, noise_px=3.0)
        benches.append(("synthetic", data, [p.camera for p in data]))
    if args.foreign_people:
        cases = foreign.load_cases()[:args.foreign_people]
        benches.append(("foreign", cases, [c.fit_camera for c in cases]))
    fit_people(model, [benches[0][1][0].keypoints], [benches[0][2][0]], config)  # warm-up
    for name, cases, cameras in benches:
        load = os.getloadavg()[0]
        r = study(model, cases, cameras, args.batch, config)
        print(f"{name}: {len(cases)} people; wrong minima {len(r['far'])} "
              f"{[(i, round(d)) for i, d in r['far']]}; intact {r['intact']:.2f} px, given {r['given']:.2f} px; "
              + "; ".join(f"{k} {v:.2f} px (n={n})" for k, (v, n) in sorted(r["layout"].items()))
              + f"; fit {r['seconds'] * 1000:.1f} ms/person batched, CPU {r['cpu'] * 1000:.1f} ms "
              f"(load {load:.1f}->{os.getloadavg()[0]:.1f}); "
              f"wins {r['wins']}")


if __name__ == "__main__":
    main()
