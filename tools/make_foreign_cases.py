"""Generate the foreign-body benchmark cases once (benchmarks/foreign.py) and write them for run.py and the tests.

Maintainer-time only; needs Anny (Apache-2.0 code, CC0 MakeHuman-derived assets) beside torch==2.13.0. Anny's
declared dependency warp-lang is only for its warp skinning, which this does not use, so Anny is no extra of
the package; install it aside, e.g.

    pip install --no-deps --target /tmp/anny_pkgs anny==0.6.2 roma==1.8.0 safetensors==0.8.0
    PYTHONPATH=/tmp/anny_pkgs python tools/make_foreign_cases.py [--people 100] [--seed 151126] \
        [--out benchmarks/data/foreign_cases.npz]

(run from the repository root; pyyaml, pillow, requests and trimesh, which Anny also imports, are in the venv).

Loading Anny takes 5-95 s (it writes a cache into its package folder on first use); generating 100 people
took 24 s more here. The output is deterministic for a seed and Anny version.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import foreign  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--seed", type=int, default=foreign.HELD_OUT_SEED)
    parser.add_argument("--out", default=str(foreign.DEFAULT_CASES))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    arrays = foreign.generate(args.people, seed=args.seed)
    path = foreign.write_cases(args.out, arrays)
    print(f"wrote {path}: {args.people} people, {path.stat().st_size / 1e6:.2f} MB, "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
