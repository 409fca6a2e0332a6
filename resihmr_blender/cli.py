"""Batch entry point: `python -m resihmr_blender ARGS`, or under real Blender
`blender --background --python resihmr_blender/cli.py -- ARGS` (this file then runs as a script and finds its
package beside it).

    run INPUT... --out DIR [--model FILE] [--formats json,overlay,mask] [--focal PX] [--image-size WxH]
                 [--threshold PX] [--batch-size N] [--workers N] [--resume] [--detect] [--person N] [--debug]
                 [--mask FILE] [--no-silhouette] [--no-tilt-prior]
    run --sequence FRAMES_DIR --out DIR [--fps 30] [--person N] [--image-size WxH] [--formats json,glb,fbx]
                 [--detect [--accept-suggestions]]
    demo [--out DIR]

INPUT is a keypoints file (DESIGN §3.4) or a folder searched for them (hidden files skipped, symlinked folders
followed; a symlink loop is reported and skipped). Each input writes DIR/<name>/: result.json and the other
requested formats, then `.resihmr-done.json`, its completion record (input and model sha256, formats, settings,
every output's size), written last. <name> is the file's stem, or its folder's name when the stem is
`keypoints`, made safe (no path separators, no leading dot, never empty, `_2`, `_3` for repeats).

Nothing is written outside DIR, and never over an input: every output path is resolved first, and a file whose
outputs would land on an input or on the photo it names is refused before anything is written for it. DIR may
be an input folder: the outputs found there on later runs are not taken as inputs.

As each file finishes one line says its name, people, seconds and warnings; a summary ends the run. A file that
cannot be read, fitted or written is one `error: FILE: ...` line and the others go on (the traceback only with
--debug or RESIHMR_DEBUG=1). People that could not be fitted are listed in result.json and the summary.

--resume (old name --skip-existing) skips a folder whose completion record matches this run (same input and
model bytes, same settings, at least these formats, every output present) and redoes any other; temp files left
by a killed run (`.*.resihmr-tmp*`, only inside DIR) are removed at the start. Ctrl-C (SIGINT) stops after the
current file; a second Ctrl-C stops at once, and so does SIGTERM (what `kill`, `timeout` and job schedulers
send). Either way nothing half-written is left under an output's name.

The photo's silhouette: a person mask (white = person; the photo's size or a uniform scale of it) refines the fit's
shape and pose and each residual limb's λ (core/silhouette.py). It is `--mask FILE` (one input), else
`<stem>_mask.png` beside a keypoints file (`<stem>.json` or `<stem>_keypoints.json`), else, with --detect,
MediaPipe's own segmentation (written as DIR/<name>/keypoints_mask.png). --no-silhouette fits the keypoints only.
result.json's `silhouette` entry per person says whether a mask was used and where it came from.

Exit status: 0 every file produced its outputs; 1 some file failed (or an input was missing); 2 usage error (bad
flag, unusable body model, --out not a folder, no input found); 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM).
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import time
import traceback
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script (real Blender's --python)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resihmr_blender.cli import main as _main

    _argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    sys.exit(_main(_argv))

# (after the script case above: run as a script, a relative import has no package to come from)
from .exit_status import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE  # noqa: E402

AVAILABLE_FORMATS = ("json", "overlay", "mask", "blend", "glb", "fbx")  # outputs.FORMATS
DETECTED_MASK = "keypoints_mask.png"  # --detect: MediaPipe's person mask beside keypoints.json
EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TEMP_MARK = ".resihmr-tmp"  # core.atomic.TEMP_MARK (not imported: this module stays light to import)
NOT_INPUTS = ("ground_truth.json",)  # the examples' answers, beside their keypoints


@dataclass
class Job:
    source: Path
    name: str
    out_dir: Path
    index: int = 1  # 1-based position in the whole run, for the progress lines
    total: int = 1


@dataclass
class FileOutcome:
    """What became of one input (picklable: worker processes and Ray tasks return these)."""

    index: int
    name: str
    source: str
    out_dir: str
    ok: bool
    message: str = ""
    people: int = 0
    not_fitted: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------------------------
# Names and inputs


def safe_name(text: str, fallback: str = "input") -> str:
    """A folder name that stays one path component: separators and control characters become `_`, no leading
    dot (so never `.` or `..` and never hidden), no surrounding spaces, at most 150 bytes, never empty."""
    cleaned = "".join("_" if ch in "/\\" or unicodedata.category(ch) in ("Cc", "Cs") else ch
                      for ch in unicodedata.normalize("NFC", text))
    cleaned = cleaned.strip().lstrip(".").strip()
    cleaned = cleaned.encode("utf-8")[:150].decode("utf-8", "ignore").rstrip(" .")
    return cleaned or fallback


def output_name(path: Path) -> str:
    """The output folder's name for an input: its stem, or its folder's name when the stem is `keypoints`
    (`subjects/anna/keypoints.json` -> `anna`); `..` and `.` are resolved first, the result made safe."""
    path = Path(os.path.abspath(path))
    if path.stem == "keypoints" and path.parent.name:
        return safe_name(path.parent.name, "keypoints")
    return safe_name(path.stem)


def _head(path: Path, size: int = 1 << 16) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def is_own_output(path: Path) -> bool:
    """True for files this command wrote (so an output folder inside an input folder is not read as input):
    files listed in their folder's completion record, resihmr result documents, keypoints.json written by
    --detect, and the pictures and avatars beside either."""
    from .outputs import DONE_RECORD, read_done_record

    folder = path.parent
    record = read_done_record(folder) if (folder / DONE_RECORD).is_file() else None
    if record is not None and path.name in (record.get("outputs") or {}):
        return True
    if path.name == "result.json":
        return b'"resihmr-result/' in _head(path, 512)
    if path.name == "keypoints.json":
        return b'"resihmr_suggestions"' in _head(path, 1 << 20)
    if path.name in ("overlay.png", "mask.png", DETECTED_MASK):
        return record is not None or b'"resihmr-result/' in _head(folder / "result.json", 512)
    return False


def _search(folder: Path, suffixes: tuple[str, ...], warnings: list[str]) -> list[Path]:
    """Files with these suffixes under `folder`: hidden entries skipped, symlinked folders followed once,
    symlink loops and unreadable folders reported in `warnings`."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def visit(directory: Path, ancestors: frozenset) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            warnings.append(f"{directory}: cannot be searched ({exc.strerror or exc}), skipped")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                info = os.stat(path)  # follows symlinks
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    warnings.append(f"{path}: symlink loop, skipped")
                elif entry.is_symlink() and path.suffix.lower() in suffixes:
                    warnings.append(f"{path}: broken symlink, skipped")
                continue
            key = (info.st_dev, info.st_ino)
            if entry.is_dir():
                if key in ancestors:
                    warnings.append(f"{path}: symlink loop (leads back to a folder above it), skipped")
                elif key not in seen:
                    seen.add(key)
                    visit(path, ancestors | {key})
            elif entry.is_file() and path.suffix.lower() in suffixes and path.name not in NOT_INPUTS \
                    and not is_own_output(path):
                found.append(path)

    try:
        root = os.stat(folder)
        seen.add((root.st_dev, root.st_ino))
        visit(folder, frozenset({(root.st_dev, root.st_ino)}))
    except OSError as exc:
        warnings.append(f"{folder}: cannot be searched ({exc.strerror or exc}), skipped")
    return found


