"""The live λ: time of one re-cut of the live avatar while a λ slider is dragged (reported, never asserted).

    python -m benchmarks.bench_live_lambda [--steps 15] [--sweeps 1] [--kinds left_transtibial,...]

Builds the embedded body's avatar in Blender (bpy wheel, headless), then for each kind drags its λ back and forth
over [0.15, 0.85] calling `mesh.cut.recut` once per step: time per update (median, p95; wall, and this
process's CPU time, which other processes on the same cores inflate less), with the measurements recut returns
and without them (`measure=False`); then the same drag with a second limb cut first (that cut and its
measurements are memoised, so only the dragged limb is cut and measured again). Also: the first recut of an
avatar (reads the uncut mesh's arrays once), a fine drag (λ step 0.005: a step that crosses no vertex reuses the
cut) and where the time of one update goes (numpy cut, measurements, bmesh). Target: ≤ 100 ms per update for one
limb. On a busy machine, `OPENBLAS_NUM_THREADS=1` keeps numpy's BLAS threads from spinning against other
processes (the small matrix products here gain nothing from two threads).
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


def drag(lams: np.ndarray, update) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each update: the CPU time is this process's own, which other processes sharing
    the cores inflate much less than the wall time."""
    wall, cpu = [], []
    for lam in lams:
        start, start_cpu = time.perf_counter(), time.process_time()
        update(float(lam))
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def cells(times: list[float]) -> str:
    return f"{percentile(times, 50):.0f} | {percentile(times, 95):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=15, help="λ values per sweep")
    parser.add_argument("--sweeps", type=int, default=1, help="back-and-forth sweeps per kind")
    parser.add_argument("--kinds", default=",".join(RESIDUAL_KINDS))
    args = parser.parse_args()
    import bpy

    from resihmr_blender.mesh import cut as cut_module
    from resihmr_blender.mesh.build import UNCUT_PROP, build_avatar
    from resihmr_blender.mesh.cut import recut

    print(f"Command: `python -m benchmarks.bench_live_lambda {shlex.join(sys.argv[1:])}`".rstrip())
    print(f"Machine: {platform.platform()}; {platform.processor() or platform.machine()}; {os.cpu_count()} logical "
          f"cores; Python {platform.python_version()}, bpy {bpy.app.version_string}, numpy {np.__version__}, "
          f"torch threads {torch.get_num_threads()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
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

    print(f"Per update while dragging one limb's λ ({len(lams)} updates per kind and column), ms:\n")
    print("| kind | wall median | wall p95 | CPU median | CPU p95 | without measurements: wall median | wall p95 "
          "| CPU median | CPU p95 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    columns: list[list[float]] = [[], [], [], []]
    for kind in kinds:
        recut(obj, [(kind, 0.5)])  # warm: this kind's first cut
        with_measure = drag(lams, lambda lam: recut(obj, [(kind, lam)]))
        without = drag(lams, lambda lam: recut(obj, [(kind, lam)], measure=False))
        for column, times in zip(columns, (*with_measure, *without)):
            column += times
        print(f"| {kind} | {cells(with_measure[0])} | {cells(with_measure[1])} | {cells(without[0])} | "
              f"{cells(without[1])} |")
    print("| all kinds | " + " | ".join(cells(column) for column in columns) + " |")

    fine = np.arange(0.40, 0.60, 0.005)
    print(f"\nA fine drag, λ step 0.005 ({len(fine)} updates, the pace of a slow mouse drag): steps that cross no "
          "vertex reuse the cut, ms:\n")
    print("| kind | wall median | wall p95 | CPU median | CPU p95 |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("left_transtibial", "right_transhumeral"):
        recut(obj, [(kind, float(fine[0]))])
        wall, cpu = drag(fine[1:], lambda lam: recut(obj, [(kind, lam)]))
        print(f"| {kind} | {cells(wall)} | {cells(cpu)} |")

    print("\nTwo limbs cut, one dragged (the cut before it and the other limb's measurements are memoised), ms:\n")
    print("| dragged | also cut (first) | wall median | wall p95 | CPU median | CPU p95 |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, other in SECOND_LIMB.items():
        recut(obj, [(other, 0.5), (kind, 0.5)])
        wall, cpu = drag(lams, lambda lam: recut(obj, [(other, 0.5), (kind, lam)]))
        print(f"| {kind} | {other} at λ = 0.5 | {cells(wall)} | {cells(cpu)} |")

    # where the time goes, stage by stage (private functions, the order recut calls them in)
    print("\nOne update, stage by stage (median CPU ms over the drag):\n")
    print("| kind | read uncut arrays (cached) | numpy cut (core.stump) | measurements (core.measure) | "
          "bmesh rebuild + write + mask | total |")
    print("|---|---:|---:|---:|---:|---:|")
    uncut_mesh = obj[UNCUT_PROP]
    for kind in ("left_transtibial", "right_transfemoral", "right_transhumeral"):
        stages = []
        for lam in lams:
            t0 = time.process_time()
            uncut = cut_module._uncut_arrays(uncut_mesh)
            t1 = time.process_time()
            plan = cut_module._plan(obj, uncut, cut_module._check_cuts(obj, [(kind, float(lam))]))
            t2 = time.process_time()
            cut_module._MEASURED.clear()
            cut_module._measure(plan)
            t3 = time.process_time()
            cut_module._write(obj, uncut_mesh, uncut, plan)
            t4 = time.process_time()
            stages.append([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0])
        medians = [statistics.median(column) * 1000 for column in zip(*stages)]
        print(f"| {kind} | " + " | ".join(f"{m:.1f}" for m in medians) + " |")
    recut(obj, [])  # the stages above wrote meshes without updating the cut record
    print(f"\nLoad average {os.getloadavg()[0]:.1f} at the end (other processes share the 2 cores when > 0).")


if __name__ == "__main__":
    main()
