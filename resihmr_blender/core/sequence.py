"""Keypoint sequences from video (issue 16): OpenPose's per-frame files -> one person followed across frames ->
one shape and one λ per residual limb for the whole clip, a pose per frame.

Reading (`read_sequence`): a folder of `<video>_<frame>_keypoints.json` (OpenPose's --write_json naming), in
frame order; a frame number with no file, a file that cannot be read, a frame without the followed person and
(later, in the fit) a frame with too few keypoints are *marked* with the reason, never fatal. The person is
followed by OpenPose's `person_id` when the file sets one (>= 0), else by the nearest keypoints to where they
were last seen (gated by their size, so a second person walking past is not taken).

Fitting (`fit_sequence`), all on the CPU and batched over frames. As in the photo fit (issue 12 item 4), the
intact keypoints alone place the body; residual endpoints only turn their segment's upstream joint, which moves
only the limb's ignored distal part, so declaring a residual limb never moves an intact joint of any frame:
1. key frames (every `key_every`-th usable frame) get the photo fit of their intact keypoints (fit.fit_people:
   the facing start, retries of other starts and limb poses where a keypoint stays far, staged LM);
2. the frames between them are fitted from the previous frame's result (warm start, one start, a few LM
   iterations), all segments between key frames at once, one frame step after the other;
3. a joint refinement over the whole clip: one shape shared by every frame, every frame's pose, the same
   robust data term (fit.FitObjective's own projection) and priors as the photo fit, plus acceleration (and,
   off by default, velocity) terms on the 3D keypoints (in the data term's units, percent of the torso): damped
   Gauss-Newton on every frame's pose at once (block-banded normal equations, solved exactly), then the shape
   (L-BFGS), then Gauss-Newton again; last, Gauss-Newton on the residual segments' upstream joints alone, in
   every frame, the endpoints now in the data term (the temporal terms carry a segment through frames without
   an endpoint);
4. RAFO over the clip (below), then the segment stage once more with each endpoint pulling the stump's tip at
   the clip's λ (a segment also tilts towards or away from the camera until a stump of that length reaches its
   endpoint), then RAFO again on those segments.
RAFO over the sequence: eq. 3-5 of every frame that shows the limb's endpoint, summed, with one λ per limb
shared by all frames and one anchor per frame (rafo.rafo_loss), or with SequenceConfig.anchor = "shared" one
anchor offset per limb for the clip, fixed in its upstream joint's bone frame (measured worse, see there). The
shared λ itself comes by default from what
only a clip can tell: a stump of one length seen at changing tilts projects to at most its length, so the upper
envelope of its projected lengths gives it (_envelope_lambda; measured 3x closer than eq. 3-5 with λ free, which
is kept in the result as lambda_rafo_sum); eq. 3-5 summed then place every frame's anchor at that λ. Acceptance
per frame (the endpoint's reprojection error below the threshold) and overall (the median over the frames that
show it).
Endpoints given on some frames only: the frames in between still ignore the limb's distal keypoints, and their
endpoint is tracked along the fitted segment at the shared λ (marked `tracked`).

No bpy here.
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import priors
from .body_model import JOINT_INDEX, BodyModel
from .camera import Camera
from .fit import (
    SEGMENT_ANCHOR,
    SEGMENT_UPSTREAM,
    FitConfig,
    FitError,
    FitObjective,
    PersonFit,
    _project,
    check_person,
    fit_people,
    keypoint_weights,
)
from .keypoints import KeypointsError, Person
from .keypoints_io import _load_json, read_keypoints
from .rafo import RafoConfig, endpoint, rafo_loss
from .residuals import RESIDUAL_KINDS, RESIDUALS, limb_conflict
from .rotations import aa_to_matrix

FRAME_NAME = re.compile(r"^(?P<video>.*)_(?P<frame>\d+)_keypoints\.json$")
# a frame's status: "ok" (fitted), or why it has no pose
MISSING_FILE, UNREADABLE, NO_PERSON, NOT_FOUND, TOO_FEW = (
    "missing file", "unreadable", "no person", "person not found", "too few keypoints")
# the refinement's trust region: a step's mean keypoint move in a frame, x the robust scale. Measured on four
# seed-23 clips: 0.5 -> sitting 12.2 px, 1.0 -> 5.9 px, 2.0 -> 6.9 px, none -> 22.6 px (walking clips equal)
STEP_REACH = 1.0
UNDECLARED = 1e-3  # confidence of a residual limb declared on other frames: its distal points are ignored here
# (fit.keypoint_weights treats conf > 0 as declared) while the endpoint itself weighs nothing (< min_confidence)


class SequenceError(ValueError):
    """A sequence that cannot be read or fitted at all; the message is one line naming the folder or file."""


@dataclass
class Frame:
    number: int  # the frame number in the file name
    path: str | None
    person: Person | None = None  # the followed person's keypoints in this frame
    status: str = "ok"
    reason: str = ""
    person_index: int | None = None  # which person of the file it was
    person_id: int | None = None  # OpenPose's person_id, when set


@dataclass
class Sequence:
    folder: str
    video: str
    frames: list[Frame]
    fps: float
    image_size: tuple[int, int] | None
    focal_length_px: float | None
    warnings: list[str] = field(default_factory=list)

    def usable(self) -> list[int]:
        return [i for i, f in enumerate(self.frames) if f.person is not None and f.status == "ok"]

    def residual_kinds(self) -> list[str]:
        """The residual limbs declared on any frame (the same person has them on every frame)."""
        present = np.zeros(len(RESIDUAL_KINDS), bool)
        for f in self.frames:
            if f.person is not None:
                present |= f.person.residual[:, 2] >= 0.05
        return [k for k, p in zip(RESIDUAL_KINDS, present) if p]


# ---------------------------------------------------------------------------------------------------------------
# Reading


def frame_files(folder: str | os.PathLike) -> tuple[str, dict[int, Path]]:
    """(video name, {frame number: file}) of a folder of OpenPose per-frame files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SequenceError(f"{folder}: not a folder (--sequence takes the folder of OpenPose's "
                            "<video>_<frame>_keypoints.json files)")
    videos: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = FRAME_NAME.match(path.name)
        if match is None or path.name.startswith(".") or not path.is_file():
            continue
        frames = videos.setdefault(match["video"], {})
        number = int(match["frame"])
        if number in frames:
            raise SequenceError(f"{path}: frame {number} also given by {frames[number].name}")
        frames[number] = path
    if not videos:
        raise SequenceError(f"{folder}: no OpenPose frame files (<video>_<frame>_keypoints.json) in this folder")
    if len(videos) > 1:
        names = ", ".join(sorted(repr(v) for v in videos))
        raise SequenceError(f"{folder}: frames of {len(videos)} videos ({names}); give a folder holding one")
    video, frames = next(iter(videos.items()))
    return video, frames


