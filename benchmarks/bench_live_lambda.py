"""The live λ: time of one re-cut of the live avatar while a λ slider is dragged (reported, never asserted).

    python -m benchmarks.bench_live_lambda [--steps 15] [--sweeps 2] [--kinds left_transtibial,...]

Builds the embedded body's avatar in Blender (bpy wheel, headless), then for each kind drags its λ back and forth
over [0.15, 0.85] calling `mesh.cut.recut` once per step: wall time per update (median, p95), with the
measurements recut returns and without them (`measure=False`); then the same drag with a second limb cut (its
measurements are memoised, so only the dragged limb is measured again). Also: the first recut of an avatar
(reads the uncut mesh's arrays once) and where the time of one update goes (numpy cut, measurements, bmesh).
Target: ≤ 100 ms per update for one limb.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np
import torch

from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.residuals import RESIDUAL_KINDS

SECOND_LIMB = {"left_transtibial": "right_transhumeral", "right_transhumeral": "left_transtibial"}


def percentile(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000.0, q))


def drag(lams: np.ndarray, update) -> list[float]:
    times = []
    for lam in lams:
        start = time.perf_counter()
        update(float(lam))
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=15, help="λ values per sweep")
    parser.add_argument("--sweeps", type=int, default=2, help="back-and-forth sweeps per kind")
    parser.add_argument("--kinds", default=",".join(RESIDUAL_KINDS))
    args = parser.parse_args()
    import bpy

    from resihmr_blender.mesh import cut as cut_module
    from resihmr_blender.mesh.build import UNCUT_PROP, build_avatar
    from resihmr_blender.mesh.cut import recut

    print(f"Command: `python -m benchmarks.bench_live_lambda {shlex.join(sys.argv[1:])}`".rstrip())
    print(f"Machine: {platform.platform()}; {platform.processor() or platform.machine()}; {os.cpu_count()} logical "
          f"cores; Python {platform.python_version()}, bpy {bpy.app.version_string}, numpy {np.__version__}, "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} at the start")
    model = load_body_model()
    params = {"betas": np.zeros(10), "global_orient": np.array([math.pi, 0, 0]), "body_pose": np.zeros(63),
              "transl": np.zeros(3)}
    one_way = np.linspace(0.15, 0.85, args.steps)
    lams = np.concatenate([one_way, one_way[::-1]] * args.sweeps)
    kinds = args.kinds.split(",")

    bpy.ops.wm.read_homefile(use_empty=True)
    _, obj = build_avatar(model, params)
    start = time.perf_counter()
    recut(obj, [(kinds[0], 0.5)])
    print(f"\nFirst recut of a new avatar (reads the uncut mesh's arrays once): "
          f"{(time.perf_counter() - start) * 1000:.0f} ms; {len(obj[UNCUT_PROP].vertices)} vertices uncut\n")

    print(f"Per update while dragging one limb's λ ({len(lams)} updates per kind, wall time):\n")
    print("| kind | median (ms) | p95 (ms) | without measurements: median (ms) | p95 (ms) |")
    print("|---|---:|---:|---:|---:|")
    everything, everything_fast = [], []
    for kind in kinds:
        recut(obj, [(kind, 0.5)])  # warm: this kind's first cut
        with_measure = drag(lams, lambda lam: recut(obj, [(kind, lam)]))
        without = drag(lams, lambda lam: recut(obj, [(kind, lam)], measure=False))
        everything += with_measure
        everything_fast += without
        print(f"| {kind} | {percentile(with_measure, 50):.0f} | {percentile(with_measure, 95):.0f} | "
              f"{percentile(without, 50):.0f} | {percentile(without, 95):.0f} |")
    print(f"| all kinds | {percentile(everything, 50):.0f} | {percentile(everything, 95):.0f} | "
          f"{percentile(everything_fast, 50):.0f} | {percentile(everything_fast, 95):.0f} |")

    print("\nTwo limbs cut, one dragged (the other one's measurements come from the memo):\n")
    print("| dragged | also cut | median (ms) | p95 (ms) |")
    print("|---|---|---:|---:|")
    for kind, other in SECOND_LIMB.items():
        recut(obj, [(other, 0.5), (kind, 0.5)])
        times = drag(lams, lambda lam: recut(obj, [(other, 0.5), (kind, lam)]))
        print(f"| {kind} | {other} at λ = 0.5 | {percentile(times, 50):.0f} | {percentile(times, 95):.0f} |")

    # where the time goes, stage by stage (private functions, the order recut calls them in)
    print("\nOne update, stage by stage (median over the drag, ms):\n")
    print("| kind | read uncut arrays (cached) | numpy cut (core.stump) | measurements (core.measure) | "
          "bmesh rebuild + write + mask | total |")
    print("|---|---:|---:|---:|---:|---:|")
    uncut_mesh = obj[UNCUT_PROP]
    for kind in ("left_transtibial", "right_transfemoral", "right_transhumeral"):
        stages = []
        for lam in lams:
            t0 = time.perf_counter()
            uncut = cut_module._uncut_arrays(uncut_mesh)
            t1 = time.perf_counter()
            plan = cut_module._plan(obj, uncut, cut_module._check_cuts(obj, [(kind, float(lam))]))
            t2 = time.perf_counter()
            cut_module._MEASURED.clear()
            cut_module._measure(plan)
            t3 = time.perf_counter()
            cut_module._write(obj, uncut_mesh, uncut, plan)
            t4 = time.perf_counter()
            stages.append([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0])
        medians = [statistics.median(column) * 1000 for column in zip(*stages)]
        print(f"| {kind} | " + " | ".join(f"{m:.1f}" for m in medians) + " |")
    print(f"\nLoad average {os.getloadavg()[0]:.1f} at the end (other processes share the 2 cores when > 0).")


if __name__ == "__main__":
    main()
