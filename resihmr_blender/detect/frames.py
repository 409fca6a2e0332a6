"""A video's frames as images -> OpenPose per-frame keypoint files (`run --sequence DIR --detect`): MediaPipe on
every frame, the residual limbs its hints suggest voted over the clip, the files written where the sequence reader
(core/sequence_frames.py) reads them. No bpy here; MediaPipe only when called.

Why a vote: the hints judge each frame alone, and a limb that swings towards the camera looks short on some frames
(foreshortened: not judged) and whole on none; one person has the same limbs on every frame, so a kind counts as
the person's when it is suggested on more than `VOTE_SHARE` of the frames the person is found on (a majority: on
a real two-frame clip, tests/data/real_clip, the hints suggest a missing upper arm on one frame of an intact man).
Its endpoint on a frame is that frame's suggestion; a frame that did not suggest it gives no endpoint there (the
sequence fit carries the limb through such frames, as through frames whose endpoint is missing).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.keypoints import KeypointsFile
from ..core.keypoints_io import write_keypoints
from ..core.residuals import RESIDUAL_KINDS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VOTE_SHARE = 0.5
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in a name


class FramesError(ValueError):
    """Frames that cannot be read as one video; the message is one line naming the folder or file."""


@dataclass
class DetectedFrames:
    """What `detect_frames` wrote and concluded (printed by the CLI, kept in result.json)."""

    folder: Path  # the keypoint files
    video: str
    frames: int
    found: int  # frames with a person
    votes: dict[str, int] = field(default_factory=dict)  # kind -> frames that suggested it
    declared: list[str] = field(default_factory=list)  # the kinds the vote (and --accept-suggestions) made the person's
    failed: dict[int, str] = field(default_factory=dict)  # frame number -> why no person was found
    accepted: bool = False  # the vote's kinds were made residual limbs (--accept-suggestions)

    def report(self) -> dict:
        return {"video": self.video, "frames": self.frames, "frames_with_person": self.found,
                "suggested_on_frames": dict(self.votes), "vote_share": VOTE_SHARE, "suggestions_applied": self.accepted,
                "declared": list(self.declared),
                "frames_without_person": {str(k): v for k, v in sorted(self.failed.items())}}


def frame_images(folder: str | os.PathLike) -> tuple[str, dict[int, Path]]:
    """(video name, {frame number: image}) of a folder of frame images: numbered by the last digits in each name
    (frame_0001.png, clip-12.jpg), or in name order when no name has digits."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FramesError(f"{folder}: not a folder (--sequence --detect takes a folder of frame images)")
    images = sorted(p for p in folder.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FramesError(f"{folder}: no frame images ({', '.join(IMAGE_SUFFIXES)})")
    numbers = [_NUMBER.search(p.stem) for p in images]
    if not any(numbers):
        return folder.name, dict(enumerate(images))
    out: dict[int, Path] = {}
    for path, match in zip(images, numbers):
        if match is None:
            raise FramesError(f"{path}: no frame number in its name, unlike the other images of {folder}")
        number = int(match.group(1))
        if number in out:
            raise FramesError(f"{path}: frame {number} twice ({out[number].name} too)")
        out[number] = path
    return folder.name, out


def detect_frames(folder: str | os.PathLike, out: str | os.PathLike, person: int = 0, accept: bool = False,
                  progress: Callable[[int, int, int], None] | None = None) -> DetectedFrames:
    """MediaPipe on every frame image of `folder` (person `person` of each frame: the most central, largest one
    by default), then per-frame keypoint files `<video>_<frame>_keypoints.json` in `out`. With `accept`, the
    residual limbs the vote declares are written with each frame's suggested endpoint. `progress(done, total,
    found)` after every frame."""
    from .mediapipe_pose import DetectError, detect, read_image

    say = progress or (lambda done, total, found: None)
    video, images = frame_images(folder)
    found, failed = {}, {}
    for k, (number, path) in enumerate(sorted(images.items())):
        try:
            found[number] = detect(read_image(str(path)), source=str(path), person=person)
        except DetectError as exc:
            if "optional extra" in str(exc):  # MediaPipe is not installed: no frame can be read
                raise
            failed[number] = str(exc).splitlines()[0]
        say(k + 1, len(images), len(found))
    if not found:
        raise FramesError(f"{folder}: no person found on any of its {len(images)} frame(s)")
    votes = {kind: sum(any(s.kind == kind for s in d.suggestions) for d in found.values()) for kind in RESIDUAL_KINDS}
    votes = {kind: n for kind, n in votes.items() if n}
    declared = [kind for kind, n in votes.items() if n > VOTE_SHARE * len(found)] if accept else []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(found.values()))
    for number in failed:  # a frame without a person is read as one ("nobody in this frame"), not as a gap
        write_keypoints(out / f"{video}_{number:012d}_keypoints.json",
                        KeypointsFile(path=None, people=[], image_path=str(Path(images[number]).resolve()),
                                      image_width=first.width, image_height=first.height))
    for number, d in found.items():
        residual = np.zeros_like(d.person.residual)
        for s in d.suggestions:
            if s.kind in declared:
                residual[RESIDUAL_KINDS.index(s.kind)] = [*s.endpoint, s.score]
        d.person.residual = residual
        write_keypoints(out / f"{video}_{number:012d}_keypoints.json",
                        KeypointsFile(path=None, people=[d.person], image_path=str(Path(images[number]).resolve()),
                                      image_width=d.width, image_height=d.height))
    return DetectedFrames(out, video, len(images), len(found), votes, declared, failed, accept)
