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
subject's left, as in OpenPose. The Pose solution finds one person per call, so `detect` paints each person it
finds out of the image and looks again: the largest person is used, the others are counted and reported.

Limb-loss hints: detectors invent missing limbs (visibility ~0.7-0.8 on a hallucinated forearm). What we use
per limb segment: its 2D length against the same segment on the other side, the person segmentation mask along
it (a hallucinated segment lies over background), and the distal landmark's visibility. A segment judged absent
yields a suggested residual kind with an endpoint where the segmentation ends along the segment. Suggestions
are only suggestions: the UI shows them for the user to confirm; batch applies them only when asked.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.keypoints import Person
from ..core.layouts import BODY25_INDEX

MP_TO_BODY25 = {"Nose": 0, "LEye": 2, "REye": 5, "LEar": 7, "REar": 8, "LShoulder": 11, "RShoulder": 12,
                "LElbow": 13, "RElbow": 14, "LWrist": 15, "RWrist": 16, "LHip": 23, "RHip": 24, "LKnee": 25,
                "RKnee": 26, "LAnkle": 27, "RAnkle": 28, "LHeel": 29, "RHeel": 30, "LBigToe": 31, "RBigToe": 32}
DERIVED = {"Neck": (11, 12), "MidHip": (23, 24)}

# (kind for a missing upper segment, kind for a missing lower segment, landmark chain proximal -> distal)
LIMB_CHAINS = {
    ("right", "arm"): ("right_transhumeral", "right_transradial", (12, 14, 16)),
    ("left", "arm"): ("left_transhumeral", "left_transradial", (11, 13, 15)),
    ("right", "leg"): ("right_transfemoral", "right_transtibial", (24, 26, 28)),
    ("left", "leg"): ("left_transfemoral", "left_transtibial", (23, 25, 27)),
}
OTHER_SIDE = {"right": "left", "left": "right"}


class DetectError(RuntimeError):
    """No person found, an unreadable image, or the optional extra is missing."""


@dataclass
class Suggestion:
    kind: str
    endpoint: tuple[float, float]
    score: float  # 0..1, how sure the hint is
    reasons: list[str] = field(default_factory=list)


@dataclass
class Detection:
    person: Person
    width: int
    height: int
    suggestions: list[Suggestion]
    landmarks: np.ndarray  # (33, 3) x, y pixels, visibility
    mask: np.ndarray  # (H, W) float person segmentation
    others: int = 0  # further people found in the image (not fitted; reported)


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


def _people(image: np.ndarray, max_people: int):
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
            lms = np.array([[lm.x * width, lm.y * height, lm.visibility] for lm in out.pose_landmarks.landmark])
            mask = np.asarray(out.segmentation_mask, dtype=np.float32) if out.segmentation_mask is not None \
                else np.ones((height, width), np.float32)
            found.append((lms, mask))
            painted = mask > 0.2
            if painted.sum() < 100:
                break
            work[painted] = fill
    return found


def _size(lms: np.ndarray, width: int, height: int) -> float:
    """Area of the box around the visible landmarks inside the frame: 'the largest person'."""
    seen = lms[(lms[:, 2] > 0.5) & (lms[:, 0] >= 0) & (lms[:, 0] < width) & (lms[:, 1] >= 0) & (lms[:, 1] < height)]
    if len(seen) < 2:
        return 0.0
    extent = seen[:, :2].max(axis=0) - seen[:, :2].min(axis=0)
    return float(extent[0] * extent[1])


def detect(image: np.ndarray, source: str = "image", max_people: int = 4) -> Detection:
    """Detect the largest person's keypoints and limb-loss hints in an RGB uint8 image; `others` counts the rest."""
    height, width = image.shape[:2]
    people = _people(image, max_people)
    if not people:
        raise DetectError(f"{source}: no person found")
    sizes = [_size(lms, width, height) for lms, _ in people]
    lms, mask = people[int(np.argmax(sizes))]
    detection = Detection(to_body25(lms, width, height), width, height, limb_loss_hints(lms, mask), lms, mask)
    detection.others = len(people) - 1
    return detection


def to_body25(lms: np.ndarray, width: int, height: int) -> Person:
    body25 = np.zeros((25, 3))
    for name, i in MP_TO_BODY25.items():
        body25[BODY25_INDEX[name]] = lms[i]
    for name, (a, b) in DERIVED.items():
        body25[BODY25_INDEX[name]] = [*(0.5 * (lms[a, :2] + lms[b, :2])), min(lms[a, 2], lms[b, 2])]
    inside = (body25[:, 0] >= 0) & (body25[:, 0] < width) & (body25[:, 1] >= 0) & (body25[:, 1] < height)
    body25[~inside] = 0.0  # MediaPipe extrapolates landmarks outside the frame: not observations
    body25[:, 2] = np.clip(body25[:, 2], 0.0, 1.0)
    return Person(body25=body25)


def _mask_at(mask: np.ndarray, point: np.ndarray) -> float:
    x, y = int(round(point[0])), int(round(point[1]))
    if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]:
        return float(mask[y, x])
    return 0.0


def _surface_end(mask: np.ndarray, start: np.ndarray, direction: np.ndarray, max_length: float) -> float:
    """How far from `start` along `direction` the person's segmentation continues (pixels)."""
    step = 2.0
    distance = 0.0
    while distance < max_length:
        if _mask_at(mask, start + direction * (distance + step)) < 0.5:
            break
        distance += step
    return distance


def limb_loss_hints(lms: np.ndarray, mask: np.ndarray, ratio_threshold: float = 0.7,
                    min_score: float = 0.4) -> list[Suggestion]:
    suggestions = []
    for (side, limb), (upper_kind, lower_kind, chain) in LIMB_CHAINS.items():
        other = LIMB_CHAINS[(OTHER_SIDE[side], limb)][2]
        p, m, d = (lms[i, :2] for i in chain)
        op, om, od = (lms[i, :2] for i in other)
        for kind, start, end, other_len in ((upper_kind, p, m, np.linalg.norm(om - op)),
                                            (lower_kind, m, d, np.linalg.norm(od - om))):
            length = float(np.linalg.norm(end - start))
            if length < 1e-3 or other_len < 1e-3:
                continue
            direction = (end - start) / length
            reach = _surface_end(mask, start, direction, 1.2 * other_len)  # where the limb surface really ends
            reasons, score = [], 0.0
            if reach < ratio_threshold * other_len:
                reasons.append(f"the body outline ends {reach:.0f} px along, the other side is {other_len:.0f} px")
                score += 0.6
            if length < ratio_threshold * other_len:
                reasons.append(f"segment {length:.0f} px vs {other_len:.0f} px on the other side")
                score += 0.4
            distal_vis = lms[chain[1 if kind == upper_kind else 2], 2]
            if _mask_at(mask, end) < 0.3:
                reasons.append("the detected joint lies outside the body outline")
                score += 0.4
            if distal_vis < 0.5:
                reasons.append(f"low visibility {distal_vis:.2f}")
                score += 0.2
            if score >= min_score:
                endpoint = start + direction * reach
                suggestions.append(Suggestion(kind, (float(endpoint[0]), float(endpoint[1])), min(score, 1.0),
                                              reasons))
                break  # a missing upper segment implies the lower one: one kind per limb
    return suggestions
