"""Write one reconstruction's outputs (DESIGN §3.5): result.json, overlay.png, mask.png (numpy, no Blender) and
avatar.blend / avatar.glb / avatar.fbx (Blender, imported only when asked for; built by workflow.apply, the
same entry the sidebar uses). Every file is written atomically; inputs are never touched.

Two guards for batch runs live here too:
- every target is resolved and refused when it lands outside the output folder or on a protected path (an
  input, the photo a keypoints file names), before anything is written;
- the completion record `.resihmr-done.json`, written last and atomically, says a folder holds every output
  that was asked for; `--resume` trusts a folder only when its record matches (see `complete`).
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .core.atomic import atomic_path, write_text_atomic

FORMATS = ("json", "overlay", "mask", "blend", "glb", "fbx")
BLENDER_FORMATS = ("blend", "glb", "fbx")
DONE_RECORD = ".resihmr-done.json"
DONE_FORMAT = "resihmr-done/1"
_FILE_OF = {"json": "result.json", "overlay": "overlay.png", "mask": "mask.png", "blend": "avatar.blend"}


@dataclass(frozen=True)
class ExportChoices:
    """How GLB/FBX are written (mesh/export.py): the static pose, an engine preset, skin influences per vertex
    in GLB, and a motion (AMASS .npz, already read: poses, trans, frame rate) played on every avatar."""

    pose: str = "rest"
    preset: str | None = None
    influences: int = 4
    motion: tuple | None = None
    prosthesis: str | None = None  # fit a prosthesis to every cut limb; the arms' terminal device (hand or hook)
    prosthesis_cover: bool = False  # with a cosmetic cover over the pylon


class OutputError(RuntimeError):
    """An output could not be written or was refused; the message is one line naming the output file.
    `detail` keeps the full text of the underlying error (a Blender exporter's traceback, for instance)."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def one_line(exc: BaseException) -> str:
    """An exception as one line. A multi-line message (Blender's exporters put a whole Python traceback into
    their RuntimeError, then a `Location:` line) gives its last `SomeError: ...` line, which names the cause."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) > 1:
        causes = [line for line in lines if _ERROR_LINE.match(line)]
        text = causes[-1] if causes else next((x for x in reversed(lines) if not x.startswith("Location:")), lines[-1])
        return f"{text} (see --debug)"
    text = lines[0]
    ours = "resihmr_blender" in type(exc).__module__ or isinstance(exc, OSError)
    return text if ours or text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


@contextmanager
def quiet_blender():
    """Blender and its exporters write progress, and on failure their own traceback, to the terminal (through
    file descriptors 1 and 2 and through sys.stdout/sys.stderr); keep all of it off the terminal (the failure
    itself is raised as one line). Yields a list that receives the captured text afterwards."""
    import io
    import tempfile

    captured: list[str] = []
    _flush_c_stdio()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no such descriptors (an embedding without a console): nothing to keep quiet
        yield captured
        return
    streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        text = io.TextIOWrapper(open(os.dup(sink.fileno()), "wb"), encoding="utf-8", errors="replace",
                                line_buffering=True)
        sys.stdout = sys.stderr = text
        try:
            yield captured
        finally:
            _flush_c_stdio()
            sys.stdout, sys.stderr = streams
            text.close()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def _flush_c_stdio() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def planned_outputs(formats: Iterable[str], people: int = 1) -> list[str]:
    """File names `write_outputs` may write for a file with `people` people (avatar_<p> for people 1..)."""
    formats = list(formats)
    names = [_FILE_OF[f] for f in ("json", "overlay", "mask") if f in formats]
    for fmt in ("glb", "fbx"):
        if fmt in formats:
            names += [f"avatar.{fmt}" if p == 0 else f"avatar_{p}.{fmt}" for p in range(max(people, 1))]
    if "blend" in formats:
        names.append(_FILE_OF["blend"])
    return names


def check_target(out_dir: Path, name: str, root: Path | None = None, protect: Iterable[Path] = ()) -> Path:
    """`out_dir / name`, refused (OutputError) when it resolves outside `root` (default `out_dir`) or onto a
    protected path (an input file, the photo a keypoints file names)."""
    target = Path(out_dir) / name
    resolved = Path(os.path.realpath(target))
    base = Path(os.path.realpath(root if root is not None else out_dir))
    if resolved == base or base not in resolved.parents:
        raise OutputError(f"output {target} resolves to {resolved}, outside the output folder {base}; refused")
    protected = {Path(os.path.realpath(p)) for p in protect}
    if resolved in protected:
        raise OutputError(f"output {target} would overwrite the input {resolved}; refused: choose another --out")
    return target


@contextmanager
def _writing(name: str):
    """Any failure while writing `name` -> one OutputError line naming it (the full text kept for --debug)."""
    try:
        yield
    except OutputError:
        raise
    except Exception as exc:
        raise OutputError(f"{name}: {one_line(exc)}", detail=str(exc)) from exc


def write_outputs(out_dir: Path, reconstruction, formats, root: Path | None = None,
                  protect: Iterable[Path] = (), export: ExportChoices = ExportChoices()) -> list[Path]:
    """Write the requested formats into `out_dir`; every target is checked first (see `check_target`)."""
    from .core.image import write_png
    from .core.overlay import mask_picture, overlay_picture
    from .core.photo import read_photo
    from .core.result_json import write_json_atomic

    out_dir = Path(out_dir)
    protect = list(protect)
    for name in planned_outputs(formats, len(reconstruction.people)):
        check_target(out_dir, name, root, protect)
    written = []
    camera, meshes = reconstruction.camera, reconstruction.meshes
    if "json" in formats:
        with _writing("result.json"):
            document = reconstruction.document()
            if export.prosthesis:
                for person, devices in zip(document["people"], prosthesis_entries(reconstruction, export.prosthesis,
                                                                                   export.prosthesis_cover)):
                    person["prostheses"] = devices
            write_json_atomic(out_dir / "result.json", document)
        written.append(out_dir / "result.json")
    if "overlay" in formats:
        with _writing("overlay.png"):
            people = [reconstruction.keypoints.people[i] for i in reconstruction.person_indices]
            picture = overlay_picture(camera, people, reconstruction.people, meshes,
                                      read_photo(reconstruction.keypoints))
            write_png(out_dir / "overlay.png", picture)
        written.append(out_dir / "overlay.png")
    if "mask" in formats:
        with _writing("mask.png"):
            write_png(out_dir / "mask.png", mask_picture(camera, meshes))
        written.append(out_dir / "mask.png")
    if any(f in formats for f in BLENDER_FORMATS):
        with quiet_blender():
            written += write_blender_outputs(out_dir, reconstruction, formats, export)
    return written


def prosthesis_entries(reconstruction, arm_terminal: str, cover: bool = False) -> list[list[dict]]:
    """Per person, the prosthesis of every cut limb as result.json lists it (core/prosthesis.py on the core's cut
    rest mesh: kind, terminal device, parts and dimensions in metres); a limb that cannot take one gets its error."""
    import numpy as np
    import torch

    from .core.pipeline import PersonFailure
    from .core.prosthesis import ProsthesisError, fit_prosthesis, limb_type

    model, out = reconstruction.model, []
    for res, mesh in zip(reconstruction.people, reconstruction.meshes):
        if isinstance(res, PersonFailure) or mesh is None:
            out.append([])
            continue
        params = res.params()
        shape = {k: torch.tensor(np.asarray(params[k], dtype=np.float64)[None], dtype=model.dtype)
                 for k in ("betas", "expression") if params.get(k) is not None}
        with torch.no_grad():
            rest = model.forward(**shape)
        joints, intact = rest.rest_joints[0].double().numpy(), rest.vertices[0].double().numpy()
        entries = []
        for kind in mesh.measurements:
            try:
                device = fit_prosthesis(kind, mesh.rest_vertices, mesh.faces, mesh.weights, joints, intact,
                                        model.weights.double().numpy(),
                                        terminal=arm_terminal if limb_type(kind) == "arm" else None,
                                        with_cover=cover)
                entries.append(device.to_json())
            except ProsthesisError as exc:
                entries.append({"kind": kind, "error": str(exc)})
        out.append(entries)
    return out


def add_prostheses(obj, arm_terminal: str, cover: bool = False) -> None:
    """A device on every cut limb of the avatar (mesh/prosthesis.py; the limb's sidebar settings follow, so the
    saved .blend shows them); a limb that cannot take one is skipped."""
    from .core.prosthesis import ProsthesisError, limb_type
    from .mesh.cut import cut_state
    from .mesh.prosthesis import set_device

    for cut in cut_state(obj):
        try:
            set_device(obj, cut["kind"], True, terminal=arm_terminal if limb_type(cut["kind"]) == "arm" else None,
                       cover=cover)
        except ProsthesisError as exc:
            print(f"    warning: {obj.name} {cut['kind']}: no prosthesis ({exc})", file=sys.stderr)


def write_blender_outputs(out_dir: Path, reconstruction, formats,
                          export: ExportChoices = ExportChoices()) -> list[Path]:
    """Every fitted person as a live rigged, cut and marked avatar in a fresh scene (workflow.apply), saved; with
    a motion, each avatar plays it (its own action)."""
    with _writing("the Blender scene"):
        import bpy

        from .core.pipeline import PersonFailure
        from .mesh.animation import apply_motion
        from .properties import ensure_attached
        from .workflow import apply, export_avatar_file, show_photo_camera

        ensure_attached()
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        show_photo_camera(scene, reconstruction)
        avatars = []
        for p, res in enumerate(reconstruction.people):
            if isinstance(res, PersonFailure):
                continue
            arm, obj = apply(reconstruction, scene, person=p, name="ResiHMR" if p == 0 else f"ResiHMR_{p}")
            if export.prosthesis:
                add_prostheses(obj, export.prosthesis, export.prosthesis_cover)
            if export.motion is not None:
                poses, trans, rate = export.motion
                apply_motion(arm, poses, trans, rate)
            avatars.append((p, obj))
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmt in ("glb", "fbx"):
        if fmt in formats:
            for p, obj in avatars:
                path = out_dir / (f"avatar.{fmt}" if p == 0 else f"avatar_{p}.{fmt}")
                with _writing(path.name):
                    written.append(export_avatar_file(obj, path, fmt, animation=export.motion is not None,
                                                      pose=export.pose, preset=export.preset,
                                                      influences=export.influences))
    if "blend" in formats:
        target = out_dir / "avatar.blend"
        with _writing(target.name), atomic_path(target) as tmp:
            bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, check_existing=False, compress=True)
        written.append(target)
    return written


# ---------------------------------------------------------------------------------------------------------------
# The completion record


def remove_done_record(out_dir: Path) -> None:
    """Before a folder is (re)written: without its record it no longer counts as complete."""
    try:
        (Path(out_dir) / DONE_RECORD).unlink()
    except FileNotFoundError:
        pass


def write_done_record(out_dir: Path, written: Iterable[Path], fingerprint: dict, extra: dict | None = None) -> Path:
    """The last file written for an input: what was asked (`fingerprint`: input and model hashes, formats,
    settings) and what was written (name and size of every output)."""
    outputs = {}
    for path in written:
        path = Path(path)
        outputs[path.name] = {"bytes": path.stat().st_size}
    record = {"format": DONE_FORMAT, "fingerprint": fingerprint, "outputs": outputs,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}
    target = Path(out_dir) / DONE_RECORD
    write_text_atomic(target, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return target


def read_done_record(out_dir: Path) -> dict | None:
    try:
        record = json.loads((Path(out_dir) / DONE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == DONE_FORMAT else None


def complete(out_dir: Path, fingerprint: dict) -> tuple[bool, str]:
    """(True, why) when `out_dir` holds everything `fingerprint` asks for: a record for the same input, model and
    settings, with at least the requested formats, and every output it lists present with its recorded size."""
    record = read_done_record(out_dir)
    if record is None:
        return False, "no completion record"
    done = record.get("fingerprint")
    if not isinstance(done, dict):
        return False, "unreadable completion record"
    for key, value in fingerprint.items():
        if key == "formats":
            if not set(value) <= set(done.get("formats") or []):
                return False, "other formats were asked for"
        elif done.get(key) != value:
            return False, f"{key.replace('_', ' ')} changed"
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return False, "the completion record lists no outputs"
    for name, info in outputs.items():
        path = Path(out_dir) / name
        try:
            size = path.stat().st_size
        except OSError:
            return False, f"{name} is missing"
        if not isinstance(info, dict) or size != info.get("bytes"):
            return False, f"{name} changed since it was written"
    return True, "complete"
