"""What a fitted clip gives (issue 16): result.json's document, the gait table (CSV), the avatar's reference
frame, the motion, and the overlay pictures (frames, contact sheet, animated overlay).

No bpy here.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .body_model import JOINT_INDEX, BodyModel
from .keypoints import Person
from .residuals import RESIDUALS
from .sequence import SequenceFit

# ---------------------------------------------------------------------------------------------------------------
# What a fitted clip gives: the document, the gait table, the avatar's reference frame, the motion

SEQUENCE_FORMAT = "resihmr-sequence/1"
GAIT_COLUMNS = ("frame", "time_s", "status", "right_hip_flexion_deg", "left_hip_flexion_deg",
                "right_knee_flexion_deg", "left_knee_flexion_deg")


def _num(value, digits: int = 6):
    """JSON-safe: finite numbers rounded, nan/inf as null."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return round(float(arr), digits) if math.isfinite(arr) else None
    out = np.round(arr, digits).astype(object)
    out[~np.isfinite(arr)] = None
    return out.tolist()


def reference_result(fit: SequenceFit, model: BodyModel, row: int = 0):
    """The avatar's person: frame `row`'s pose with the clip's shape and the shared λ of every limb (cut once,
    from the shared λ, where the limb is accepted overall) -> pipeline.PersonResult."""
    from . import plausibility
    from .pipeline import PersonResult
    from .rafo import ResidualResult

    person = fit.person_fit(row, model.num_expression)
    residuals = [ResidualResult(
        kind=r.kind, lam=r.lam, anchor_3d=r.anchor_3d[row], anchor_init_3d=fit.joints_3d[row][
            JOINT_INDEX[next(k for k in RESIDUALS if k.name == r.kind).anchor_joint]],
        upstream_3d=r.upstream_3d[row], endpoint_3d=r.endpoint_3d[row], endpoint_2d=r.endpoint_2d[row],
        target_2d=np.nan_to_num(r.target_2d[row], nan=0.0) if r.shown[row] else r.endpoint_2d[row],
        reproj_error_px=float(r.median_error_px) if math.isfinite(r.median_error_px) else 0.0,
        accepted=r.accepted, alpha=math.nan, mu=math.nan) for r in fit.residuals]
    return PersonResult(fit=person, residuals=residuals, body_pose=person.body_pose, joints_3d=person.joints_3d,
                        body25_2d=person.body25_2d, timings_s=dict(fit.timings_s),
                        plausibility=plausibility.check(model, person.betas, person.joints_3d, person.fit_error_px,
                                                        person.reference_length_px))


def gait_angles(joints: np.ndarray) -> np.ndarray:
    """(T, 4) right/left hip flexion and right/left knee flexion in degrees from (T, 55, 3) joints: hip flexion
    is the thigh's angle from the trunk's downward axis in the trunk's sagittal plane (positive forwards), knee
    flexion the angle between thigh and shank (0 = straight)."""
    j = {name: joints[:, JOINT_INDEX[name]] for name in ("pelvis", "neck", "left_hip", "right_hip", "left_knee",
                                                          "right_knee", "left_ankle", "right_ankle")}
    lateral = j["left_hip"] - j["right_hip"]  # the subject's left
    lateral /= np.linalg.norm(lateral, axis=1, keepdims=True)
    up = j["neck"] - j["pelvis"]
    up -= (up * lateral).sum(1, keepdims=True) * lateral
    up /= np.linalg.norm(up, axis=1, keepdims=True)
    forward = np.cross(lateral, up)  # body frame: x left, y up, z forward
    out = []
    for side in ("right", "left"):
        thigh = j[f"{side}_knee"] - j[f"{side}_hip"]
        out.append(np.degrees(np.arctan2((thigh * forward).sum(1), -(thigh * up).sum(1))))
    for side in ("right", "left"):
        thigh = j[f"{side}_knee"] - j[f"{side}_hip"]
        shank = j[f"{side}_ankle"] - j[f"{side}_knee"]
        cos = (thigh * shank).sum(1) / (np.linalg.norm(thigh, axis=1) * np.linalg.norm(shank, axis=1))
        out.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.stack(out, 1)


