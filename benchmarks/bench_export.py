"""Export time of one avatar per format (reported, never asserted; target <= 1 s per format).

    python -m benchmarks.bench_export [--repeats 5]

The embedded body in a photo pose with two residual limbs cut, exported as the command line does (rest pose,
the photo pose as a clip, 4 influences), static and with a 60-frame motion; median wall and CPU seconds.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from resihmr_blender.core.body_model import load_body_model

TARGET_S = 1.0


def walk(frames: int = 60) -> tuple[np.ndarray, np.ndarray, float]:
    t = np.linspace(0, 2 * math.pi, frames)
    poses = np.zeros((frames, 55, 3))
    poses[:, 0, 0] = math.pi / 2
    poses[:, 1, 0], poses[:, 2, 0] = -0.5 * np.sin(t), 0.5 * np.sin(t)
    poses[:, 4, 0], poses[:, 5, 0] = 0.6 * np.clip(np.sin(t), 0, None), 0.6 * np.clip(-np.sin(t), 0, None)
    trans = np.stack([np.zeros(frames), np.linspace(0, 1.5, frames), np.full(frames, 0.9)], axis=1)
    return poses, trans, 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import bpy

    from resihmr_blender.mesh.animation import apply_motion
    from resihmr_blender.mesh.build import build_avatar
    from resihmr_blender.mesh.cut import cut_residual
    from resihmr_blender.mesh.export import export_avatar

    bpy.ops.wm.read_homefile(use_empty=True)
    params = {"betas": np.linspace(-1, 1, 10), "global_orient": np.array([math.pi, 0.2, 0.0]),
              "body_pose": np.r_[np.zeros(45), 0.0, 0.0, -0.8, np.zeros(15)], "transl": np.array([0.0, 0.1, 3.0])}
    arm, obj = build_avatar(load_body_model(), params)
    cut_residual(obj, "left_transtibial", 0.4)
    cut_residual(obj, "right_transradial", 0.6)
    print(f"# export benchmark: CPython {platform.python_version()}, {os.cpu_count()} CPU(s), Blender "
          f"{bpy.app.version_string}, {len(obj.data.vertices)} vertices, median of {args.repeats}")
    print("| format | clips | wall (s) | CPU (s) | target |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for animated in (False, True):
            if animated:
                apply_motion(arm, *walk())
            for fmt in ("glb", "fbx"):
                wall, cpu = [], []
                for _ in range(args.repeats):
                    w0, c0 = time.perf_counter(), time.process_time()
                    export_avatar(arm, obj, Path(folder) / f"a.{fmt}", animation=animated, photo_params=params)
                    wall.append(time.perf_counter() - w0)
                    cpu.append(time.process_time() - c0)
                clips = "photo_pose + 60-frame motion" if animated else "photo_pose"
                print(f"| {fmt} | {clips} | {statistics.median(wall):.2f} | {statistics.median(cpu):.2f} | "
                      f"<= {TARGET_S:g} |")
    print(f"# load average {os.getloadavg()[0]:.1f} (wall includes waiting for cores other processes use)")


if __name__ == "__main__":
    main()