def collect_inputs(inputs: list[str], out_root: Path,
                   images: bool = False) -> tuple[list[Job], list[str], list[str]]:
    """Expand folders and name the outputs: (jobs, problems (inputs that failed), warnings)."""
    files, problems, warnings = [], [], []
    suffixes = (".json", *IMAGE_SUFFIXES) if images else (".json",)
    what = "keypoint files (.json) or photos" if images else ".json keypoint files"
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = _search(path, suffixes, warnings)
            if not found:
                problems.append(f"{path}: folder holds no {what}")
            files += found
        elif path.is_file() and not images and path.suffix.lower() in IMAGE_SUFFIXES:
            problems.append(f"{path}: is a photo; add --detect to find its keypoints")
        elif path.is_file():
            files.append(path)
        elif os.path.islink(path):
            try:
                os.stat(path)
                problems.append(f"{path}: not a file or folder")
            except OSError as exc:
                kind = "symlink loop" if exc.errno == errno.ELOOP else "broken symlink"
                problems.append(f"{path}: {kind}")
        elif path.exists():
            problems.append(f"{path}: not a regular file or folder")
        else:
            problems.append(f"{path}: no such file or folder")
    jobs, used, sources = [], set(), set()
    for path in sorted(files, key=lambda p: os.path.abspath(p)):
        real = os.path.realpath(path)
        if real in sources:  # the same file named twice (a folder and a file in it, or a symlink)
            continue
        sources.add(real)
        name = base = output_name(path)
        k = 2
        while name.casefold() in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name.casefold())
        jobs.append(Job(path, name, out_root / name))
    for i, job in enumerate(jobs):
        job.index, job.total = i + 1, len(jobs)
    return jobs, problems, warnings


class InputError(ValueError):
    """An input this command cannot use; the message names the file (and where in it)."""


class _Huge:
    """A JSON integer literal too large for a float (kept as text, never converted)."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))


def _safe_int(text: str):
    if len(text.lstrip("-")) <= 300:
        return int(text)
    return _Huge(text) if not math.isfinite(float(text)) else float(text)


def _read_json_safely(path: Path, limit: int = 64 << 20):
    """A JSON document with giant integer literals as _Huge markers (no int/float conversion can fail)."""
    import json

    with open(path, "rb") as handle:
        raw = handle.read(limit)
    return json.loads(raw.decode("utf-8-sig"), parse_int=_safe_int)


def locate_giant_number(path: Path) -> str | None:
    """Where a keypoints file holds an integer literal too large for a float (`1e400` written out in full),
    named as the keypoints reader names fields: `person P, field 'F', index I: x value ... is not finite`."""
    try:
        document = _read_json_safely(path)
    except Exception:
        return None

    def walk(value, trail):
        if isinstance(value, _Huge):
            return trail, value
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            hit = walk(item, [*trail, key])
            if hit is not None:
                return hit
        return None

    hit = walk(document, [])
    if hit is None:
        return None
    trail, huge = hit
    what = f"a {huge.digits}-digit integer"
    if len(trail) == 4 and trail[0] in ("people", "annotations") and isinstance(trail[1], int) \
            and isinstance(trail[3], int):
        component = ("x", "y", "confidence")[trail[3] % 3]
        return (f"{path}: person {trail[1]}, field {trail[2]!r}, index {trail[3] // 3}: {component} value "
                f"({what}) is not finite")
    dotted = "".join(f"[{t}]" if isinstance(t, int) else f".{t}" for t in trail).lstrip(".")
    return f"{path}: field {dotted!r}: value ({what}) is not finite"


def named_photos(paths: list[Path]) -> list[str]:
    """The photos these keypoints files name (OpenPose `image.path`, COCO `images[].file_name`), resolved:
    inputs too, so no output may land on one."""
    photos = []
    for path in paths:
        if path.suffix.lower() != ".json":
            continue
        try:
            document = _read_json_safely(path)
        except Exception:
            continue
        if not isinstance(document, dict):
            continue
        image = document.get("image")
        names = [image.get("path")] if isinstance(image, dict) else []
        images = document.get("images")
        if isinstance(images, list):
            names += [i.get("file_name") for i in images if isinstance(i, dict)]
        for name in names:
            if isinstance(name, str) and name:
                try:
                    photos.append(os.path.realpath(Path(path).parent / name))
                except (OSError, ValueError):
                    pass
    return photos


def remove_temp_files(out_root: Path) -> list[Path]:
    """Temp files a killed run left (core.atomic names them `.<stem>.<random>.resihmr-tmp<suffix>`): only
    those, only inside `out_root`, symlinks not followed."""
    removed = []
    if not out_root.is_dir():
        return removed
    for folder, _dirs, names in os.walk(out_root):
        for name in names:
            if name.startswith(".") and TEMP_MARK in name:
                path = Path(folder) / name
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


# ---------------------------------------------------------------------------------------------------------------
# Flags


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def _flag_number(convert, accept, kind: str, requirement: str):
    """An argparse type: `convert` the text (refused as not `kind`), then `accept` the value (else: `requirement`)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
        return value
    return parse


