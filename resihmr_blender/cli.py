"""Batch entry point: `python -m resihmr_blender ARGS`, or under real Blender
`blender --background --python resihmr_blender/cli.py -- ARGS` (this file then runs as a script and finds its
package beside it).

    run INPUT... --out DIR [--model FILE] [--formats json] [--focal PX] [--image-size WxH] [--batch-size N]
    demo [--out DIR]

INPUT is a keypoints file (DESIGN §3.4) or a folder of them. Each input writes DIR/<name>/result.json, where
<name> is the file's stem, or its folder's name when the stem is `keypoints`. A bad file is reported and the
others still run; the exit status is non-zero when any file or person failed. Inputs are never overwritten.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script (real Blender's --python)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resihmr_blender.cli import main as _main

    _argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    sys.exit(_main(_argv))

AVAILABLE_FORMATS = ("json", "overlay", "mask", "blend", "glb", "fbx")  # outputs.FORMATS
EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples"


@dataclass
class Job:
    source: Path
    name: str
    out_dir: Path


def output_name(path: Path) -> str:
    return path.parent.name if path.stem == "keypoints" else path.stem


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def collect_inputs(inputs: list[str], out_root: Path, images: bool = False) -> tuple[list[Job], list[str]]:
    """Expand folders, name outputs, refuse inputs that sit where outputs would go."""
    files, problems = [], []
    suffixes = (".json", *IMAGE_SUFFIXES) if images else (".json",)
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file()
                           if out_root.resolve() not in p.resolve().parents and p.name != "ground_truth.json")
            if not found:
                problems.append(f"{path}: folder holds no .json keypoint files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    jobs, used = [], set()
    for path in files:
        name = output_name(path)
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        jobs.append(Job(path, name, out_root / name))
    return jobs, problems


def parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"--image-size must look like 1080x1920, got {text!r}") from None
    return w, h


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resihmr", description="Residual-limb aware human mesh recovery.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit, RAFO and write results for keypoint files")
    run.add_argument("inputs", nargs="+", help="keypoints files or folders of them")
    run.add_argument("--out", required=True, help="output folder (one sub-folder per input)")
    run.add_argument("--model", default=None, help="SMPL-X .npz (default: the embedded body)")
    run.add_argument("--formats", default="json,overlay,mask",
                     help=f"comma list of {', '.join(AVAILABLE_FORMATS)} (blend/glb/fbx need bpy)")
    run.add_argument("--focal", type=positive_float, default=None, help="focal length in pixels (overrides the file)")
    run.add_argument("--image-size", type=parse_size, default=None, help="WIDTHxHEIGHT when the file has none")
    run.add_argument("--threshold", type=non_negative_float, default=15.0, help="RAFO acceptance threshold in pixels")
    run.add_argument("--batch-size", type=positive_int, default=64, help="people fitted together")
    run.add_argument("--threads", type=int, default=0, help="torch threads (0 = automatic)")
    run.add_argument("--skip-existing", action="store_true", help="skip inputs whose result.json exists")
    run.add_argument("--workers", type=positive_int, default=1,
                     help="processes, each with its own bpy/torch (default 1)")
    run.add_argument("--detect", action="store_true",
                     help="inputs may be photos: detect keypoints (optional extra [detect]) and write keypoints.json")
    run.add_argument("--accept-suggestions", action="store_true",
                     help="with --detect: treat the detector's limb-loss suggestions as residual limbs")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="ray: one task per input on a Ray cluster (pip install .[ray]); see --address")
    run.add_argument("--address", default=None,
                     help="Ray cluster address (default: the running local instance, or start one)")
    demo = sub.add_parser("demo", help="run the bundled example end to end")
    demo.add_argument("--out", default="out/demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(Path(args.out))
    return run_command(args)


def run_command(args) -> int:
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats:
        print(f"error: --formats is empty; give a comma list of {', '.join(AVAILABLE_FORMATS)}", file=sys.stderr)
        return 2
    unknown = [f for f in formats if f not in AVAILABLE_FORMATS]
    if unknown:
        print(f"error: --formats {','.join(unknown)} not available (available: {', '.join(AVAILABLE_FORMATS)})",
              file=sys.stderr)
        return 2
    from .core.body_model import BodyModelError, load_body_model

    try:
        load_body_model(args.model)  # fail early, once, with the file contract's message
    except BodyModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    jobs, failures = collect_inputs(args.inputs, Path(args.out), images=args.detect)
    for problem in failures:
        print(f"error: {problem}", file=sys.stderr)
    workers = max(1, min(args.workers, len(jobs)))
    t0 = time.perf_counter()
    if args.executor == "ray":
        outcomes = run_on_ray(jobs, args)
        workers = len(jobs)
    elif workers == 1:
        outcomes = [process_jobs(jobs, args)]
    else:
        # one process per worker (bpy and torch imported once each); contiguous chunks keep names stable
        import concurrent.futures
        import multiprocessing

        chunks = [jobs[i::workers] for i in range(workers)]
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            outcomes = list(pool.map(process_jobs, chunks, [args] * workers))
    done = sum(o[0] for o in outcomes)
    failures += [f for o in outcomes for f in o[1]]
    person_failures = sum(o[2] for o in outcomes)
    print(f"done: {done} file(s) written, {len(failures)} file(s) failed, {person_failures} person(s) failed "
          f"({time.perf_counter() - t0:.1f} s, {workers} worker(s))")
    for problem in failures:
        print(f"  failed: {problem}")
    return 1 if failures or person_failures else 0


def run_on_ray(jobs: list[Job], args) -> list[tuple[int, list[str], int]]:
    """One Ray task per input, each writing its own output folder. Every node needs this package installed."""
    try:
        import ray
    except ImportError:
        raise SystemExit("error: --executor ray needs Ray: pip install 'resihmr-blender[ray]'") from None
    ray.init(address=args.address, ignore_reinit_error=True, include_dashboard=False)
    task = ray.remote(num_cpus=1)(process_jobs)
    local = argparse.Namespace(**{**vars(args), "executor": "local", "workers": 1})
    return ray.get([task.remote([job], local) for job in jobs])


def detect_to_file(job: Job, accept: bool):
    """Detect a photo's keypoints, write DIR/<name>/keypoints.json (suggestions kept apart), return the file."""
    import json

    from .core.atomic import write_text_atomic
    from .core.keypoints import KeypointsFile
    from .core.keypoints_io import read_keypoints, write_keypoints
    from .core.residuals import RESIDUAL_KINDS
    from .detect import detect, read_image

    found = detect(read_image(job.source), source=str(job.source))
    if found.others:
        print(f"    {job.name}: {found.others} other person(s) in the image; fitting the largest one")
    if accept:
        for s in found.suggestions:
            found.person.residual[RESIDUAL_KINDS.index(s.kind)] = [*s.endpoint, s.score]
    kfile = KeypointsFile(path=None, people=[found.person], image_path=str(job.source.resolve()),
                          image_width=found.width, image_height=found.height)
    target = job.out_dir / "keypoints.json"
    job.out_dir.mkdir(parents=True, exist_ok=True)
    write_keypoints(target, kfile)
    document = json.loads(target.read_text())
    document["resihmr_other_people"] = found.others
    document["resihmr_suggestions"] = [{"kind": s.kind, "endpoint": list(s.endpoint), "score": round(s.score, 3),
                                        "reasons": s.reasons, "applied": accept} for s in found.suggestions]
    write_text_atomic(target, json.dumps(document, indent=1) + "\n")
    for s in found.suggestions:
        print(f"    suggestion for {job.name}: {s.kind} at ({s.endpoint[0]:.0f}, {s.endpoint[1]:.0f}) px, "
              f"score {s.score:.2f} ({'applied' if accept else 'not applied: --accept-suggestions'})")
    return read_keypoints(target)