def gait_csv(fit: SequenceFit) -> str:
    """Per frame (every frame of the clip): knee and hip angles of both sides; empty where the frame has no fit
    or the joint is gone (a transfemoral limb has no knee)."""
    angles = gait_angles(fit.joints_3d)
    no_knee = {k.limb.split("_")[0] for k in RESIDUALS if k.anchor_joint.endswith("knee")
               and any(r.kind == k.name for r in fit.residuals)}
    row_of = {i: t for t, i in enumerate(fit.fitted)}
    lines = [",".join(GAIT_COLUMNS)]
    for i, frame in enumerate(fit.sequence.frames):
        values = [""] * 4
        if i in row_of:
            a = angles[row_of[i]]
            values = [f"{a[0]:.2f}", f"{a[1]:.2f}", "" if "right" in no_knee else f"{a[2]:.2f}",
                      "" if "left" in no_knee else f"{a[3]:.2f}"]
        status = frame.status if i in row_of or frame.status != "ok" else "not fitted"
        time_s = (frame.number - fit.sequence.frames[0].number) / fit.sequence.fps
        lines.append(",".join([str(frame.number), f"{time_s:.4f}", status.replace(",", ";"), *values]))
    return "\n".join(lines) + "\n"


def sequence_document(fit: SequenceFit, model_info: dict, measurements: dict | None = None) -> dict:
    """result.json of a clip: the shared values, every frame (fitted or why not), per-limb λ with its spread."""
    seq, cam = fit.sequence, fit.camera
    row_of = {i: t for t, i in enumerate(fit.fitted)}
    frames = []
    for i, frame in enumerate(seq.frames):
        entry = {"frame": frame.number, "time_s": round((frame.number - seq.frames[0].number) / seq.fps, 6),
                 "file": frame.path, "status": frame.status if frame.status != "ok" or i in row_of else "not fitted"}
        if frame.reason:
            entry["reason"] = frame.reason
        if frame.person_index is not None:
            entry["person_index"] = frame.person_index
        if frame.person_id is not None:
            entry["person_id"] = frame.person_id
        t = row_of.get(i)
        if t is not None:
            entry.update(global_orient=_num(fit.global_orient[t]), body_pose=_num(fit.body_pose[t]),
                         transl=_num(fit.transl[t]), joints_3d=_num(fit.joints_3d[t]),
                         joints_2d_body25=_num(fit.body25_2d[t], 3), fit_error_px=round(float(fit.errors_px[t]), 4),
                         keypoints_used=[bool(u) for u in fit.used[t]],
                         residuals=[{"kind": r.kind, "endpoint_2d": _num(r.endpoint_2d[t], 3),
                                     "endpoint_3d": _num(r.endpoint_3d[t]), "tracked": not bool(r.shown[t]),
                                     "reproj_error_px": _num(r.errors_px[t], 4),
                                     "accepted": bool(r.frame_accepted[t]) if r.shown[t] else None,
                                     "lambda_single_frame": _num(r.lam_frames[t])} for r in fit.residuals])
        frames.append(entry)
    residuals = []
    for r in fit.residuals:
        entry = {"kind": r.kind, "lambda": round(r.lam, 6), "lambda_envelope": _num(r.lam_envelope),
                 "lambda_rafo_sum": _num(r.lam_rafo_sum), "accepted": r.accepted,
                 "median_reproj_error_px": _num(r.median_error_px, 4), "frames_shown": int(r.shown.sum()),
                 "frames_accepted": int(r.frame_accepted.sum()), "lambda_spread": r.spread(),
                 "residual_length_m": round(r.residual_length_m, 6)}
        if r.anchor_offset_m is not None:  # one anchor offset for the clip, in the upstream joint's bone frame
            entry["anchor_offset_m"] = _num(r.anchor_offset_m)
        if r.note:
            entry["note"] = r.note
        entry.update((measurements or {}).get(r.kind, {}))
        residuals.append(entry)
    return {"format": SEQUENCE_FORMAT, "source": str(Path(seq.folder).resolve()), "video": seq.video,
            "fps": seq.fps, "body_model": model_info, "image": {"width": cam.width, "height": cam.height},
            "camera": cam.to_json(), "coordinates": "camera frame, OpenCV convention (x right, y down, z forward), "
                                                   "metres",
            "frames_total": len(seq.frames), "frames_fitted": len(fit.fitted), "betas": _num(fit.betas),
            "residuals": residuals, "frames": frames, "warnings": list(seq.warnings),
            "timings_s": {k: round(v, 4) for k, v in fit.timings_s.items()}}


def motion(fit: SequenceFit) -> tuple[np.ndarray, np.ndarray, int]:
    """The clip as (poses (N, 55, 3) axis-angle with the camera-frame root, transl (N, 3), first frame number),
    N frames from the first fitted frame to the last; frames without a fit in between are interpolated (slerp
    per joint, linear translation) so the animation keeps the video's timing."""
    from .rotations import slerp

    numbers = np.array(fit.frame_numbers())
    poses_fit = np.zeros((len(numbers), 55, 3))
    poses_fit[:, 0] = fit.global_orient
    poses_fit[:, 1:22] = fit.body_pose.reshape(-1, 21, 3)
    count = int(numbers[-1] - numbers[0] + 1)
    poses, transl = np.zeros((count, 55, 3)), np.zeros((count, 3))
    for f in range(count):
        number = numbers[0] + f
        hi = int(np.searchsorted(numbers, number))
        if numbers[hi] == number:
            poses[f], transl[f] = poses_fit[hi], fit.transl[hi]
            continue
        lo = hi - 1
        t = (number - numbers[lo]) / (numbers[hi] - numbers[lo])
        poses[f] = slerp(poses_fit[lo], poses_fit[hi], t)
        transl[f] = (1 - t) * fit.transl[lo] + t * fit.transl[hi]
    return poses, transl, int(numbers[0])