positive_float = _flag_number(float, lambda v: math.isfinite(v) and v > 0, "a number", "a positive finite number")
non_negative_float = _flag_number(float, lambda v: math.isfinite(v) and v >= 0, "a number", "a finite number >= 0")
positive_int = _flag_number(int, lambda v: v >= 1, "a whole number", "at least 1")
non_negative_int = _flag_number(int, lambda v: v >= 0, "a whole number", "0 or more")


def parse_formats(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resihmr", description="Residual-limb aware human mesh recovery.",
                     epilog="exit status: 0 every file written, 1 some file failed, 2 usage error, 130 interrupted")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit, RAFO and write results for keypoint files",
                         description=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("inputs", nargs="*", help="keypoints files or folders of them")
    run.add_argument("--out", required=True, help="output folder (one sub-folder per input)")
    run.add_argument("--model", default=None, help="SMPL-X .npz (default: the embedded body)")
    run.add_argument("--formats", default="json,overlay,mask",
                     help=f"comma list of {', '.join(AVAILABLE_FORMATS)} (blend/glb/fbx need bpy)")
    run.add_argument("--focal", type=positive_float, default=None, help="focal length in pixels (overrides the file)")
    run.add_argument("--image-size", type=parse_size, default=None, help="WIDTHxHEIGHT when the file has none")
    run.add_argument("--threshold", type=non_negative_float, default=15.0, help="RAFO acceptance threshold in pixels")
    run.add_argument("--batch-size", type=positive_int, default=64, help="people fitted together")
    run.add_argument("--threads", type=non_negative_int, default=0, help="torch threads (0 = automatic)")
    run.add_argument("--pose", choices=("rest", "photo"), default="rest",
                     help="static pose of avatar.glb/fbx: rest (T-pose, default) or photo; both stand on the ground "
                          "at the origin and carry the photo's pose as the clip 'photo_pose'")
    run.add_argument("--preset", choices=("unity", "unreal", "web"), default=None,
                     help="engine axes and units for the FBX (unity: Y up, -Z forward; unreal: Z up), web: plain GLB")
    run.add_argument("--influences", type=int, choices=(4, 8), default=4,
                     help="skin weights per vertex in the GLB (8 writes JOINTS_1/WEIGHTS_1; three.js reads 4)")
    run.add_argument("--motion", default=None, metavar="FILE.npz",
                     help="play an AMASS-layout motion on every avatar: animated avatar.glb/fbx")
    run.add_argument("--prosthesis", nargs="?", const="hand", choices=("hand", "hook"), default=None,
                     help="fit a prosthesis (socket, pylon, foot / hand or hook) to every cut limb: in avatar.glb/"
                          "fbx/blend and their dimensions in result.json; the optional value is the arms' terminal "
                          "device (default hand)")
    run.add_argument("--prosthesis-cover", action="store_true",
                     help="with --prosthesis: a cosmetic cover shaped like the other limb over each pylon")
    run.add_argument("--resume", "--skip-existing", dest="resume", action="store_true",
                     help="skip inputs whose output folder is complete (its .resihmr-done.json matches this run)")
    run.add_argument("--workers", type=positive_int, default=1,
                     help="processes, each with its own bpy/torch (default 1)")
    run.add_argument("--detect", action="store_true",
                     help="inputs may be photos: detect keypoints (optional extra [detect]) and write keypoints.json")
    run.add_argument("--accept-suggestions", action="store_true",
                     help="with --detect: treat the detector's limb-loss suggestions as residual limbs")
    run.add_argument("--person", type=non_negative_int, default=None,
                     help="only person N of each input: of a keypoints file, its person N (from 0, in the file's "
                          "order); of a photo with --detect, person N of the people found, ranked from the most "
                          "central, largest, fully visible one (0, the default)")
    run.add_argument("--sequence", default=None, metavar="DIR",
                     help="a video's OpenPose per-frame files (<video>_<frame>_keypoints.json), or with --detect its "
                          "frame images: one avatar with one shape and λ for the clip and its motion; writes "
                          "result.json, gait.csv (+ glb/fbx)")
    run.add_argument("--fps", type=positive_float, default=30.0, help="--sequence: the video's frame rate")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="ray: one task per input on a Ray cluster (pip install .[ray]); see --address")
    run.add_argument("--address", default=None,
                     help="Ray cluster address (default: the running local instance, or start one)")
    run.add_argument("--mask", default=None, metavar="FILE",
                     help="the photo's person mask (white = person) for the one input; default: <stem>_mask.png "
                          "beside the keypoints file, or the detector's with --detect")
    run.add_argument("--no-tilt-prior", dest="tilt_prior", action="store_false",
                     help="RAFO's eq. 4 exactly as the paper writes it: no tilt prior, no λ hypotheses (λ then keeps "
                          "the fit's own tilt of each residual segment)")
    run.add_argument("--no-silhouette", dest="silhouette", action="store_false",
                     help="do not use a person mask even when one is there (keypoints only)")
    run.add_argument("--debug", action="store_true", default=False,
                     help="print the full traceback of every error (also RESIHMR_DEBUG=1)")
    demo = sub.add_parser("demo", help="run the bundled example end to end")
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--debug", action="store_true", default=False, help="print the full traceback of errors")
    return parser


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C: stop after the current file


