"""Keypoints from a photo with MediaPipe Pose (optional extra: `pip install '.[detect]'`), and limb-loss hints.

MediaPipe's wheel ships its pose model, so nothing is downloaded at run time. Its 33 landmarks map to BODY_25:

| BODY_25 | MediaPipe | BODY_25 | MediaPipe |
|---|---|---|---|
| Nose | 0 nose | R/LShoulder | 12 / 11 |
| REye / LEye | 5 / 2 (eye centres) | R/LElbow | 14 / 13 |
| REar / LEar | 8 / 7 | R/LWrist | 16 / 15 |
| Neck | midpoint of 11 and 12 (derived) | R/LHip | 24 / 23 |
| MidHip | midpoint of 23 and 24 (derived) | R/LKnee | 26 / 25 |
| R/LHeel | 30 / 29 | R/LAnkle | 28 / 27 |
| R/LBigToe | 32 / 31 (foot index: the tip of the foot) | R/LSmallToe | none (confidence 0) |

Confidence = MediaPipe's landmark visibility (derived points: the smaller of their two). MediaPipe left = the
subject's left, as in OpenPose. The Pose solution finds one person per call, so `_people` paints each person it
finds out of the image and looks again. The people are ranked (`rank`): the most central, largest, fully visible
person first; `detect` uses person 0 of that order unless asked for another (`--person N`).

Limb-loss hints (`hints.py`): which limbs look absent, as a calibrated probability with its reasons; a limb
that reaches the image border, is hidden or is foreshortened is not judged. Suggestions are only suggestions:
the UI shows them for the user to confirm; batch applies them only when asked.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.keypoints import Person
from ..core.layouts import BODY25_INDEX
from .hints import LimbJudgement, Suggestion, judge_limbs

MP_TO_BODY25 = {"Nose": 0, "LEye": 2, "REye": 5, "LEar": 7, "REar": 8, "LShoulder": 11, "RShoulder": 12,
                "LElbow": 13, "RElbow": 14, "LWrist": 15, "RWrist": 16, "LHip": 23, "RHip": 24, "LKnee": 25,
                "RKnee": 26, "LAnkle": 27, "RAnkle": 28, "LHeel": 29, "RHeel": 30, "LBigToe": 31, "RBigToe": 32}
DERIVED = {"Neck": (11, 12), "MidHip": (23, 24)}
BODY = (11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)  # shoulders to ankles: "fully visible" counts these


class DetectError(RuntimeError):
    """No person found, an unreadable image, or the optional extra is missing."""


@dataclass
class Candidate:
    """One person MediaPipe found."""

    landmarks: np.ndarray  # (33, 4): x, y (pixels), z (pixels, MediaPipe's relative depth), visibility
    world: np.ndarray  # (33, 3) MediaPipe's metric landmarks (metres, hip-centred, z away from the camera)
    mask: np.ndarray  # (H, W) person segmentation in [0, 1]


@dataclass
class Detection:
    person: Person
    width: int
    height: int
    suggestions: list[Suggestion]
    landmarks: np.ndarray  # (33, 4) x, y pixels, z, visibility
    mask: np.ndarray  # (H, W) float person segmentation
    others: int = 0  # further people found in the image (not fitted; reported)
    index: int = 0  # which person of the ranked list (0: the most central, largest, fully visible)
    limbs: list[LimbJudgement] = field(default_factory=list)  # per limb: judged (probabilities) or why not
    world: np.ndarray | None = None  # (33, 3) MediaPipe's metric landmarks
    image: np.ndarray | None = field(default=None, repr=False)  # the RGB photo the limbs were judged on

    def write_mask(self, path) -> bool:
        """MediaPipe's person segmentation as the photo silhouette's mask PNG (white = person, core/silhouette.py
        reads it), when it shows the person at all; True when written."""
        if self.mask is None or not (np.asarray(self.mask) >= 0.5).any():
            return False
        from ..core.image import write_png

        write_png(path, (np.clip(self.mask, 0.0, 1.0) * 255).round().astype(np.uint8))
        return True

    def report(self) -> dict:
        """What the detector concluded, for keypoints.json and result.json."""
        return {"person": self.index, "people_found": self.others + 1,
                "suggestions": [{"kind": s.kind, "endpoint": [round(v, 1) for v in s.endpoint],
                                 "probability": round(s.score, 3), "reasons": s.reasons} for s in self.suggestions],
                "limbs": [j.to_json() for j in self.limbs]}


def _require_mediapipe():
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise DetectError("the detector is an optional extra: pip install 'resihmr-blender[detect]' "
                          "(mediapipe==0.10.21)") from exc
    return mp


def read_image(path: str) -> np.ndarray:
    """RGB uint8 image (PNG/JPEG/... through OpenCV, which the detect extra brings)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DetectError(f"{path}: not an image that can be read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _people(image: np.ndarray, max_people: int) -> list[Candidate]:
    """MediaPipe's pose solution finds one person per call: find one, paint them out, look again."""
    mp = _require_mediapipe()
    height, width = image.shape[:2]
    work = np.ascontiguousarray(image[..., :3]).copy()
    fill = np.median(work.reshape(-1, 3), axis=0).astype(np.uint8)
    found = []
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True) as pose:
        for _ in range(max_people):
            out = pose.process(work)
            if out.pose_landmarks is None:
                break
            lms = np.array([[lm.x * width, lm.y * height, lm.z * width, lm.visibility]
                            for lm in out.pose_landmarks.landmark])
            world = np.array([[lm.x, lm.y, lm.z] for lm in out.pose_world_landmarks.landmark]) \
                if out.pose_world_landmarks is not None else None
            mask = np.asarray(out.segmentation_mask, dtype=np.float32) if out.segmentation_mask is not None \
                else np.ones((height, width), np.float32)
            found.append(Candidate(lms, world, mask))
            painted = mask > 0.2
            if painted.sum() < 100:
                break
            work[painted] = fill
    return found


