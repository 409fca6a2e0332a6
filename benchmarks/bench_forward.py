"""Forward timings of the body model (reported, never asserted in tests).

    python -m benchmarks.bench_forward [--repeats 30] [--threads 2]

Median wall time of: the full mesh forward and the joints-only path, at batch 1 and 64, with and without the
backward pass the fitting loops need; plus the size of the embedded default body.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from resihmr_blender.core.body_model import DEFAULT_MODEL_PATH, load_body_model


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_body_model()
    print(f"embedded default body: {DEFAULT_MODEL_PATH.name}, {DEFAULT_MODEL_PATH.stat().st_size / 1e6:.2f} MB, "
          f"{model.num_vertices} vertices, {len(model.faces)} faces; torch threads {torch.get_num_threads()}")
    print("| path | batch | forward (ms, median) | forward + backward (ms, median) |")
    print("|---|---:|---:|---:|")
    gen = torch.Generator().manual_seed(0)
    for batch in (1, 64):
        params = dict(betas=torch.randn(batch, 10, generator=gen), global_orient=torch.randn(batch, 3, generator=gen),
                      body_pose=0.3 * torch.randn(batch, 63, generator=gen),
                      transl=torch.randn(batch, 3, generator=gen))
        grad_params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        paths = {"full mesh": lambda p: model.forward(**p).vertices,
                 "joints-only (55 joints + BODY_25)": lambda p: model.joints_only(**p).body25,
                 "joints-only, body (fitting loop)": lambda p: model.joints_only(**p, body_only=True).body25}
        for name, run in paths.items():
            with torch.no_grad():
                fwd = median_ms(lambda: run(params), args.repeats)
            both = median_ms(lambda: run(grad_params).sum().backward(), args.repeats)
            print(f"| {name} | {batch} | {fwd:.2f} | {both:.2f} |")


if __name__ == "__main__":
    main()