class _Stop:
    """SIGINT -> `requested` (checked between files); a second SIGINT raises KeyboardInterrupt (stop now).
    Worker processes share `event`, so a SIGINT sent to the main process alone reaches them too."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.signals, self.event, self.may_raise, self.terminated = 0, None, True, False

    program = False  # True when main() runs as the program: a late Ctrl-C must not turn exit 130 into a crash

    def handler(self, signum, frame) -> None:
        self.signals += 1
        if self.event is not None:
            self.event.set()
        if signum == signal.SIGTERM:
            self.terminated = True
        if (self.signals > 1 or self.terminated) and self.may_raise:
            raise KeyboardInterrupt  # unwinds through every atomic writer: their temp files are removed

    @property
    def requested(self) -> bool:
        return self.signals > 0 or (self.event is not None and self.event.is_set())


_STOP = _Stop()


def _install_sigint(sigterm: bool = True):
    """Route SIGINT (and SIGTERM) to `_STOP`; returns what to restore (None off the main thread, where Ctrl-C
    keeps its default meaning)."""
    try:
        previous_int = signal.signal(signal.SIGINT, _STOP.handler)
        return previous_int, signal.signal(signal.SIGTERM, _STOP.handler) if sigterm else None
    except ValueError:
        return None


def _worker_init(event) -> None:
    """In a worker process: Ctrl-C only asks to stop after the current file (the main process ends the workers
    on a second Ctrl-C; a KeyboardInterrupt in an idle worker would print a traceback)."""
    _STOP.reset()
    _STOP.event, _STOP.may_raise = event, False
    _install_sigint(sigterm=False)  # the main process ends its workers with SIGTERM: that must still kill them


# ---------------------------------------------------------------------------------------------------------------
# Running


def _debug(args) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("RESIHMR_DEBUG", "") not in ("", "0")


def _report(source, exc: BaseException, args, prefix: str = "") -> str:
    """One line for a failed file (printed to stderr, returned for the summary); the traceback with --debug."""
    from .outputs import one_line

    text = one_line(exc)
    if str(source) and not text.startswith(str(source)):
        text = f"{source}: {prefix}{text}"
    print(f"error: {text}", file=sys.stderr, flush=True)
    if _debug(args):
        traceback.print_exception(exc, file=sys.stderr)
    return text


def main(argv: list[str] | None = None) -> int:
    """The command line (argv None = sys.argv: the program itself, which exits after this returns)."""
    _STOP.program = argv is None
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed on one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(Path(args.out))
        return run_command(args)
    except KeyboardInterrupt:
        if _STOP.program:  # exiting: a further Ctrl-C during interpreter shutdown is ignored, not a traceback
            _ignore_sigint()
        what = "terminated" if _STOP.terminated else "interrupted"
        print(f"{what}: stopped at once; files not completed are redone by the same command with --resume",
              file=sys.stderr, flush=True)
        return EXIT_TERMINATED if _STOP.terminated else EXIT_INTERRUPTED
    except Exception as exc:  # never a traceback for the user; --debug shows it
        _report("", exc, args)
        return EXIT_FAILED


def _ignore_sigint() -> None:
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def run_command(args) -> int:
    _STOP.reset()
    previous = _install_sigint()
    try:
        return _run(args)
    finally:
        if previous is not None:
            # the program exits next: further Ctrl-C during interpreter shutdown are ignored, not a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN if _STOP.program and _STOP.requested else previous[0])
            if previous[1] is not None:
                signal.signal(signal.SIGTERM, previous[1])


def _run(args) -> int:
    if args.sequence is not None:  # a video's frames: one clip, one avatar (sequence_outputs.py)
        from .sequence_outputs import run_sequence_command

        return run_sequence_command(args, settings_from_args(args), safe_name, _debug(args))
    if not args.inputs:
        return _usage_error("give keypoints files or folders (or --sequence DIR)")
    formats = parse_formats(args.formats)
    if not formats:
        return _usage_error(f"--formats is empty; give a comma list of {', '.join(AVAILABLE_FORMATS)}")
    unknown = [f for f in formats if f not in AVAILABLE_FORMATS]
    if unknown:
        return _usage_error(f"--formats {','.join(unknown)} not available (available: {', '.join(AVAILABLE_FORMATS)})")
    if not args.out.strip():
        return _usage_error("--out is empty; give the output folder")
    out_root = Path(args.out)
    if out_root.exists() and not out_root.is_dir():
        return _usage_error(f"--out {out_root} is a file, not a folder")
    if args.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            return _usage_error("--executor ray needs Ray: pip install 'resihmr-blender[ray]'")
    from .core.body_model import load_body_model
    from .outputs import DONE_RECORD, one_line

    try:
        model = load_body_model(args.model)  # fail early, once, with the file contract's message
        model_sha = model.sha256
    except Exception as exc:
        return _usage_error(one_line(exc) if args.model and str(args.model) in str(exc)
                            else f"--model {args.model}: {one_line(exc)}")
    removed = remove_temp_files(out_root)
    if removed:
        print(f"removed {len(removed)} temp file(s) an interrupted run left in {out_root}", flush=True)
    jobs, problems, warnings = collect_inputs(args.inputs, out_root, images=args.detect)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr, flush=True)
    if not jobs:
        return _usage_error("no input to run (see the lines above)") if problems else \
            _usage_error("no input to run")
    if args.mask is not None:
        if len(jobs) != 1:
            return _usage_error(f"--mask {args.mask} is one photo's mask: give exactly one input ({len(jobs)} found)")
        if not Path(args.mask).is_file():
            return _usage_error(f"--mask {args.mask}: no such file")
    args.protect = sorted({os.path.realpath(job.source) for job in jobs} | set(named_photos([j.source for j in jobs])))
    args.motion_data, motion_sha = None, None
    if args.motion:
        from .core.body_model import file_sha256
        from .mesh.animation import MotionError, read_motion

        if not any(f in formats for f in ("glb", "fbx")):
            return _usage_error(f"--motion {args.motion}: a motion needs --formats with glb or fbx")
        try:
            args.motion_data, motion_sha = read_motion(args.motion), file_sha256(args.motion)
        except (MotionError, OSError) as exc:
            return _usage_error(f"--motion {one_line(exc)}" if args.motion not in str(exc) else one_line(exc))
    args.fingerprint = {"body_model_sha256": model_sha, "formats": sorted(formats), "threshold_px": args.threshold,
                        "focal_length_px": args.focal, "image_size": list(args.image_size or []) or None,
                        "detect": args.detect, "accept_suggestions": args.accept_suggestions,
                        "silhouette": args.silhouette, "tilt_prior": args.tilt_prior,
                        **({"mask": os.path.abspath(args.mask)} if args.mask else {}),
                        **({"person": args.person} if args.person is not None else {}),
                        **({"prosthesis": args.prosthesis, "prosthesis_cover": args.prosthesis_cover}
                           if args.prosthesis else {}),
                        **({"pose": args.pose, "preset": args.preset, "influences": args.influences,
                            "motion_sha256": motion_sha} if any(f in formats for f in ("glb", "fbx")) else {})}
    t0 = time.perf_counter()
    skipped, total = 0, len(jobs)
    if args.resume:
        pending = []
        for job in jobs:
            done, why = _is_complete(job, args)
            if done:
                skipped += 1
                print(f"skip {job.name}: complete ({job.out_dir / DONE_RECORD})", flush=True)
            else:
                if job.out_dir.is_dir():
                    print(f"redo {job.name}: {why}", flush=True)
                pending.append(job)
        jobs = pending
    workers = max(1, min(args.workers, len(jobs)))
    if jobs:
        print(f"running {len(jobs)} file(s) -> {out_root} ({workers} worker(s), up to {args.batch_size} people "
              "fitted together)", flush=True)
    if not jobs:
        outcomes: list[FileOutcome] = []
    elif args.executor == "ray":
        outcomes = run_on_ray(jobs, args)
        workers = len(jobs)
    elif workers == 1:
        outcomes = process_jobs(jobs, args)
    else:
        # one process per worker (bpy and torch imported once each), sharing the Ctrl-C event
        import concurrent.futures
        import multiprocessing

        chunks = [jobs[i::workers] for i in range(workers)]
        context = multiprocessing.get_context("spawn")
        _STOP.event = context.Event()
        if _STOP.signals:
            _STOP.event.set()
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                                      initargs=(_STOP.event,))
        try:
            outcomes = [o for chunk in pool.map(process_jobs, chunks, [args] * workers) for o in chunk]
        except KeyboardInterrupt:  # a second Ctrl-C: end the workers now (their temp files go on the next run)
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    return _summary(total, len(jobs), outcomes, problems, skipped, workers, time.perf_counter() - t0)


def _summary(total: int, pending: int, outcomes: list[FileOutcome], problems: list[str], skipped: int,
             workers: int, seconds: float) -> int:
    """The closing lines and the exit status (130 when Ctrl-C left files undone)."""
    written = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    if _STOP.requested and len(outcomes) < pending:
        print(f"interrupted: stopped after {len(outcomes) + skipped} of {total} file(s) ({len(written)} written, "
              f"{len(failed)} failed); run the same command with --resume to finish", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    people = sum(o.people for o in written)
    not_fitted = sum(len(o.not_fitted) for o in written)
    skip = f", {skipped} skipped (complete)" if skipped else ""
    print(f"done: {len(written)} of {total + len(problems)} file(s) written, {len(failed) + len(problems)} "
          f"failed{skip}; {people} people, {not_fitted} not fitted ({seconds:.1f} s, {workers} worker(s))",
          flush=True)
    for problem in problems:
        print(f"  failed: {problem}")
    for o in sorted(failed, key=lambda o: o.index):
        print(f"  failed: {o.message}")
    for o in sorted(written, key=lambda o: o.index):
        for p, reason in o.not_fitted:
            print(f"  not fitted: {o.source} person {p}: {reason}")
    sys.stdout.flush()
    return EXIT_FAILED if failed or problems else EXIT_OK


def _fingerprint(args, input_sha: str) -> dict:
    return {"input_sha256": input_sha, **args.fingerprint}


def _is_complete(job: Job, args) -> tuple[bool, str]:
    from .core.body_model import file_sha256
    from .outputs import complete

    try:
        return complete(job.out_dir, _fingerprint(args, file_sha256(job.source)))
    except OSError as exc:
        return False, f"cannot read the input ({exc.strerror or exc})"


def run_on_ray(jobs: list[Job], args) -> list[FileOutcome]:
    """One Ray task per input, each writing its own output folder. Every node needs this package installed."""
    import ray

    ray.init(address=args.address, ignore_reinit_error=True, include_dashboard=False)
    task = ray.remote(num_cpus=1)(process_jobs)
    local = argparse.Namespace(**{**vars(args), "executor": "local", "workers": 1})
    return [o for chunk in ray.get([task.remote([job], local) for job in jobs]) for o in chunk]


def detect_to_file(job: Job, accept: bool, person: int | None = None):
    """Detect a photo's keypoints, write DIR/<name>/keypoints.json (suggestions kept apart, with the detector's
    report: each limb's probability of being absent or why it was not judged), return the file."""
    import json

    from .core.atomic import write_text_atomic
    from .core.keypoints import KeypointsFile
    from .core.keypoints_io import read_keypoints, write_keypoints
    from .core.residuals import RESIDUAL_KINDS
    from .detect import detect, read_image

    found = detect(read_image(job.source), source=str(job.source), person=person or 0)
    if found.others:
        which = "the most central, largest one" if found.index == 0 else f"person {found.index} (--person)"
        print(f"    {job.name}: {found.others + 1} people in the image; fitting {which}")
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
    document["resihmr_suggestions"] = [{"kind": s.kind, "endpoint": list(s.endpoint), "probability": round(s.score, 3),
                                        "reasons": s.reasons, "applied": accept} for s in found.suggestions]
    document["resihmr_detector"] = {**found.report(), "suggestions_applied": accept}
    write_text_atomic(target, json.dumps(document, indent=1) + "\n")
    found.write_mask(job.out_dir / DETECTED_MASK)  # the photo silhouette's mask (mask_for finds it)
    for s in found.suggestions:
        print(f"    suggestion for {job.name}: {s.kind} at ({s.endpoint[0]:.0f}, {s.endpoint[1]:.0f}) px, "
              f"p(absent) {s.score:.2f}: {'; '.join(s.reasons[1:3])} "
              f"({'applied' if accept else 'not applied: --accept-suggestions'})")
    return read_keypoints(target)