def frame_pictures(fit: SequenceFit, model: BodyModel, mesh, rows, width: int, chunk: int = 32) -> list[np.ndarray]:
    """Fitted frames `rows` drawn like overlay.png (the avatar cut once, posed in that frame by linear blend
    skinning, residual limb red, input keypoints green, endpoints yellow, fitted keypoints blue), `width`
    pixels wide: drawn through a camera scaled to that size (not drawn large and shrunk)."""
    from types import SimpleNamespace

    from .overlay import overlay_picture

    cam = fit.camera
    s = width / cam.width
    small = cam.scaled(s)
    scale = np.array([s, s, 1.0])
    rows, dt, pictures = list(rows), model.dtype, []
    for first in range(0, len(rows), chunk):
        part = rows[first:first + chunk]
        with torch.no_grad():
            out = model.forward(betas=torch.tensor(fit.betas, dtype=dt).expand(len(part), -1),
                                global_orient=torch.tensor(fit.global_orient[part], dtype=dt),
                                body_pose=torch.tensor(fit.body_pose[part], dtype=dt),
                                transl=torch.tensor(fit.transl[part], dtype=dt))
        for t, transform in zip(part, out.transforms.double().numpy()):
            blended = np.einsum("vj,jab->vab", mesh.weights, transform)
            posed = (np.einsum("vab,vb->va", blended[:, :3, :3], mesh.rest_vertices) + blended[:, :3, 3]
                     + fit.transl[t])
            frame_mesh = SimpleNamespace(posed_vertices=posed, faces=mesh.faces, residual_mask=mesh.residual_mask)
            person = fit.sequence.frames[fit.fitted[t]].person
            person = Person(body25=person.body25 * scale, residual=person.residual * scale)
            result = SimpleNamespace(body25_2d=fit.body25_2d[t] * s, fit=SimpleNamespace(used=fit.used[t]))
            pictures.append(overlay_picture(small, [person], [result], [frame_mesh]))
    return pictures


def contact_sheet(fit: SequenceFit, model: BodyModel, mesh, tiles: int = 12, tile_width: int = 320,
                  columns: int = 4) -> tuple[np.ndarray, list[int]]:
    """Up to `tiles` fitted frames spread over the clip, drawn as frame_pictures `tile_width` wide and tiled row
    by row. Returns (H, W, 3) uint8 and the frame numbers shown, in order."""
    from .colours import BACKGROUND_GREY8

    rows = sorted(set(np.linspace(0, len(fit.fitted) - 1, min(tiles, len(fit.fitted))).round().astype(int)))
    pictures = frame_pictures(fit, model, mesh, rows, tile_width)
    height, width = pictures[0].shape[:2]
    n = len(rows)
    sheet = np.full((height * math.ceil(n / columns), width * min(columns, n), 3), BACKGROUND_GREY8, np.uint8)
    for k, tile in enumerate(pictures):
        r, c = divmod(k, columns)
        sheet[r * height:(r + 1) * height, c * width:(c + 1) * width] = tile
    return sheet, [fit.sequence.frames[fit.fitted[t]].number for t in rows]


def overlay_video(fit: SequenceFit, model: BodyModel, mesh, width: int = 480,
                  max_frames: int = 150) -> tuple[list[np.ndarray], list[int], list[int]]:
    """The clip's fitted frames drawn as frame_pictures (every k-th when there are more than `max_frames`: a frame
    costs ~0.1 s of CPU, mostly the mesh's rasterisation, so a 300-frame clip shows every second frame):
    (pictures, their frame numbers, how long each is shown in ms at the clip's frame rate, so that missing and
    skipped frames keep the video's timing)."""
    step = max(1, math.ceil(len(fit.fitted) / max_frames))
    rows = list(range(0, len(fit.fitted), step))
    numbers = [fit.sequence.frames[fit.fitted[t]].number for t in rows]
    ends = numbers[1:] + [numbers[-1] + step]
    durations = [max(1, round(1000.0 * (b - a) / fit.sequence.fps)) for a, b in zip(numbers, ends)]
    return frame_pictures(fit, model, mesh, rows, width), numbers, durations
