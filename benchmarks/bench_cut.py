"""Cut + seal time per limb (reported, never asserted): the numpy geometry alone, and the whole bmesh edit on
the live Blender object (geometry + rig transfer + residual mask).

    python -m benchmarks.bench_cut [--repeats 5]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.residuals import RESIDUAL_KINDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import bpy

    from resihmr_blender.mesh.build import build_avatar
    from resihmr_blender.mesh.cut import cut_residual

    model = load_body_model()
    params = {"betas": np.zeros(10), "global_orient": np.array([math.pi, 0, 0]), "body_pose": np.zeros(63),
              "transl": np.zeros(3)}
    print("| kind | numpy: rest mesh + cut + seal + measurements (ms) | bmesh cut on the live object (ms) |")
    print("|---|---:|---:|")
    for kind in RESIDUAL_KINDS:
        core, blender = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            build_mesh(model, params, [(kind, 0.5)], pose=False)
            core.append(time.perf_counter() - start)
            bpy.ops.wm.read_homefile(use_empty=True)
            _, obj = build_avatar(model, params)
            start = time.perf_counter()
            cut_residual(obj, kind, 0.5)
            blender.append(time.perf_counter() - start)
        print(f"| {kind} | {statistics.median(core) * 1000:.0f} | {statistics.median(blender) * 1000:.0f} |")


if __name__ == "__main__":
    main()