def _add_detector_report(out_dir: Path) -> None:
    """Copy the detector's report from keypoints.json into result.json (what was suggested, how likely, why)."""
    import json

    from .core.result_json import write_json_atomic

    result, keypoints = out_dir / "result.json", out_dir / "keypoints.json"
    if not (result.is_file() and keypoints.is_file()):
        return
    report = json.loads(keypoints.read_text()).get("resihmr_detector")
    if report is not None:
        document = json.loads(result.read_text())
        document["detector"] = report
        write_json_atomic(result, document)


def _one_person(kfile, person: int):
    """--person N on a keypoints file: a copy holding only its person N (a clear error when there is none)."""
    import copy

    if person >= len(kfile.people):
        raise ValueError(f"{kfile.path}: --person {person}, but the file has {len(kfile.people)} "
                         f"{'person' if len(kfile.people) == 1 else 'people'} (numbered from 0)")
    one = copy.copy(kfile)
    one.people = [kfile.people[person]]
    return one


def settings_from_args(args):
    """The command line's flags -> the core's one settings object."""
    from .core.settings import Settings

    formats = parse_formats(args.formats)
    # no image size here: each file carries its own (read_file_with_size), --image-size only where none is known
    return Settings.from_values(threshold_px=args.threshold, num_threads=args.threads, focal_length_px=args.focal,
                                pose_meshes=any(f in formats for f in ("overlay", "mask")),
                                use_silhouette=getattr(args, "silhouette", True),
                                tilt_prior=getattr(args, "tilt_prior", True))


