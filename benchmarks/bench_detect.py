"""Detector hints on synthetic renders of the embedded body with known amputations (reported, not asserted).

    python -m benchmarks.bench_detect [--people 60] [--seed 5]

Each person of the synthetic ground truth is rendered (flat-shaded, amputations cut and sealed) over a plain
background, MediaPipe detects the keypoints, and the limb-loss hints are compared with the true residual kinds:
precision and recall per kind (a hint of the right limb but the wrong level counts as a miss and a false alarm).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import numpy as np

from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.raster import shaded
from resihmr_blender.core.residuals import RESIDUAL_KINDS
from resihmr_blender.detect import DetectError, detect

from .synth import make_dataset


def render(model, person) -> np.ndarray:
    mesh = build_mesh(model, person.params, list(person.residuals.items()), pose=True)
    cam = person.camera
    background = np.tile(np.linspace(245, 205, cam.height)[:, None, None], (1, cam.width, 3))
    return shaded(mesh.posed_vertices, mesh.faces, cam, background=background, alpha=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    model = load_body_model()
    tp, fp, fn = Counter(), Counter(), Counter()
    times, missed_people = [], 0
    for person in make_dataset(args.people, seed=args.seed, model=model):
        image = render(model, person)
        start = time.perf_counter()
        try:
            found = detect(image)
        except DetectError:
            missed_people += 1
            continue
        times.append(time.perf_counter() - start)
        suggested = {s.kind for s in found.suggestions}
        truth = set(person.residuals)
        for kind in suggested & truth:
            tp[kind] += 1
        for kind in suggested - truth:
            fp[kind] += 1
        for kind in truth - suggested:
            fn[kind] += 1
    print("| kind | precision | recall | true / false hints / missed |")
    print("|---|---:|---:|---|")
    for kind in RESIDUAL_KINDS:
        p = tp[kind] / max(1, tp[kind] + fp[kind])
        r = tp[kind] / max(1, tp[kind] + fn[kind])
        print(f"| {kind} | {p:.2f} | {r:.2f} | {tp[kind]} / {fp[kind]} / {fn[kind]} |")
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    print(f"\nall kinds: precision {total_tp / max(1, total_tp + total_fp):.2f}, recall "
          f"{total_tp / max(1, total_tp + total_fn):.2f}; {missed_people} of {args.people} renders without a "
          f"detected person; detection {statistics.median(times) * 1000:.0f} ms median per image")


if __name__ == "__main__":
    main()