def _person_ids(path: Path) -> list[int | None]:
    """OpenPose's person_id per person (an int or a one-element list; -1 = not tracked), None when unset."""
    doc = _load_json(str(path))
    out: list[int | None] = []
    for entry in doc.get("people", []) if isinstance(doc, dict) else []:
        value = entry.get("person_id") if isinstance(entry, dict) else None
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else None
        out.append(int(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                   and math.isfinite(value) and value >= 0 else None)
    return out


def _size(person: Person) -> float:
    """The diagonal of the person's keypoint box, in pixels (the tracking gate's scale)."""
    seen = person.body25[person.body25[:, 2] > 0, :2]
    return float(np.linalg.norm(np.ptp(seen, axis=0))) if len(seen) >= 2 else 0.0


def _distance(a: Person, b: Person) -> float:
    """Mean pixel distance over the body keypoints both show (inf with fewer than 3 in common)."""
    both = (a.body25[:, 2] > 0) & (b.body25[:, 2] > 0)
    if both.sum() < 3:
        return math.inf
    return float(np.linalg.norm(a.body25[both, :2] - b.body25[both, :2], axis=1).mean())


def read_sequence(folder: str | os.PathLike, person: int = 0, fps: float = 30.0,
                  image_size: tuple[int, int] | None = None, gate: float = 0.25) -> Sequence:
    """Read a folder of OpenPose per-frame files and follow one person (person `person` of the first frame that
    shows anyone). `gate`: a person farther than this x their size (per frame since last seen, at most 4x)
    from where the followed person was last seen is someone else."""
    if not (math.isfinite(fps) and fps > 0):
        raise SequenceError(f"frame rate must be a positive number, got {fps!r}")
    video, files = frame_files(folder)
    first, last = min(files), max(files)
    frames: list[Frame] = []
    warnings: list[str] = []
    size: tuple[int, int] | None = image_size
    focal = None
    target_id: int | None = None
    last_seen: tuple[int, Person] | None = None
    for number in range(first, last + 1):
        path = files.get(number)
        if path is None:
            frames.append(Frame(number, None, status=MISSING_FILE, reason=f"no file for frame {number}"))
            continue
        try:
            kfile = read_keypoints(path, image_size)
            ids = _person_ids(path)
        except (KeypointsError, OSError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            frames.append(Frame(number, str(path), status=UNREADABLE, reason=text))
            warnings.append(f"frame {number} skipped: {text}")
            continue
        warnings += [f"frame {number}: {w}" for w in kfile.warnings]
        if size is None and kfile.image_size is not None:
            size = kfile.image_size
        elif kfile.image_size is not None and image_size is None and kfile.image_size != size:
            raise SequenceError(f"{path}: image size {kfile.image_size[0]}x{kfile.image_size[1]} differs from the "
                                f"earlier frames' {size[0]}x{size[1]}; one video has one size")
        focal = focal or kfile.focal_length_px
        frame = Frame(number, str(path))
        frames.append(frame)
        if not kfile.people:
            frame.status, frame.reason = NO_PERSON, "nobody in this frame"
            continue
        if last_seen is None:  # the first frame with people: the user's choice
            if person >= len(kfile.people):
                raise SequenceError(f"{path}: person {person} does not exist (the first frame with people holds "
                                    f"{len(kfile.people)})")
            choice = person
            target_id = ids[choice] if choice < len(ids) else None
        elif target_id is not None:
            choice = next((i for i, pid in enumerate(ids) if pid == target_id), None)
            if choice is None:
                frame.status, frame.reason = NOT_FOUND, f"person_id {target_id} not in this frame"
                continue
        else:
            seen_at, seen = last_seen
            distances = [_distance(seen, p) for p in kfile.people]
            choice = int(np.argmin(distances))
            allowed = gate * max(_size(seen), 20.0) * min(number - seen_at, 4)
            if not distances[choice] <= allowed:
                frame.status = NOT_FOUND
                frame.reason = (f"no person within {allowed:.0f} px of where the followed person was last seen "
                                f"(frame {seen_at})")
                continue
        frame.person, frame.person_index = kfile.people[choice], choice
        frame.person_id = ids[choice] if choice < len(ids) else None
        if int((frame.person.body25[:, 2] > 0).sum()) >= 3:  # where they were seen: only with something seen
            last_seen = (number, frame.person)
        elif last_seen is None:  # the first choice needs keypoints to be followed: choose again next frame
            frame.person, frame.status, frame.reason = None, TOO_FEW, "the chosen person shows no keypoints here"
    if last_seen is None:
        raise SequenceError(f"{folder}: no frame shows a person ({len(files)} frame files)")
    sequence = Sequence(str(Path(folder)), video, frames, float(fps), size, focal, warnings)
    conflict = limb_conflict(sequence.residual_kinds())
    if conflict is not None:
        raise SequenceError(f"{folder}: residual limbs {conflict[0]} and {conflict[1]} declared on different "
                            "frames share one limb; one limb takes one residual kind")
    return sequence


# ---------------------------------------------------------------------------------------------------------------
# Fitting


@dataclass
class SequenceConfig:
    key_every: int = 20  # a photo fit (fit.fit_people with its retries) on every n-th usable frame
    warm_iters: int = 4  # LM iterations for a frame started from the previous frame's result
    refine_iters: int = 4  # Gauss-Newton iterations of the joint refinement, before the shape (0: none)
    final_iters: int = 2  # ... and after it
    segment_iters: int = 4  # ... then on the residual segments' upstream joints alone
    # temporal terms on the 3D BODY_25 points, per point and frame, in (percent of the torso)² like the data term:
    # velocity (P_t − P_t−1) and acceleration (P_t−1 − 2 P_t + P_t+1), only across consecutive fitted frames
    velocity_weight: float = 0.0
    acceleration_weight: float = 2.0
    max_gap: int = 1  # frames further apart than this are not linked by the temporal terms
    # the shared λ: "envelope" (the shortest stump reaching the frames' endpoints, at this percentile of the
    # projected lengths) or "rafo" (eq. 3-5 summed with λ free); see _envelope_lambda for the measurements
    lambda_from: str = "envelope"
    envelope_percentile: float = 75.0
    # the anchors of eq. 4: "frame" (one per frame) or "shared" (one offset per limb for the clip, in the bone
    # frame of the limb's upstream joint). Measured (bench_sequence, 4 people per motion, with retilt): shared
    # reaches the true endpoint worse (6.3 / 8.5 / 3.6 px against 3.5 / 3.6 / 3.3 walking / sitting / reaching):
    # the fitted tilt still varies from frame to frame in ways one offset cannot follow
    anchor: str = "frame"
    # after λ: the segment stage again with each endpoint pulling the stump's tip at the clip's λ, then RAFO
    # again (_retilt). Measured (bench_sequence, 4 people per motion): the endpoint against the true endpoint
    # 3.87 -> 3.54 px walking, 3.95 -> 3.61 sitting down, 3.64 -> 3.29 reaching, jitter and λ unchanged; +7 % CPU
    retilt: bool = True


@dataclass
class SequenceResidual:
    """One residual limb over the whole clip (arrays one row per fitted frame)."""

    kind: str
    lam: float  # shared by every frame
    accepted: bool  # overall: the median endpoint error over the frames that show it is below the threshold
    shown: np.ndarray  # (T,) bool: the frame gave the endpoint (and it does not contradict its limb)
    errors_px: np.ndarray  # (T,) endpoint reprojection error where shown, nan elsewhere
    frame_accepted: np.ndarray  # (T,) bool: shown and below the threshold
    lam_frames: np.ndarray  # (T,) single-frame RAFO λ where shown, nan elsewhere (the spread)
    endpoint_2d: np.ndarray  # (T, 2): optimised where shown, tracked along the fitted segment elsewhere
    anchor_3d: np.ndarray  # (T, 3)
    upstream_3d: np.ndarray  # (T, 3)
    endpoint_3d: np.ndarray  # (T, 3)
    target_2d: np.ndarray  # (T, 2), nan where not shown
    median_error_px: float
    note: str = ""
    lam_rafo_sum: float = math.nan  # eq. 3-5 summed over the frames with λ free (from λ = 0.5)
    lam_envelope: float = math.nan  # the shortest stump reaching the frames (see _envelope_lambda)
    anchor_offset_m: np.ndarray | None = None  # (3,) the clip's one anchor offset in the upstream joint's bone
    # frame (SequenceConfig.anchor == "shared"), None with one anchor per frame

    @property
    def residual_length_m(self) -> float:
        """Upstream joint to stump tip, the median over the frames."""
        return float(np.median(np.linalg.norm(self.upstream_3d - self.endpoint_3d, axis=1)))

    def spread(self) -> dict:
        lam = self.lam_frames[np.isfinite(self.lam_frames)]
        if not len(lam):
            return {"frames": 0}
        q25, q75 = np.percentile(lam, [25, 75])
        return {"frames": int(len(lam)), "std": float(lam.std()), "iqr": float(q75 - q25), "min": float(lam.min()),
                "max": float(lam.max()), "median": float(np.median(lam))}


@dataclass
class SequenceFit:
    sequence: Sequence
    camera: Camera
    fitted: list[int]  # indices into sequence.frames, one per row of the arrays below
    betas: np.ndarray  # (K,) one shape for the clip
    global_orient: np.ndarray  # (T, 3)
    body_pose: np.ndarray  # (T, 63)
    transl: np.ndarray  # (T, 3)
    joints_3d: np.ndarray  # (T, 55, 3) camera frame
    body25_3d: np.ndarray  # (T, 25, 3) camera frame
    body25_2d: np.ndarray  # (T, 25, 2)
    used: np.ndarray  # (T, 25) bool: keypoints that drove the fit
    errors_px: np.ndarray  # (T,) mean reprojection error over the used keypoints
    residuals: list[SequenceResidual]
    reference_length_px: np.ndarray  # (T,) the 2D torso length per frame
    timings_s: dict = field(default_factory=dict)

    def frame_numbers(self) -> list[int]:
        return [self.sequence.frames[i].number for i in self.fitted]

    def person_fit(self, row: int, num_expression: int = 10) -> PersonFit:
        """Frame `row` as a photo fit (what the avatar and result_json build from)."""
        return PersonFit(betas=self.betas.copy(), global_orient=self.global_orient[row].copy(),
                         body_pose=self.body_pose[row].copy(), transl=self.transl[row].copy(),
                         expression=np.zeros(num_expression), camera=self.camera, joints_3d=self.joints_3d[row].copy(),
                         body25_3d=self.body25_3d[row].copy(), body25_2d=self.body25_2d[row].copy(),
                         used=self.used[row].copy(),
                         fit_error_px=float(self.errors_px[row]),
                         reference_length_px=float(self.reference_length_px[row]))


def _camera(sequence: Sequence, settings) -> Camera:
    width, height = settings.image_size or sequence.image_size or (None, None)
    if not width or not height:
        raise SequenceError(f"{sequence.folder}: image size unknown (OpenPose's files do not hold it): pass "
                            "--image-size WIDTHxHEIGHT")
    return Camera.for_image(int(width), int(height), settings.focal_length_px or sequence.focal_length_px)


def _declared(person: Person, flags: np.ndarray, min_confidence: float) -> Person:
    """The person with every residual limb of the clip declared: given endpoints kept, the others at UNDECLARED."""
    residual = person.residual.copy()
    given = residual[:, 2] >= min_confidence
    residual[~given] = 0.0
    residual[flags & ~given] = [0.0, 0.0, UNDECLARED]
    return Person(body25=person.body25, residual=residual, body25_available=person.body25_available,
                  source_format=person.source_format)


def _rows_of(fit: PersonFit) -> np.ndarray:
    return np.concatenate([fit.global_orient, fit.transl, fit.betas, fit.body_pose])


def fit_sequence(model: BodyModel, sequence: Sequence, settings=None, config: SequenceConfig | None = None,
                 progress=None) -> SequenceFit:
    """One shape, one λ per residual limb, a pose per usable frame (see the module docstring). Torch threads:
    the settings' number, else one — the per-frame batches are small and on a shared 2-core machine two threads
    made a 300-frame clip 5.5x slower (168 s against 31 s at load average 4-6)."""
    previous = torch.get_num_threads()
    torch.set_num_threads((settings.fit.num_threads if settings is not None else 0) or 1)
    try:
        return _fit_sequence(model, sequence, settings, config, progress)
    finally:
        torch.set_num_threads(previous)


def _fit_sequence(model: BodyModel, sequence: Sequence, settings, config: SequenceConfig | None,
                  progress) -> SequenceFit:
    from .settings import Settings

    settings = settings or Settings()
    config = config or SequenceConfig()
    fit_cfg, rafo_cfg = settings.fit, settings.rafo
    report = progress or (lambda stage, fraction: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    camera = _camera(sequence, settings)
    flags = np.isin(RESIDUAL_KINDS, sequence.residual_kinds())
    fitted, people, inits = [], [], []
    for i in sequence.usable():
        frame = sequence.frames[i]
        person = _declared(frame.person, flags, fit_cfg.min_confidence)
        weights = keypoint_weights(person, fit_cfg)
        try:
            top, bottom = check_person(person, weights)
        except FitError as exc:
            frame.status, frame.reason = TOO_FEW, str(exc)
            continue
        res_w = person.residual[:, 2] * (person.residual[:, 2] >= fit_cfg.min_confidence)
        kp = np.concatenate([person.body25[:, :2], person.residual[:, :2]])
        length = float(np.linalg.norm(kp[top].mean(0) - kp[bottom].mean(0)))
        fitted.append(i)
        people.append(person)
        inits.append((kp, np.concatenate([weights, res_w if fit_cfg.residual_segments else np.zeros(8)]), length))
    if not fitted:
        reasons = sorted({f.reason for f in sequence.frames if f.status != "ok"})
        raise SequenceError(f"{sequence.folder}: no frame can be fitted ({'; '.join(reasons)[:300]})")
    n = len(fitted)
    dtype = model.dtype
    kp = torch.tensor(np.stack([k for k, _, _ in inits]), dtype=dtype)
    w = torch.tensor(np.stack([wt for _, wt, _ in inits]), dtype=dtype)
    lengths = np.array([max(length, 1.0) for _, _, length in inits])
    scale = torch.tensor(lengths / 100.0, dtype=dtype)
    focal = torch.full((n,), float(camera.focal_length), dtype=dtype)
    centre = torch.tensor([camera.principal_point] * n, dtype=dtype)
    numbers = np.array([sequence.frames[i].number for i in fitted])

    # 1. key frames: the photo fit
    step = max(1, int(config.key_every))
    keys = list(range(0, n, step))
    report("fit", 0.05)
    # the photo fit of the intact keypoints alone (every residual limb declared, no endpoint given): the
    # segments turn once, over the whole clip, in the refinement's last stage
    key_fits = fit_people(model, [_declared(people[k], flags, math.inf) for k in keys], [camera] * len(keys),
                          fit_cfg)
    x = torch.zeros(n, 6 + model.num_betas + 63, dtype=dtype)
    for k, fit in zip(keys, key_fits):
        x[k] = torch.tensor(_rows_of(fit), dtype=dtype)
    shared = np.median(np.stack([f.betas for f in key_fits]), axis=0)
    timings["key_frames"] = time.perf_counter() - t0

    # 2. the frames in between, each from the previous frame's result, every segment at once; as in the photo
    # fit, the intact keypoints alone place the body (residual endpoints turn their segments in step 3)
    t1 = time.perf_counter()
    w_intact = w.clone()
    w_intact[:, 25:] = 0.0
    priors_final = (fit_cfg.pose_weights[-1], fit_cfg.shape_weights[-1])
    for offset in range(1, step):
        rows = [k + offset for k in keys if k + offset < n]
        if not rows:
            break
        start = x[[r - 1 for r in rows]].clone()
        start[:, 6:6 + model.num_betas] = torch.tensor(shared, dtype=dtype)
        objective = FitObjective(model, kp[rows], focal[rows], centre[rows], scale[rows], fit_cfg)
        x[rows] = objective.solve(start, w_intact[rows], priors_final, config.warm_iters)
        report("fit", 0.05 + 0.35 * offset / step)
    timings["warm_frames"] = time.perf_counter() - t1

    # 3. the joint refinement: one shape, every pose, temporal terms
    t2 = time.perf_counter()
    betas = torch.tensor(np.median(x[:, 6:6 + model.num_betas].numpy(), axis=0), dtype=dtype)
    x = _refine(model, x, betas, kp, w, focal, centre, scale, numbers, fit_cfg, config)
    timings["refine"] = time.perf_counter() - t2
    report("rafo", 0.8)

    orient, transl, betas_t, pose = x[:, :3], x[:, 3:6], x[0, 6:6 + model.num_betas], x[:, 6 + model.num_betas:]
    with torch.no_grad():
        out = model.joints_only(betas=betas_t.expand(n, -1), global_orient=orient, body_pose=pose, transl=transl)
    joints = out.joints.numpy().astype(np.float64)
    body2d = camera.project_np(out.body25.numpy())
    used = (w[:, :25] > 0).numpy()
    err = np.linalg.norm(body2d - kp[:, :25].numpy(), axis=-1)
    errors = np.array([err[t][used[t]].mean() for t in range(n)])
    t3 = time.perf_counter()
    if config.lambda_from not in ("envelope", "rafo"):
        raise SequenceError(f"lambda_from must be 'envelope' or 'rafo', got {config.lambda_from!r}")
    if config.anchor not in ("frame", "shared"):
        raise SequenceError(f"anchor must be 'frame' or 'shared', got {config.anchor!r}")
    rotations = bone_rotations(orient.numpy(), pose.numpy(), model.parents)
    residuals = sequence_rafo(people, joints, camera, errors, rafo_cfg, fit_cfg.min_confidence, flags,
                              sequence.warnings, numbers, config.envelope_percentile, config.lambda_from,
                              rotations, config.anchor)
    timings["rafo"] = time.perf_counter() - t3
    if config.retilt and residuals:
        t4 = time.perf_counter()
        lams = np.zeros(len(RESIDUALS))
        for r in residuals:
            lams[RESIDUAL_KINDS.index(r.kind)] = r.lam
        x = _retilt(model, x, kp, w, focal, centre, scale, numbers, fit_cfg, config, lams)
        orient, transl, pose = x[:, :3], x[:, 3:6], x[:, 6 + model.num_betas:]
        with torch.no_grad():
            out = model.joints_only(betas=betas_t.expand(n, -1), global_orient=orient, body_pose=pose,
                                    transl=transl)
        joints = out.joints.numpy().astype(np.float64)
        body2d = camera.project_np(out.body25.numpy())
        rotations = bone_rotations(orient.numpy(), pose.numpy(), model.parents)
        residuals = sequence_rafo(people, joints, camera, errors, rafo_cfg, fit_cfg.min_confidence, flags,
                                  [], numbers, config.envelope_percentile, config.lambda_from, rotations,
                                  config.anchor)
        timings["retilt"] = time.perf_counter() - t4
    timings["total"] = time.perf_counter() - t0
    report("done", 1.0)
    return SequenceFit(sequence=sequence, camera=camera, fitted=fitted, betas=betas_t.numpy().astype(np.float64),
                       global_orient=orient.numpy().astype(np.float64), body_pose=pose.numpy().astype(np.float64),
                       transl=transl.numpy().astype(np.float64), joints_3d=joints,
                       body25_3d=out.body25.numpy().astype(np.float64), body25_2d=body2d, used=used,
                       errors_px=errors, residuals=residuals, reference_length_px=lengths, timings_s=timings)


def _refine(model: BodyModel, x: torch.Tensor, betas: torch.Tensor, kp, w, focal, centre, scale, numbers,
            fit_cfg: FitConfig, config: SequenceConfig) -> torch.Tensor:
    """The whole clip at once, in the photo fit's order (fit.py, issue 12 item 4): the intact keypoints alone
    place the body, then each residual endpoint turns only its segment's upstream joint, which moves only the
    limb's ignored distal part, so declaring a residual limb never moves the intact body.
    Intact stage: damped Gauss-Newton (Levenberg-Marquardt) on every frame's orientation, translation and pose
    with the temporal terms, the shape held; then the one shape for all frames (L-BFGS on the betas alone); then
    Gauss-Newton again. Segment stage: Gauss-Newton on the upstream joints' rotations of the declared limbs, in
    every frame (the temporal terms on the distal points carry a segment through the frames without an endpoint).
    The temporal terms couple a frame with its two neighbours on each side, so the normal equations are
    block-banded: solved exactly by a block-tridiagonal elimination over pairs of frames (no dense system of the
    whole clip). Why not L-BFGS on everything: the chain of temporal terms is stiff (condition grows with the
    clip's length); measured, 80 L-BFGS iterations left depth jitter of ±20 cm."""
    n, nb = x.shape[0], model.num_betas
    rows = torch.cat([x[:, :6], x[:, 6 + nb:]], 1).clone()
    to_units, terms = _clip_terms(x, focal, scale, numbers, config)
    intact_w = w.clone()
    intact_w[:, 25:] = 0.0
    if config.refine_iters > 0:
        intact = _ClipProblem(model, kp, intact_w, focal, centre, scale, to_units, terms, fit_cfg)
        rows = intact.gauss_newton(rows, betas, config.refine_iters)
        betas = intact.fit_shape(rows, betas)
        rows = intact.gauss_newton(rows, betas, config.final_iters)
    free = _segment_columns(w)
    if len(free) and config.segment_iters > 0:
        segments = _ClipProblem(model, kp, w, focal, centre, scale, to_units, terms, fit_cfg)
        rows = segments.gauss_newton(rows, betas, config.segment_iters, free=free)
    return torch.cat([rows[:, :6], betas.expand(n, -1), rows[:, 6:]], 1)


def _clip_terms(x, focal, scale, numbers, config: SequenceConfig):
    """(metres -> percent of the torso, the temporal terms (weight, coefficients, first frame of each linked
    run)). One unit factor for the clip: a per-frame factor would carry the initial depth's jitter into the
    temporal terms."""
    depth = x[:, 5].clamp(min=0.5)
    to_units = (focal / (depth * scale)).median().expand(x.shape[0]).clone()
    gap = np.diff(numbers)
    terms = []
    if config.velocity_weight > 0:
        terms.append((config.velocity_weight, (-1.0, 1.0), np.nonzero(gap <= config.max_gap)[0]))
    if config.acceleration_weight > 0:
        ok = (gap[:-1] <= config.max_gap) & (gap[1:] <= config.max_gap)
        terms.append((config.acceleration_weight, (1.0, -2.0, 1.0), np.nonzero(ok)[0]))
    return to_units, terms


def _segment_columns(w) -> torch.Tensor:
    """The columns of a row [orient 3 | transl 3 | body_pose 63] (body_pose: joints 1..21) that turn the
    upstream joint of every residual segment with an endpoint in some frame."""
    limbs = np.nonzero((w[:, 25:] > 0).any(0).numpy())[0]
    return torch.tensor(sorted({6 + 3 * (SEGMENT_UPSTREAM[k] - 1) + i for k in limbs for i in range(3)}),
                        dtype=torch.long)


def _retilt(model: BodyModel, x, kp, w, focal, centre, scale, numbers, fit_cfg: FitConfig, config: SequenceConfig,
            lams: np.ndarray) -> torch.Tensor:
    """The segment stage again, now that the clip's λ per limb is known: each endpoint pulls the stump's tip
    (eq. 3 on the model's joints, R = Ja + λ (Jt − Ja)) instead of the point of the segment at its distance, so a
    segment also tilts towards or away from the camera until the stump of the clip's length reaches it."""
    n, nb = x.shape[0], model.num_betas
    rows = torch.cat([x[:, :6], x[:, 6 + nb:]], 1).clone()
    betas = x[0, 6:6 + nb]
    to_units, terms = _clip_terms(x, focal, scale, numbers, config)
    problem = _ClipProblem(model, kp, w, focal, centre, scale, to_units, terms, fit_cfg,
                           tips=torch.tensor(lams, dtype=x.dtype))
    rows = problem.gauss_newton(rows, betas, config.segment_iters, free=_segment_columns(w))
    return torch.cat([rows[:, :6], betas.expand(n, -1), rows[:, 6:]], 1)


class _Kept:
    """The body model, keeping its last joints_only output: the data term is the photo fit's own
    (FitObjective._project_rows, which runs the forward) and the temporal terms read that same forward's 3D
    points, so one forward serves both."""

    def __init__(self, model: BodyModel):
        self.model, self.last = model, None

    def __getattr__(self, name):
        return getattr(self.model, name)

    def joints_only(self, **params):
        self.last = self.model.joints_only(**params)
        return self.last


class _ClipProblem:
    """The joint objective of a clip: per frame the fit's robust data term and priors (fit.FitObjective), plus
    temporal terms Σ w ||Σ_i c_i Q_t+i||² on the frames' 3D BODY_25 points Q (in percent of the torso)."""

    def __init__(self, model, kp, w, focal, centre, scale, to_units, terms, fit_cfg: FitConfig, tips=None):
        self.tips = tips  # (8,) λ per residual kind: endpoints pull the stump's tip (see _retilt), else None
        self.kept = _Kept(model)
        self.objective = FitObjective(self.kept, kp, focal, centre, scale, fit_cfg)
        self.model, self.kp, self.w, self.focal, self.centre, self.scale = model, kp, w, focal, centre, scale
        self.to_units, self.terms, self.cfg = to_units, terms, fit_cfg
        self.sigma2 = fit_cfg.robust_sigma ** 2
        self.pose_w = fit_cfg.pose_weights[-1]
        self.shape_w = fit_cfg.shape_weights[-1]
        self.mean = priors.POSE_MEAN.to(kp.dtype)
        self.l2 = priors.L2_WEIGHTS.to(kp.dtype)

    @staticmethod
    def _x(rows, betas):
        """FitObjective's row layout [orient 3 | transl 3 | betas K | body_pose 63]."""
        return torch.cat([rows[:, :6], betas.expand(rows.shape[0], -1), rows[:, 6:]], 1)

    def project(self, x, focal, centre, kp):
        """(the 33 model points matching the targets, the same forward's 3D BODY_25 points)."""
        proj = self.objective._project_rows(x, focal, centre, kp)
        out, self.kept.last = self.kept.last, None
        if self.tips is not None:
            start, end = out.joints[:, SEGMENT_UPSTREAM], out.joints[:, SEGMENT_ANCHOR]
            tip = end + self.tips[None, :, None] * (start - end)
            proj = torch.cat([proj[:, :25], _project(tip, focal, centre)], 1)
        return proj, out.body25

    def data(self, rows, betas):
        """(squared errors (T, 33) in (percent of the torso)², the forward's 3D BODY_25 points (T, 25, 3))."""
        proj, body25 = self.project(self._x(rows, betas), self.focal, self.centre, self.kp)
        return ((proj - self.kp) ** 2).sum(-1) / self.scale[:, None] ** 2, body25

    def cost(self, rows, betas, points: bool = False):
        """The objective; with `points`, also the projected model points (T, 33, 2)."""
        proj, body25 = self.project(self._x(rows, betas), self.focal, self.centre, self.kp)
        r2 = ((proj - self.kp) ** 2).sum(-1) / self.scale[:, None] ** 2
        value = (self.w * (self.sigma2 * r2 / (self.sigma2 + r2))).sum()
        pose = rows[:, 6:]
        value = value + self.pose_w * priors.pose_l2(pose - self.mean).sum() \
            + self.cfg.limit_weight * priors.joint_limit_penalty(pose).sum() \
            + rows.shape[0] * self.shape_w * priors.shape_l2(betas[None]).sum()
        q = body25 * self.to_units[:, None, None]
        for weight, coefs, starts in self.terms:
            if len(starts):
                s = torch.tensor(starts)
                combo = sum(c * q[s + i] for i, c in enumerate(coefs))
                value = value + weight * (combo ** 2).sum()
        return (value, proj) if points else value

    def _jacobians(self, rows, betas, free):
        """Per frame: the weighted data residuals (66,) and the scaled 3D points (75,), with their Jacobians
        with respect to the free columns of the frame's row."""
        from torch.func import jacfwd, vmap

        with torch.no_grad():
            r2, _ = self.data(rows, betas)
            psi = self.sigma2 ** 2 / (self.sigma2 + r2) ** 2  # Geman-McClure's IRLS weight, held for the step
        sqrt_w = torch.sqrt(self.w * psi)
        place = torch.zeros(rows.shape[1], len(free), dtype=rows.dtype)
        place[free, torch.arange(len(free))] = 1.0  # the free columns back into the row

        def one(sub, row, kp, sw, focal, centre, scale, unit):
            full = row + place @ (sub - row[free])
            proj, body25 = self.project(self._x(full[None], betas), focal[None], centre[None], kp[None])
            proj, body25 = proj[0], body25[0]
            res = ((proj - kp) / scale * sw[:, None]).reshape(-1)
            return torch.cat([res, (body25 * unit).reshape(-1)])

        with_value = lambda *a: (one(*a),) * 2  # noqa: E731
        jac, val = vmap(jacfwd(with_value, has_aux=True))(rows[:, free], rows, self.kp, sqrt_w, self.focal,
                                                          self.centre, self.scale, self.to_units)
        nd = self.kp.shape[1] * 2
        return val[:, :nd], jac[:, :nd], val[:, nd:], jac[:, nd:]

    def _normal_equations(self, rows, betas, free):
        """Blocks of J^T J (diagonal (T, F, F), first and second off-diagonals) and J^T r (T, F) over the free
        columns F of every frame's row."""
        r, jr, q, jq = self._jacobians(rows, betas, free)
        n, d = rows.shape[0], len(free)
        with torch.no_grad():
            diag = jr.transpose(1, 2) @ jr
            grad = (jr.transpose(1, 2) @ r[..., None])[..., 0]
            off = [torch.zeros(max(n - k, 0), d, d, dtype=rows.dtype) for k in (1, 2)]
            # priors on the pose (separable: diagonal only), over the whole row, then its free columns
            pose = rows[:, 6:]
            prior_grad = torch.zeros_like(rows)
            prior_hess = torch.zeros_like(rows)
            prior_grad[:, 6:] = self.pose_w * self.l2 * (pose - self.mean)
            prior_hess[:, 6:] = self.pose_w * self.l2
            values = pose[:, priors.LIMIT_INDEX]
            low, high = priors.LIMIT_LOW.to(pose.dtype), priors.LIMIT_HIGH.to(pose.dtype)
            excess = torch.where(values < low, values - low, torch.where(values > high, values - high, 0.0))
            lim = 6 + priors.LIMIT_INDEX
            prior_grad.index_add_(1, lim, self.cfg.limit_weight * excess)
            prior_hess.index_add_(1, lim, self.cfg.limit_weight * (excess != 0).to(rows.dtype))
            grad += prior_grad[:, free]
            diag += torch.diag_embed(prior_hess[:, free])
            for weight, coefs, starts in self.terms:
                if not len(starts):
                    continue
                s = torch.tensor(starts)
                combo = sum(c * q[s + i] for i, c in enumerate(coefs))  # (S, 75)
                for i, ci in enumerate(coefs):
                    grad.index_add_(0, s + i, weight * ci * (jq[s + i].transpose(1, 2) @ combo[..., None])[..., 0])
                    for j, cj in enumerate(coefs):
                        if j < i:
                            continue
                        block = weight * ci * cj * (jq[s + i].transpose(1, 2) @ jq[s + j])
                        if i == j:
                            diag.index_add_(0, s + i, block)
                        else:
                            off[j - i - 1].index_add_(0, s + i, block)
        return diag, off[0], off[1], grad

    def gauss_newton(self, rows, betas, iters: int, free: torch.Tensor | None = None):
        """`free`: the columns of every frame's row that move (default all). A step is taken when it lowers the
        objective and moves no frame's body keypoints by more than STEP_REACH x the robust scale on average (a trust
        region in the image): a longer step can lower the objective by leaving the data term's basin altogether
        (every keypoint saturated, the temporal terms smaller), which a seated person's jittery first depths did
        (all frames 270 px off)."""
        free = torch.arange(rows.shape[1]) if free is None else free
        mu = 1e-3
        with torch.no_grad():
            cost, points = self.cost(rows, betas, points=True)
        reach = STEP_REACH * self.cfg.robust_sigma
        for _ in range(iters):
            diag, off1, off2, grad = self._normal_equations(rows, betas, free)
            improved = False
            for _attempt in range(8):
                damped = diag + mu * torch.diag_embed(torch.diagonal(diag, dim1=1, dim2=2) + 1e-6)
                step = torch.zeros_like(rows)
                step[:, free] = _solve_banded(damped, off1, off2, -grad)
                with torch.no_grad():
                    new_cost, new_points = self.cost(rows + step, betas, points=True)
                moved = (torch.linalg.norm(new_points[:, :25] - points[:, :25], dim=-1) / self.scale[:, None]).mean(1)
                if torch.isfinite(new_cost) and new_cost < cost and float(moved.max()) <= reach:
                    gain = float(cost - new_cost)
                    rows, cost, points, mu, improved = rows + step, new_cost, new_points, max(mu / 3.0, 1e-7), True
                    break
                mu *= 4.0
            if not improved or gain <= 1e-4 * (1.0 + float(cost)):
                break
        return rows

    def fit_shape(self, rows, betas, iters: int = 30):
        """The one shape of the clip, every frame's pose held (L-BFGS on the betas)."""
        b = betas.detach().clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS([b], lr=1.0, max_iter=iters, history_size=10, line_search_fn="strong_wolfe")
        held = rows.detach()

        def closure():
            optimiser.zero_grad()
            value = self.cost(held, b)
            value.backward()
            return value

        optimiser.step(closure)
        return b.detach()


def _solve_banded(diag, off1, off2, rhs):
    """Solve the symmetric block-banded system (blocks (t, t), (t, t+1) = off1[t], (t, t+2) = off2[t]) by
    block-tridiagonal elimination over pairs of frames."""
    n, d = rhs.shape
    m = (n + 1) // 2
    size = 2 * d
    eye = torch.eye(d, dtype=rhs.dtype)
    pad = 2 * m - n  # an odd clip gets one inert frame (identity block, zero right-hand side)
    D = torch.cat([diag, eye.expand(pad, d, d)]) if pad else diag
    O1 = torch.cat([off1, torch.zeros(pad, d, d, dtype=rhs.dtype)]) if pad else off1  # (2m − 1, d, d)
    O2 = torch.cat([off2, torch.zeros(pad, d, d, dtype=rhs.dtype)]) if pad else off2  # (2m − 2, d, d)
    b = torch.cat([rhs, torch.zeros(pad, d, dtype=rhs.dtype)]) if pad else rhs
    # super-blocks: A_i = [[D_2i, O1_2i], [O1_2i^T, D_2i+1]], U_i = [[O2_2i, 0], [O1_2i+1, O2_2i+1]]
    A = torch.zeros(m, size, size, dtype=rhs.dtype)
    A[:, :d, :d], A[:, d:, d:] = D[0::2], D[1::2]
    A[:, :d, d:] = O1[0::2]
    A[:, d:, :d] = O1[0::2].transpose(1, 2)
    U = torch.zeros(max(m - 1, 0), size, size, dtype=rhs.dtype)
    if m > 1:
        U[:, :d, :d] = O2[0:2 * m - 2:2]
        U[:, d:, :d] = O1[1:2 * m - 2:2]
        U[:, d:, d:] = O2[1:2 * m - 2:2]
    B = b.reshape(m, size)
    c_prime = torch.zeros(max(m - 1, 0), size, size, dtype=rhs.dtype)
    d_prime = torch.zeros(m, size, dtype=rhs.dtype)
    prev_c, prev_d = None, None
    for i in range(m):
        a_i, b_i = A[i], B[i]
        if i > 0:
            lower = U[i - 1].T
            a_i = a_i - lower @ prev_c
            b_i = b_i - lower @ prev_d
        factor = torch.linalg.cholesky(a_i)
        if i < m - 1:
            prev_c = torch.cholesky_solve(U[i], factor)
            c_prime[i] = prev_c
        prev_d = torch.cholesky_solve(b_i[:, None], factor)[:, 0]
        d_prime[i] = prev_d
    out = torch.zeros(m, size, dtype=rhs.dtype)
    out[m - 1] = d_prime[m - 1]
    for i in range(m - 2, -1, -1):
        out[i] = d_prime[i] - c_prime[i] @ out[i + 1]
    return out.reshape(2 * m, d)[:n]


# ---------------------------------------------------------------------------------------------------------------
# RAFO over the sequence


def sequence_rafo(people: list[Person], joints: np.ndarray, camera: Camera, errors: np.ndarray, config: RafoConfig,
                  min_confidence: float, flags: np.ndarray, warnings: list[str], numbers: np.ndarray,
                  envelope_percentile: float = 75.0, lambda_from: str = "envelope",
                  rotations: np.ndarray | None = None, anchor: str = "frame") -> list[SequenceResidual]:
    """Eq. 3-5 summed over the frames that show each limb's endpoint, one λ per limb (see the module docstring);
    per frame also the single-frame RAFO λ (rafo.solve on that frame alone), whose spread says how well one
    photo would have determined it. `anchor`: "frame" (one anchor per frame) or "shared" (one offset per limb
    in its upstream joint's bone frame, `rotations` (T, 22, 3, 3) the body joints' rotations in the camera
    frame)."""
    from .rafo import LimbProblem, solve

    out = []
    n = len(people)
    for k, kind in enumerate(RESIDUALS):
        if not flags[k]:
            continue
        ja_all = joints[:, JOINT_INDEX[kind.anchor_joint]]
        jt_all = joints[:, JOINT_INDEX[kind.upstream_joint]]
        targets = np.full((n, 2), np.nan)
        shown = np.zeros(n, bool)
        for t, person in enumerate(people):
            x, y, conf = person.residual[k]
            if conf < min_confidence:
                continue
            a2d, t2d = camera.project_np(ja_all[t]), camera.project_np(jt_all[t])
            dist = float(np.linalg.norm(np.array([x, y]) - t2d))
            if dist > config.contradiction_factor * float(np.linalg.norm(a2d - t2d)) + 10.0:
                warnings.append(f"frame {numbers[t]}: {kind.name} endpoint ({x:.0f}, {y:.0f}) px contradicts its "
                                "limb (too far from the fitted segment): not used")
                continue
            targets[t], shown[t] = (x, y), True
        envelope = _envelope_lambda(ja_all, jt_all, targets, shown, camera, envelope_percentile)
        bone = rotations[:, JOINT_INDEX[kind.upstream_joint]] if anchor == "shared" else None
        lam_sum, anchors, offset = _shared_lambda(ja_all, jt_all, targets, shown, camera, errors, config,
                                                  rotations=bone)
        lam = lam_sum
        if lambda_from == "envelope" and math.isfinite(envelope):
            # the envelope's λ, the anchors then fitted by eq. 4 at it (acceptance per frame)
            lam = float(np.clip(envelope, config.lambda_min, config.lambda_max))
            _, anchors, offset = _shared_lambda(ja_all, jt_all, targets, shown, camera, errors, config, fixed=lam,
                                                rotations=bone)
        ends = endpoint(torch.tensor(anchors), torch.tensor(jt_all), torch.full((n,), lam, dtype=torch.float64))
        ends = ends.numpy()
        ends2d = camera.project_np(ends)
        err = np.full(n, np.nan)
        err[shown] = np.linalg.norm(ends2d[shown] - targets[shown], axis=1)
        frame_ok = shown & (err < config.accept_threshold_px) & (ends[:, 2] > 0)
        median = float(np.median(err[shown])) if shown.any() else math.nan
        lam_frames = np.full(n, np.nan)
        if shown.any():
            rows = np.nonzero(shown)[0]
            single = solve([LimbProblem(kind, ja_all[t], jt_all[t], targets[t], camera, float(errors[t]))
                            for t in rows], config)
            lam_frames[rows] = [r.lam for r in single]
        out.append(SequenceResidual(
            kind=kind.name, lam=float(lam), accepted=bool(shown.any() and median < config.accept_threshold_px),
            shown=shown, errors_px=err, frame_accepted=frame_ok, lam_frames=lam_frames, endpoint_2d=ends2d,
            anchor_3d=anchors, upstream_3d=jt_all.copy(), endpoint_3d=ends, target_2d=targets,
            median_error_px=median, note="" if shown.any() else "no frame shows this endpoint usably",
            lam_rafo_sum=float(lam_sum), lam_envelope=float(envelope), anchor_offset_m=offset))
    return out


def bone_rotations(global_orient: np.ndarray, body_pose: np.ndarray, parents) -> np.ndarray:
    """(T, 22, 3, 3) each body joint's rotation in the camera frame (its bone's frame), from (T, 3) and (T, 63)."""
    local = aa_to_matrix(np.concatenate([global_orient[:, None], body_pose.reshape(-1, 21, 3)], 1))
    out = local.copy()
    for j in range(1, 22):
        out[:, j] = out[:, parents[j]] @ local[:, j]
    return out


def _envelope_lambda(ja_all, jt_all, targets, shown, camera: Camera, percentile: float) -> float:
    """The λ of the shortest stump that reaches (nearly) every frame's endpoint: a stump of length s seen at any
    tilt projects to at most s, so the upper envelope of the projected stump lengths over the clip (here a high
    percentile, robust to noisy endpoints) is its length, whatever tilt the fit gave the segment in each frame.
    λ = 1 − envelope(projected length / segment length), the projected length in metres at the upstream joint's
    depth. Measured on the walking benchmark (8 clips, 13 limbs): λ MAE 0.012 at the 75th percentile, 0.021 at the
    90th, 0.050 at the maximum, against 0.040 for eq. 3-5 summed with λ free: eq. 4 keeps each frame's anchor
    near the fit's, whose tilt towards the camera 2D keypoints barely fix (a knee's flexion when no ankle is seen:
    fitted shank tilts were 30-48° off), so that λ inherits the tilt's error; with the anchor term weakened the
    sum turns flat in λ (every frame reachable by tilting) and the start decides. The percentile was chosen on
    those clips; see the README for another seed.
    What is left of the error is the fitted body's, not this estimator's (bench_sequence, 8 walkers each of seeds
    23 / 11 / 37): with the true joints and the observed endpoints it gives 0.010 / 0.011 / 0.007 against 0.033 /
    0.024 / 0.011 with the fitted ones; the fitted segment length (shape from the intact keypoints) and depth err
    together (each alone: 0.038 / 0.028 / 0.019 with the true length). Measured no better: the torso's depth
    instead of the upstream joint's (walking 0.028 / 0.019 / 0.011, but reaching 0.027 -> 0.035 on seed 23 and
    0.015 -> 0.019 on 37, the arms nearer the camera than the torso); the intact contralateral segment's 2D
    envelope as the length (0.040 against 0.036 on the 10 seed-23 limbs that have one: its tilts over the clip
    differ from the stump's, its two keypoints are noisy); the clip's shape prior counted once instead of per
    frame (0.0237 -> 0.0234 on seed 11: the shape barely moves)."""
    if not shown.any():
        return math.nan
    length = np.linalg.norm(jt_all - ja_all, axis=1)
    seen = np.linalg.norm(targets - camera.project_np(jt_all), axis=1) * jt_all[:, 2] / camera.focal_length
    ratio = (seen / np.maximum(length, 1e-6))[shown]
    return float(1.0 - np.percentile(ratio, percentile))


def _shared_lambda(ja_all, jt_all, targets, shown, camera: Camera, errors, config: RafoConfig,
                   fixed: float | None = None, rotations: np.ndarray | None = None):
    """Minimise Σ_f eq. 4 over the frames that show the endpoint: one λ, and one anchor per frame or, with
    `rotations` ((T, 3, 3) the upstream joint's bone frame per frame), one anchor offset for the clip, fixed in
    that bone (Ja_f = Ja_init,f + R_f o: the limb's anchor sits in the same place on its bone in every frame).
    Variables scaled to pixels (anchor moves × pixels per metre, λ × the segment's pixel length) so that L-BFGS
    starts well. The box [λmin, λmax]: unconstrained first; a λ outside is clipped and the anchors fitted again
    at the bound (eq. 4 is convex in λ for fixed anchors, so the bound is then the constrained minimum's λ).
    Returns (λ, anchors (T, 3), the offset o in the bone frame (3,) or None); with one offset every frame's
    anchor carries it, shown or not."""
    anchors = ja_all.copy()
    if not shown.any():
        return float(np.clip(config.lambda_init, config.lambda_min, config.lambda_max)), anchors, None
    dt = torch.float64
    rows = np.nonzero(shown)[0]
    ja = torch.tensor(ja_all[rows], dtype=dt)
    jt = torch.tensor(jt_all[rows], dtype=dt)
    target = torch.tensor(targets[rows], dtype=dt)
    f = len(rows)
    focal = torch.full((f,), float(camera.focal_length), dtype=dt)
    centre = torch.tensor(camera.principal_point, dtype=dt)
    ppm = focal / ja[:, 2].clamp(min=1e-3)
    e0 = torch.tensor(errors[rows], dtype=dt)
    trust = (config.reference_error_px / e0.clamp(min=config.reference_error_px)) ** 2
    alpha, mu = config.alpha0 * ppm ** 2 * trust, config.mu0 * ppm ** 2 * trust
    seg_px = float((ppm * torch.linalg.norm(jt - ja, dim=-1)).median().clamp(min=1.0))
    shared = rotations is not None
    rot = torch.tensor(rotations[rows], dtype=dt) if shared else None
    ppm_clip = float(ppm.median())

    def placed(u, ja_rows, rot_rows):
        """Anchors from the scaled variables: per frame u (F, 3) px, or shared u (1, 3) px in the bone frame."""
        return ja_rows + (rot_rows @ u[0] / ppm_clip if shared else u / ppm[:, None])

    def run(lam_fixed: float | None, u0: torch.Tensor, v0: float):
        u = u0.clone().requires_grad_(True)
        v = torch.tensor([v0], dtype=dt, requires_grad=lam_fixed is None)
        params = [u, v] if lam_fixed is None else [u]
        optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=4 * config.iterations, history_size=config.history,
                                      line_search_fn="strong_wolfe", tolerance_grad=1e-10, tolerance_change=1e-14)

        def closure():
            optimiser.zero_grad()
            lam = (v / seg_px if lam_fixed is None else torch.tensor([lam_fixed], dtype=dt)).expand(f)
            loss = rafo_loss(placed(u, ja, rot), lam, ja, jt, target, focal, centre, alpha, mu).mean()
            loss.backward()
            return loss

        optimiser.step(closure)
        return u.detach(), float(v.detach()[0]) / seg_px if lam_fixed is None else lam_fixed

    zero = torch.zeros(1 if shared else f, 3, dtype=dt)
    if fixed is not None:  # λ given: only the anchors move
        u, lam = run(fixed, zero, 0.0)
    else:
        u, lam = run(None, zero, config.lambda_init * seg_px)
        clipped = float(np.clip(lam, config.lambda_min, config.lambda_max))
        if clipped != lam or not math.isfinite(lam):
            clipped = clipped if math.isfinite(lam) else config.lambda_init
            u, lam = run(clipped, u if torch.isfinite(u).all() else zero, 0.0)
    if shared:
        offset = u[0].numpy() / ppm_clip
        return float(lam), ja_all + np.einsum("tij,j->ti", rotations, offset), offset
    anchors[rows] = placed(u, ja, rot).numpy()
    return float(lam), anchors, None


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
    small = Camera(max(1, round(cam.width * s)), max(1, round(cam.height * s)), cam.focal_length * s,
                   (cam.principal_point[0] * s, cam.principal_point[1] * s))
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