def read_file_with_size(source: Path, fallback_size):
    """Read a keypoints file; its image size comes, per file, from the file's own image block, else the photo
    beside it (OpenPose naming), else --image-size (the last resort, so a folder of mixed photo sizes needs no
    flag when the photos are there)."""
    from .core.keypoints import KeypointsError
    from .core.keypoints_io import read_keypoints
    from .core.photo import photo_size

    try:
        kfile = read_keypoints(source)
    except KeypointsError as exc:
        if fallback_size is None or "normalised" not in str(exc):
            raise
        return read_keypoints(source, image_size=fallback_size)  # normalised coordinates: scale by --image-size
    if kfile.image_size is None:
        size = photo_size(kfile) or fallback_size
        if size is not None:
            kfile.image_width, kfile.image_height = int(size[0]), int(size[1])
    return kfile


def photo_of(kfile) -> Path | None:
    """The photo of a keypoints file: the one it names (relative to its folder, whether or not it exists), else
    the one beside it by OpenPose's naming."""
    if not kfile.image_path:
        from .core.photo import photo_path

        return photo_path(kfile)
    path = Path(kfile.image_path)
    if not path.is_absolute() and kfile.path:
        path = Path(kfile.path).parent / path
    return path


@dataclass
class _Prepared:
    job: Job
    kfile: object
    input_sha: str
    protect: list[str]
    whole: object = None  # --person N on a keypoints file: the whole file (kfile holds only its person N)
    person: int | None = None
    mask: object = None  # the photo's person mask (core.silhouette.PersonMask), None: keypoints only