def rank(candidate: Candidate, width: int, height: int) -> float:
    """How much this is 'the' person of the photo: size (the box around the landmarks seen in the frame, against
    the image), the share of shoulders-to-ankles landmarks seen in the frame (squared: a person seen whole beats
    a larger one the frame cuts at the thighs) and closeness to the centre."""
    lms = candidate.landmarks
    inside = (lms[:, 0] >= 0) & (lms[:, 0] < width) & (lms[:, 1] >= 0) & (lms[:, 1] < height)
    seen = inside & (lms[:, 3] > 0.5)
    if seen.sum() < 2:
        return 0.0
    low, high = lms[seen, :2].min(axis=0), lms[seen, :2].max(axis=0)
    size = float(np.sqrt((high - low).prod() / (width * height)))
    whole = float(seen[list(BODY)].mean())
    offset = np.linalg.norm((0.5 * (low + high) - [width / 2, height / 2]) / [width / 2, height / 2])
    central = float(max(0.0, 1.0 - offset / np.sqrt(2)))
    return size * whole ** 2 * (0.5 + 0.5 * central)


def detect(image: np.ndarray, source: str = "image", max_people: int = 4, person: int = 0) -> Detection:
    """Detect one person's keypoints and limb-loss hints in an RGB uint8 image: person `person` of the people
    ranked by `rank` (0: the most central, largest, fully visible); `others` counts the rest."""
    height, width = image.shape[:2]
    people = _people(image, max(max_people, person + 1))
    if not people:
        raise DetectError(f"{source}: no person found")
    ranked = sorted(people, key=lambda c: -rank(c, width, height))
    if person >= len(ranked):
        raise DetectError(f"{source}: person {person} asked for, but only {len(ranked)} found "
                          f"(numbered from 0, the most central, largest, fully visible one)")
    chosen = ranked[person]
    limbs = judge_limbs(chosen.landmarks, chosen.mask, chosen.world, image)
    suggestions = [j.suggestion for j in limbs if j.suggestion is not None]
    return Detection(to_body25(chosen.landmarks, width, height), width, height, suggestions, chosen.landmarks,
                     chosen.mask, others=len(ranked) - 1, index=person, limbs=limbs, world=chosen.world,
                     image=image)


def to_body25(lms: np.ndarray, width: int, height: int) -> Person:
    body25 = np.zeros((25, 3))
    for name, i in MP_TO_BODY25.items():
        body25[BODY25_INDEX[name]] = lms[i, [0, 1, -1]]  # x, y, visibility
    for name, (a, b) in DERIVED.items():
        body25[BODY25_INDEX[name]] = [*(0.5 * (lms[a, :2] + lms[b, :2])), min(lms[a, -1], lms[b, -1])]
    inside = (body25[:, 0] >= 0) & (body25[:, 0] < width) & (body25[:, 1] >= 0) & (body25[:, 1] < height)
    body25[~inside] = 0.0  # MediaPipe extrapolates landmarks outside the frame: not observations
    body25[:, 2] = np.clip(body25[:, 2], 0.0, 1.0)
    return Person(body25=body25)
