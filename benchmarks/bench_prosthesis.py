"""Adding a prosthesis per limb (reported; the target is <= 0.3 s per limb): the numpy fit alone
(core/prosthesis.fit_prosthesis on the cut rest mesh) and the whole add on the live Blender avatar
(mesh/prosthesis.add_prosthesis: read the cut plan, fit, write the mesh, materials and vertex groups), without
and with a pylon cover.

    python -m benchmarks.bench_prosthesis [--repeats 5]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np
import torch

from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.prosthesis import fit_prosthesis
from resihmr_blender.core.residuals import RESIDUAL_KINDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import bpy

    from resihmr_blender.mesh.build import build_avatar
    from resihmr_blender.mesh.cut import cut_residual
    from resihmr_blender.mesh.prosthesis import add_prosthesis, remove_prosthesis

    model = load_body_model()
    params = {"betas": np.zeros(10), "global_orient": np.array([math.pi, 0, 0]), "body_pose": np.zeros(63),
              "transl": np.zeros(3)}
    with torch.no_grad():
        rest = model.forward(betas=torch.zeros(1, 10, dtype=model.dtype))
    joints, intact = rest.rest_joints[0].double().numpy(), rest.vertices[0].double().numpy()
    weights = model.weights.double().numpy()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, medians of {args.repeats}")
    print("| kind | numpy fit (ms) | add on the live avatar (ms) | with a pylon cover (ms) | parts |")
    print("|---|---:|---:|---:|---|")
    worst = 0.0
    for kind in RESIDUAL_KINDS:
        mesh = build_mesh(model, params, [(kind, 0.5)], pose=False)
        bpy.ops.wm.read_homefile(use_empty=True)
        _, obj = build_avatar(model, params)
        cut_residual(obj, kind, 0.5)
        core, blender, covered = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            device = fit_prosthesis(kind, mesh.rest_vertices, mesh.faces, mesh.weights, joints, intact, weights)
            core.append(time.perf_counter() - start)
            remove_prosthesis(obj, kind)
            start = time.perf_counter()
            add_prosthesis(obj, kind)
            blender.append(time.perf_counter() - start)
            remove_prosthesis(obj, kind)
            start = time.perf_counter()
            add_prosthesis(obj, kind, cover=True)
            covered.append(time.perf_counter() - start)
        worst = max(worst, statistics.median(blender), statistics.median(covered))
        print(f"| {kind} | {statistics.median(core) * 1000:.0f} | {statistics.median(blender) * 1000:.0f} | "
              f"{statistics.median(covered) * 1000:.0f} | {', '.join(p.name for p in device.parts)} |")
    print(f"slowest limb: {worst:.3f} s ({'within' if worst <= 0.3 else 'OVER'} the 0.3 s target)")


if __name__ == "__main__":
    main()