def _prepare(job: Job, args, formats: list[str]) -> _Prepared:
    """Check every output path of this input, then read it (or detect its keypoints): nothing is written for a
    file whose outputs would land outside --out, on an input or on the photo it names."""
    from .core.body_model import file_sha256
    from .outputs import DONE_RECORD, OutputError, check_target, planned_outputs, remove_done_record

    root, protect = Path(args.out), list(args.protect)
    check_target(root, job.name, root, protect)
    input_sha = file_sha256(job.source)
    whole = None
    if job.source.suffix.lower() in IMAGE_SUFFIXES:  # detection writes keypoints.json: check everything first
        for name in ["keypoints.json", DETECTED_MASK, *planned_outputs(formats, 1), DONE_RECORD]:
            check_target(job.out_dir, name, root, protect)
        remove_done_record(job.out_dir)
        kfile = detect_to_file(job, args.accept_suggestions, args.person)
    else:
        kfile = read_file_with_size(job.source, args.image_size)
        if args.person is not None:
            whole, kfile = kfile, _one_person(kfile, args.person)
    photo = photo_of(kfile)
    if photo is not None:
        photo_real = os.path.realpath(photo)
        for name in [*planned_outputs(formats, len(kfile.people)), DONE_RECORD]:
            if os.path.realpath(job.out_dir / name) == photo_real:
                raise OutputError(f"output {job.out_dir / name} would overwrite the photo {photo} that this file "
                                  "names; refused: choose another --out")
        protect.append(photo_real)
    for name in [*planned_outputs(formats, len(kfile.people)), DONE_RECORD]:
        check_target(job.out_dir, name, root, protect)
    mask = mask_for(kfile, args, job.out_dir if job.source.suffix.lower() in IMAGE_SUFFIXES else None)
    remove_done_record(job.out_dir)  # from here on the folder no longer counts as complete
    if whole is not None:
        return _Prepared(job, kfile, input_sha, protect, whole, args.person, mask)
    return _Prepared(job, kfile, input_sha, protect, mask=mask)


def mask_for(kfile, args, detected_in: Path | None = None):
    """The photo's person mask for a keypoints file (see the module's docstring), or None; a mask that cannot
    be used is a one-line error naming it."""
    if not getattr(args, "silhouette", True):
        return None
    from .core.silhouette import mask_beside, read_mask

    # (a detected photo's keypoints.json has MediaPipe's keypoints_mask.png beside it: mask_beside finds it)
    path = Path(args.mask) if getattr(args, "mask", None) else mask_beside(kfile.path)
    if path is None:
        return None
    if path.name == DETECTED_MASK and detected_in is not None:
        from .core.silhouette import MaskError

        try:  # the detector's own mask: a person it segmented too faintly is fitted from the keypoints alone
            mask = read_mask(path, kfile.image_width, kfile.image_height)
        except MaskError as exc:
            print(f"    {path}: not used ({exc})")
            return None
        mask.source = "mediapipe"
        return mask
    return read_mask(path, kfile.image_width, kfile.image_height)


def _fit_group(model, group: list[_Prepared], settings, batch_size: int) -> list:
    """run_many over a group of files (their people fitted together); when that fails as a whole, each file
    alone, so one file's surprise does not sink the others. Entries are Reconstructions or exceptions."""
    from .core.pipeline import run_many

    try:
        return run_many(model, [g.kfile for g in group], settings, batch_size=batch_size, masks=[g.mask for g in group])
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if len(group) == 1:
            return [exc]
    out = []
    for g in group:
        try:
            out += run_many(model, [g.kfile], settings, batch_size=batch_size, masks=[g.mask])
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            out.append(exc)
    return out


def _warnings_of(rec, formats, args) -> list[str]:
    lines = [str(w) for w in getattr(rec.keypoints, "warnings", None) or []]  # what the reader repaired
    lines += [f"person {p} not fitted: {reason}" for p, reason in rec.failures()]
    for p, res in zip(rec.person_indices, rec.people):
        for r in getattr(res, "residuals", []):
            if not r.accepted:
                lines.append(f"person {p} {r.kind} not accepted: reprojection error {r.reproj_error_px:.1f} px "
                             f"> {args.threshold:g} px")
            problem = getattr(res, "measurements", {}).get(r.kind, {}).get("measurement_error")
            if problem:
                lines.append(f"person {p} {r.kind} not measured: {problem}")
    photo = photo_of(rec.keypoints)
    if "overlay" in formats and photo is not None and not photo.is_file():
        lines.append(f"photo {rec.keypoints.image_path} not found: overlay.png drawn without it")
    return lines


