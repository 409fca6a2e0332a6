"""A video's keypoints as a sequence (issue 16): OpenPose's per-frame files in frame order, one person followed
across them, every frame without a usable person marked with the reason. Only reading; the fit is sequence.py.

No bpy here.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .keypoints import KeypointsError, Person
from .keypoints_io import _load_json, read_keypoints
from .residuals import RESIDUAL_KINDS, limb_conflict

FRAME_NAME = re.compile(r"^(?P<video>.*)_(?P<frame>\d+)_keypoints\.json$")
# a frame's status: "ok" (fitted), or why it has no pose
MISSING_FILE, UNREADABLE, NO_PERSON, NOT_FOUND, TOO_FEW = (
    "missing file", "unreadable", "no person", "person not found", "too few keypoints")


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
