"""Whole-pipeline batch timings (reported, never asserted): per image fit + RAFO + cut + GLB, and a batch of
synthetic images with N workers, with the peak memory of the largest worker.

    python -m benchmarks.bench_batch [--images 100] [--workers 2] [--formats json,glb]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resihmr_blender.core.keypoints import KeypointsFile
from resihmr_blender.core.keypoints_io import write_keypoints

from .synth import make_dataset


def write_inputs(folder: Path, n: int, seed: int) -> None:
    for i, person in enumerate(make_dataset(n, seed=seed)):
        kf = KeypointsFile(path=None, people=[person.keypoints], image_width=person.camera.width,
                           image_height=person.camera.height, focal_length_px=person.camera.focal_length)
        write_keypoints(folder / f"image_{i:04d}.json", kf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--formats", default="json,glb")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "in", Path(tmp) / "out"
        inputs.mkdir()
        write_inputs(inputs, args.images, args.seed)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "resihmr_blender", "run", str(inputs), "--out", str(out),
                               "--formats", args.formats, "--workers", str(args.workers),
                               "--threads", str(max(1, 2 // args.workers))],  # 2 cores: no oversubscription
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        per_image = [float(line.rsplit("(", 1)[1].split(" s)")[0]) for line in proc.stdout.splitlines()
                     if line.startswith("[") and line.endswith(" s)")]
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        written = len(list(out.glob("*/result.json")))
    per_image.sort()
    median_write = per_image[len(per_image) // 2] if per_image else float("nan")
    print(f"{args.images} images, --workers {args.workers}, --formats {args.formats}: {wall:.1f} s wall "
          f"({args.images / wall:.2f} images/s), {written} written, exit {proc.returncode}; "
          f"median cut + outputs per image {median_write:.2f} s (after the batched fit); "
          f"peak memory of the largest process {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