def _write(prep: _Prepared, rec, formats, args, fit_seconds: float) -> FileOutcome:
    from .core.pipeline import PersonFailure
    from .outputs import ExportChoices, write_done_record, write_outputs

    job = prep.job
    start = time.perf_counter()
    if prep.whole is not None:  # --person N: the file's own numbering in the outputs, its other people not fitted
        rec.keypoints, rec.person_indices = prep.whole, [prep.person]
    choices = ExportChoices(pose=args.pose, preset=args.preset, influences=args.influences, motion=args.motion_data,
                            prosthesis=args.prosthesis, prosthesis_cover=args.prosthesis_cover)
    written = write_outputs(job.out_dir, rec, formats, root=Path(args.out), protect=prep.protect, export=choices)
    if (job.out_dir / "keypoints.json").is_file() and job.source.suffix.lower() in IMAGE_SUFFIXES:
        _add_detector_report(job.out_dir)
        written.append(job.out_dir / "keypoints.json")
    not_fitted = rec.failures()
    write_done_record(job.out_dir, written, _fingerprint(args, prep.input_sha),
                      extra={"input": os.path.abspath(job.source), "people": len(rec.people),
                             "not_fitted": [{"person": p, "reason": r} for p, r in not_fitted]})
    seconds = fit_seconds + time.perf_counter() - start
    warnings = _warnings_of(rec, formats, args)
    fitted = sum(not isinstance(p, PersonFailure) for p in rec.people)
    people = f"{len(rec.people)} people" if fitted == len(rec.people) else \
        f"{len(rec.people)} people ({len(rec.people) - fitted} not fitted)"
    print(f"[{job.index}/{job.total}] {job.name}: {people}, {seconds:.1f} s, {len(warnings)} warning(s) "
          f"-> {job.out_dir}", flush=True)
    for p, res in zip(rec.person_indices, rec.people):
        for r in getattr(res, "residuals", []):
            extra = res.measurements.get(r.kind, {})
            volume = f" volume={extra['stump_volume_l']:.2f}l" if "stump_volume_l" in extra else ""
            print(f"    person {p} {r.kind} λ={r.lam:.3f} err={r.reproj_error_px:.1f}px "
                  f"{'accepted' if r.accepted else 'REJECTED'} length={r.residual_length_m * 100:.1f}cm{volume}")
    for line in warnings:
        print(f"    warning: {line}")
    sys.stdout.flush()
    return FileOutcome(job.index, job.name, str(job.source), str(job.out_dir), True, people=len(rec.people),
                       not_fitted=not_fitted, warnings=warnings, seconds=seconds)


def _explained(job: Job, exc: Exception) -> Exception:
    """The reader's own errors name file, person, field and index; anything else that escapes it may be a number
    no float can hold (located the same way) or is said to be unexpected, still on one line."""
    if "resihmr_blender" in type(exc).__module__ or isinstance(exc, OSError):
        return exc
    from .outputs import one_line

    located = locate_giant_number(job.source) if job.source.suffix.lower() == ".json" else None
    explained = InputError(located or f"{job.source}: cannot be read: {one_line(exc)} (unexpected here; --debug "
                                      "shows where)")
    explained.__cause__ = exc  # --debug prints the original traceback
    return explained


def process_jobs(jobs: list[Job], args) -> list[FileOutcome]:
    """Read the inputs, fit their people in groups of at most --batch-size (people of several files fitted
    together), and write each file's outputs as soon as its group is fitted. The local run, the worker
    processes and the Ray tasks all come here. Any exception of one file becomes that file's one-line failure;
    Ctrl-C stops after the current file."""
    import torch

    from .core.body_model import load_body_model

    formats = parse_formats(args.formats)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    settings = settings_from_args(args)
    model = load_body_model(args.model)
    outcomes: list[FileOutcome] = []

    def failed(job: Job, exc: BaseException, prefix: str = "") -> None:
        message = _report(job.source, exc, args, prefix)
        outcomes.append(FileOutcome(job.index, job.name, str(job.source), str(job.out_dir), False, message))

    def flush(group: list[_Prepared]) -> None:
        t0 = time.perf_counter()
        recs = _fit_group(model, group, settings, args.batch_size)
        fit_seconds = time.perf_counter() - t0
        people = max(sum(len(g.kfile.people) for g in group), 1)
        for k, (prep, rec) in enumerate(zip(group, recs)):
            if k > 0 and _STOP.requested:
                return
            if isinstance(rec, BaseException):
                failed(prep.job, rec)
                continue
            share = fit_seconds * max(len(prep.kfile.people), 1) / people
            try:
                outcomes.append(_write(prep, rec, formats, args, share))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one image's write problem must not stop the batch
                failed(prep.job, exc, "writing outputs failed: ")

    group: list[_Prepared] = []
    for job in jobs:
        if _STOP.requested:
            return outcomes
        try:
            prep = _prepare(job, args, formats)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            failed(job, _explained(job, exc))
            continue
        if group and sum(len(g.kfile.people) for g in group) + len(prep.kfile.people) > args.batch_size:
            flush(group)
            group = []
            if _STOP.requested:
                return outcomes
        group.append(prep)
    if group and not _STOP.requested:
        flush(group)
    return outcomes


def blender_command(argv) -> int:
    """`blender --command resihmr ARGS`: registered by the extension (bpy.utils.register_cli_command)."""
    return main(list(argv))
