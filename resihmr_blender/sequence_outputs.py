"""Write a fitted clip's outputs (issue 16): result.json (`resihmr-sequence/1`), gait.csv, with overlay a contact
sheet (contact_sheet.png) and an animated overlay (overlay.webp: every fitted frame drawn over a grey picture at
the clip's timing) and, with glb/fbx, one avatar (built from the clip's shape, cut and sealed once from the
shared λ) carrying the motion as an action (Blender, imported only when asked for). Every file is written
atomically.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .core.atomic import write_text_atomic
from .exit_status import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .outputs import ExportChoices, _writing, check_target, quiet_blender

SEQUENCE_ACTION = "sequence_motion"


def planned(formats) -> list[str]:
    names = ["result.json", "gait.csv"] + (["contact_sheet.png", "overlay.webp"] if "overlay" in formats else [])
    return names + [f"avatar.{fmt}" for fmt in ("glb", "fbx") if fmt in formats]


def reconstruction_of(fit, model, settings):
    """The clip's reference frame (its first fitted frame) as a one-person pipeline.Reconstruction, meshes cut
    once from the shared λ: what workflow.apply builds the avatar from."""
    from .core.keypoints import KeypointsFile
    from .core.pipeline import Reconstruction, build_meshes, model_info
    from .core.sequence_document import reference_result

    result = reference_result(fit, model)
    meshes = build_meshes(model, [result], pose=True)
    frame = fit.sequence.frames[fit.fitted[0]]
    kfile = KeypointsFile(path=frame.path, people=[frame.person], image_width=fit.camera.width,
                          image_height=fit.camera.height, focal_length_px=fit.camera.focal_length)
    return Reconstruction(keypoints=kfile, camera=fit.camera, people=[result], meshes=meshes,
                          model_info=model_info(model), settings=settings, person_indices=[0], model=model)


def world_motion(fit, model) -> tuple[np.ndarray, np.ndarray]:
    """The clip's poses and translations turned from the fit's camera frame into the z-up world that
    mesh/animation.apply_motion takes (AMASS's): root M·R, translation M·(J0 + t) − J0 (frames.py)."""
    import torch

    from .core.rotations import aa_to_matrix, matrix_to_axis_angle
    from .core.sequence_document import motion
    from .mesh.frames import M

    poses, transl, _ = motion(fit)
    with torch.no_grad():
        j0 = model.rest_joints(torch.tensor(fit.betas, dtype=model.dtype)[None])[0, 0].double().numpy()
    poses = poses.copy()
    for f in range(len(poses)):
        poses[f, 0] = matrix_to_axis_angle(M @ aa_to_matrix(poses[f, 0]))
    return poses, (j0 + transl) @ M.T - j0


def write_sequence_outputs(out_dir: Path, fit, model, settings, formats, root: Path | None = None,
                           protect=(), export: ExportChoices | None = None, extra: dict | None = None) -> list[Path]:
    """Every output of one clip in out_dir; `extra` joins result.json (the detector's report with --detect)."""
    from .core.pipeline import model_info
    from .core.sequence_document import gait_csv, sequence_document

    out_dir, export = Path(out_dir), export or ExportChoices()
    for name in planned(formats):
        check_target(out_dir, name, root, protect)
    out_dir.mkdir(parents=True, exist_ok=True)
    rec = reconstruction_of(fit, model, settings)
    measurements = rec.people[0].measurements
    written = []
    shown = None
    if "overlay" in formats:
        with _writing("contact_sheet.png"):
            from .core.image import write_png
            from .core.sequence_document import contact_sheet

            picture, shown = contact_sheet(fit, model, rec.meshes[0])
            write_png(out_dir / "contact_sheet.png", picture)
        with _writing("overlay.webp"):
            video_frames = write_overlay_video(out_dir / "overlay.webp", fit, model, rec.meshes[0])
    with _writing("result.json"):
        document = sequence_document(fit, model_info(model), measurements)
        document.update(extra or {})
        if shown is not None:
            document["contact_sheet_frames"] = shown  # contact_sheet.png's tiles, row by row
            document["overlay_video_frames"] = video_frames  # overlay.webp's frames, in order
        write_text_atomic(out_dir / "result.json", json.dumps(document, indent=1, allow_nan=False) + "\n")
    written.append(out_dir / "result.json")
    with _writing("gait.csv"):
        write_text_atomic(out_dir / "gait.csv", gait_csv(fit))
    written.append(out_dir / "gait.csv")
    if shown is not None:
        written += [out_dir / "contact_sheet.png", out_dir / "overlay.webp"]
    if any(f in formats for f in ("glb", "fbx")):
        with quiet_blender():
            written += _write_avatar(out_dir, rec, fit, model, formats, export)
    return written


def write_overlay_video(path: Path, fit, model, mesh) -> list[int]:
    """The animated overlay (core/sequence_document.overlay_video) as an animated WebP, written atomically; returns the
    frame numbers it shows."""
    from PIL import Image

    from .core.atomic import atomic_path
    from .core.sequence_document import overlay_video

    pictures, numbers, durations = overlay_video(fit, model, mesh)
    images = [Image.fromarray(p) for p in pictures]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:], duration=durations, loop=0,
                       quality=80, method=3)
    return numbers