def settings_from_args(args):
    """The command line's flags -> the core's one settings object."""
    from .core.settings import Settings

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    return Settings.from_values(threshold_px=args.threshold, num_threads=args.threads, focal_length_px=args.focal,
                                image_size=args.image_size,
                                pose_meshes=any(f in formats for f in ("overlay", "mask")))


def process_jobs(jobs: list[Job], args) -> tuple[int, list[str], int]:
    """pipeline.run_many over these inputs, then each file's outputs; returns (written, failures, failed people).
    The local run, the worker processes and the Ray tasks all come here."""
    import torch

    from .core.body_model import load_body_model
    from .core.keypoints import KeypointsError
    from .core.keypoints_io import read_keypoints
    from .core.pipeline import run_many
    from .outputs import write_outputs

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    settings = settings_from_args(args)
    model = load_body_model(args.model)
    inputs = {job.source.resolve() for job in jobs}
    failures: list[str] = []
    # read everything first, so people from many files are fitted in shared batches
    loaded = []
    for job in jobs:
        target = job.out_dir / "result.json"
        if target.resolve() in inputs:
            failures.append(f"{job.source}: output {target} would overwrite an input; choose another --out")
            continue
        if args.skip_existing and target.exists():
            print(f"skip {job.name}: {target} exists")
            continue
        try:
            if job.source.suffix.lower() in IMAGE_SUFFIXES:
                kfile = detect_to_file(job, args.accept_suggestions)
            else:
                kfile = read_keypoints(job.source, image_size=args.image_size)
        except (KeypointsError, ValueError, OSError, RuntimeError) as exc:
            failures.append(str(exc) if str(job.source) in str(exc) else f"{job.source}: {exc}")
            print(f"error: {failures[-1]}", file=sys.stderr)
            continue
        loaded.append((job, kfile))

    t0 = time.perf_counter()
    reconstructions = run_many(model, [k for _, k in loaded], settings, batch_size=args.batch_size,
                               progress=lambda stage, fraction: print(
                                   f"fitted {fraction:.0%} of {sum(len(k.people) for _, k in loaded)} people "
                                   f"({time.perf_counter() - t0:.1f} s)", flush=True))
    person_failures, written = 0, 0
    for j, ((job, _), rec) in enumerate(zip(loaded, reconstructions)):
        start = time.perf_counter()
        if isinstance(rec, Exception):
            failures.append(str(rec) if str(job.source) in str(rec) else f"{job.source}: {rec}")
            print(f"error: {failures[-1]}", file=sys.stderr)
            continue
        try:
            write_outputs(job.out_dir, rec, formats)
        except Exception as exc:  # one image's export problem must not stop the batch
            failures.append(f"{job.source}: writing outputs failed: {exc}")
            print(f"error: {failures[-1]}", file=sys.stderr)
            continue
        written += 1
        summary = []
        for p, reason in rec.failures():
            person_failures += 1
            print(f"error: {job.source}: person {p}: {reason}", file=sys.stderr)
        for p, res in zip(rec.person_indices, rec.people):
            for r in getattr(res, "residuals", []):
                state = "accepted" if r.accepted else "REJECTED"
                extra = res.measurements.get(r.kind, {})
                volume = f" volume={extra['stump_volume_l']:.2f}l" if "stump_volume_l" in extra else ""
                summary.append(f"person {p} {r.kind} λ={r.lam:.3f} err={r.reproj_error_px:.1f}px {state} "
                               f"length={r.residual_length_m * 100:.1f}cm{volume}")
        print(f"[{j + 1}/{len(loaded)}] {job.name}: {len(rec.people)} people -> {job.out_dir} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
        for line in summary:
            print(f"    {line}")
    return written, failures, person_failures


def blender_command(argv) -> int:
    """`blender --command resihmr ARGS`: registered by the extension (bpy.utils.register_cli_command)."""
    return main(list(argv))