def _write_avatar(out_dir: Path, rec, fit, model, formats, export: ExportChoices) -> list[Path]:
    with _writing("the Blender scene"):
        import bpy

        from .mesh.animation import apply_motion
        from .properties import ensure_attached
        from .workflow import apply, export_avatar_file, show_photo_camera

        ensure_attached()
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        show_photo_camera(scene, rec)
        arm, obj = apply(rec, scene, person=0, name="ResiHMR")
        poses, trans = world_motion(fit, model)
        apply_motion(arm, poses, trans, fit.sequence.fps, name=SEQUENCE_ACTION)
    written = []
    for fmt in ("glb", "fbx"):
        if fmt in formats:
            path = out_dir / f"avatar.{fmt}"
            with _writing(path.name):
                written.append(export_avatar_file(obj, path, fmt, animation=True, pose=export.pose,
                                                  preset=export.preset, influences=export.influences))
    return written


def _print_detected(done: int, total: int, found: int) -> None:
    if done % 10 == 0 or done == total:
        print(f"    detected {done} of {total} frame(s), a person on {found}", flush=True)


def suggestion_lines(found) -> list[str]:
    """What the vote over a clip's frames made of each limb-loss suggestion (detect/frames.py), one line each."""
    lines = []
    for kind, n in found.votes.items():
        state = "declared" if kind in found.declared else (
            "not declared: on half the frames or fewer" if found.accepted
            else "not applied: accept the suggestions to declare it")
        lines.append(f"suggestion {kind} on {n} of {found.found} frame(s): {state}")
    return lines


def run_sequence_command(args, settings, safe_name, debug: bool = False) -> int:
    """`run --sequence DIR --out OUT [--fps 30] [--person N]`: one clip -> OUT/<folder name>/ (cli.py hands over
    its parsed flags, its settings and its folder-name rule). Exit status as `run`: 0 written, 1 the clip could
    not be fitted or written, 2 usage error (a bad folder, a bad flag)."""
    import os
    import sys
    import time

    from .core.body_model import load_body_model
    from .core.fit import FitError
    from .core.sequence import fit_sequence
    from .core.sequence_frames import SequenceError, frame_files, read_sequence
    from .outputs import one_line

    def fail(message: str, status: int, exc: BaseException | None = None) -> int:
        print(f"error: {message}", file=sys.stderr, flush=True)
        if exc is not None and debug:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        return status

    if args.inputs:
        return fail(f"--sequence takes one folder; also given: {' '.join(args.inputs)}", EXIT_USAGE)
    formats = [f.strip() for f in args.formats.split(",") if f.strip() in ("json", "overlay", "glb", "fbx")]
    folder = Path(args.sequence)
    detect = getattr(args, "detect", False)
    try:
        if detect:  # frame images: MediaPipe writes the per-frame files first
            from .detect.frames import frame_images

            _, files = frame_images(folder)
        else:
            _, files = frame_files(folder)
        model = load_body_model(args.model)
    except (SequenceError, OSError, ValueError) as exc:
        return fail(one_line(exc), EXIT_USAGE, exc)
    out_dir = Path(args.out) / safe_name(Path(os.path.abspath(folder)).name, "sequence")
    t0 = time.perf_counter()
    extra = {}
    if detect:
        from .detect.frames import detect_frames
        from .detect.mediapipe_pose import DetectError

        print(f"detecting {len(files)} frame(s) of {folder} -> {out_dir / 'keypoints'}", flush=True)
        try:
            found = detect_frames(folder, out_dir / "keypoints", person=args.person or 0,
                                  accept=args.accept_suggestions, progress=_print_detected)
        except (ValueError, OSError, DetectError) as exc:
            return fail(one_line(exc), EXIT_FAILED, exc)
        for line in suggestion_lines(found) + [why for _, why in sorted(found.failed.items())][:8]:
            print(f"    {line}", flush=True)
        extra["detector"] = found.report()
        folder = found.folder
    try:
        sequence = read_sequence(folder, person=0 if detect else args.person or 0, fps=args.fps,
                                 image_size=args.image_size)
        print(f"sequence {folder}: {len(sequence.frames)} frame(s), {len(sequence.usable())} with the person "
              f"-> {out_dir}", flush=True)
        fit = fit_sequence(model, sequence, settings)
        written = write_sequence_outputs(out_dir, fit, model, settings, formats, root=Path(args.out),
                                         protect=list(files.values()),
                                         export=ExportChoices(pose=args.pose, preset=args.preset,
                                                              influences=args.influences), extra=extra)
    except (SequenceError, FitError) as exc:
        return fail(one_line(exc), EXIT_FAILED, exc)
    except Exception as exc:  # never a traceback for the user; --debug shows it
        return fail(f"{folder}: {one_line(exc)}", EXIT_FAILED, exc)
    print(f"{len(fit.fitted)} of {len(sequence.frames)} frame(s) fitted in {time.perf_counter() - t0:.1f} s; "
          f"wrote {', '.join(p.name for p in written)}", flush=True)
    for r in fit.residuals:
        spread = r.spread()
        print(f"    {r.kind} λ={r.lam:.3f} (single frames: median {spread.get('median', float('nan')):.3f}, "
              f"std {spread.get('std', float('nan')):.3f}) median err={r.median_error_px:.1f}px "
              f"{'accepted' if r.accepted else 'REJECTED'} on {int(r.frame_accepted.sum())}/{int(r.shown.sum())} "
              "frames", flush=True)
    skipped = [f for f in sequence.frames if f.status != "ok"]
    if skipped:
        print(f"    {len(skipped)} frame(s) without a pose: " + "; ".join(
            f"{f.number} {f.status}" for f in skipped[:8]) + (" ..." if len(skipped) > 8 else ""), flush=True)
    for warning in sequence.warnings[:20]:
        print(f"    warning: {warning}", flush=True)
    return EXIT_OK


def _detected(folder: str, person: int, accept: bool, detections: str | None, progress):
    """A folder of frame images detected into `detections`/<folder name> (detect/frames.py), or None when the folder
    holds OpenPose frame files; UserError when it holds neither, or MediaPipe is missing."""
    from .core.sequence_frames import SequenceError, frame_files
    from .errors import UserError

    try:
        frame_files(folder)
        return None
    except SequenceError as no_files:
        from .detect.frames import FramesError, detect_frames, frame_images
        from .detect.mediapipe_pose import DetectError

        try:
            frame_images(folder)
        except FramesError:
            raise UserError(f"{no_files} (nor frame images to detect)") from None
        if detections is None:
            raise UserError(f"{folder}: frame images, but no folder for their detected keypoints") from None
        try:
            return detect_frames(folder, Path(detections) / Path(folder).resolve().name, person=person,
                                 accept=accept, progress=progress)
        except (FramesError, DetectError, OSError) as exc:  # DetectError: also "the [detect] extra is missing"
            raise UserError(str(exc)) from None


def load_sequence(context, folder: str, fps: float = 30.0, person: int = 0,
                  image_size: tuple[int, int] | None = None, accept_suggestions: bool = False,
                  detections: str | None = None):
    """The sidebar's *Load sequence*: read and fit the clip, build its one avatar (replacing the avatar called
    ResiHMR) playing the motion from frame 0. Everything is read and fitted before the scene changes. A folder of
    frame images instead of OpenPose files is detected first (MediaPipe, the [detect] extra; the keypoint files go
    to `detections`/<folder name>, `accept_suggestions` as --accept-suggestions). Returns (mesh object,
    SequenceFit, the frames' detection or None)."""
    from .core.sequence import fit_sequence
    from .core.sequence_frames import SequenceError, read_sequence
    from .errors import UserError
    from .mesh.animation import apply_motion
    from .preferences import resolve_body_model
    from .workflow import _photo_size, apply, settings_from_preferences, show_photo_camera

    scene, wm = context.scene, context.window_manager
    size = image_size or _photo_size(scene)
    wm.progress_begin(0, 100)  # on the cursor: the detection (a folder of images) to 50, the fit to 100
    try:
        found = _detected(folder, person, accept_suggestions, detections,
                          lambda done, total, _: wm.progress_update(int(50 * done / total)))
        if found is not None:
            folder, person, size = str(found.folder), 0, image_size  # the files carry the frames' size
        start = 0 if found is None else 50
        sequence = read_sequence(folder, person=person, fps=fps, image_size=size)
        settings = settings_from_preferences(context, size)
        model = resolve_body_model(context)
        fit = fit_sequence(model, sequence, settings,
                           progress=lambda stage, fraction: wm.progress_update(int(start + (100 - start) * fraction)))
    except SequenceError as exc:
        raise UserError(str(exc)) from None
    finally:
        wm.progress_end()
    rec = reconstruction_of(fit, model, settings)
    arm, obj = apply(rec, scene, person=0, name="ResiHMR")
    show_photo_camera(scene, rec)
    poses, trans = world_motion(fit, model)
    apply_motion(arm, poses, trans, fps, name=SEQUENCE_ACTION)
    scene.frame_set(0)
    return obj, fit, found
