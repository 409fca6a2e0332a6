"""Limb-loss hints from MediaPipe's landmarks and person mask: which limbs look absent, how likely, and why.

A limb is judged only where the photo can show whether it is there. It is never suggested as lost when
  - it reaches the image border (a joint of it near the border, or its full length, as the other side's or the
    torso's proportions say, would run past the border): the frame may have cut it off;
  - it is hidden: MediaPipe's visibility of one of its joints is low (behind an object, another person or the
    person's own body);
  - it is foreshortened: one of its segments points towards or away from the camera (MediaPipe's metric 3D
    landmarks), so a short segment in the picture is what an intact limb gives.
Such a limb is reported as "not judged", with the reason, instead.

A judged segment (upper arm, forearm, thigh, shank) gets the probability that it is absent from a logistic
model of four things the picture shows (FEATURES): how far the person's outline continues along the segment,
the segment's length, the outline under its end joint, and the end joint's visibility, each against what an
intact segment would give. The coefficients were fitted on synthetic renders of the embedded body with known
amputations (`python -m benchmarks.bench_detect --calibrate`, a seed apart from the benchmark's), so the
probability is calibrated for people who, like those renders, each have 1-3 amputated limbs; for a population
with fewer amputees it overstates the chance. A segment is suggested at probability >= SUGGEST_AT.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# (limb, kind for a missing upper segment, kind for a missing lower segment, MediaPipe chain proximal -> distal,
#  the extremity points beyond the distal joint)
LIMBS = (
    ("right_arm", "right_transhumeral", "right_transradial", (12, 14, 16), (18, 20, 22)),
    ("left_arm", "left_transhumeral", "left_transradial", (11, 13, 15), (17, 19, 21)),
    ("right_leg", "right_transfemoral", "right_transtibial", (24, 26, 28), (30, 32)),
    ("left_leg", "left_transfemoral", "left_transtibial", (23, 25, 27), (29, 31)),
)
OTHER = {"right_arm": "left_arm", "left_arm": "right_arm", "right_leg": "left_leg", "left_leg": "right_leg"}
SEGMENT_NAMES = {"arm": ("upper arm", "forearm"), "leg": ("thigh", "shank")}
JOINT_NAMES = {11: "left shoulder", 12: "right shoulder", 13: "left elbow", 14: "right elbow", 15: "left wrist",
               16: "right wrist", 23: "left hip", 24: "right hip", 25: "left knee", 26: "right knee",
               27: "left ankle", 28: "right ankle"}
# Segment length against the torso (shoulder centre to hip centre) in the picture, set low on purpose (the
# embedded body's own ratios are about 0.55, 0.5, 0.8, 0.8): a too long expectation would make an intact
# segment look cut short.
TORSO_RATIO = {("arm", 0): 0.42, ("arm", 1): 0.38, ("leg", 0): 0.62, ("leg", 1): 0.62}

HIDDEN_BELOW = 0.5  # MediaPipe visibility under which a joint counts as hidden
FORESHORTENED_ABOVE = 0.6  # |depth| / length of a segment in the 3D landmarks: more than ~37° out of the image plane
BORDER_MARGIN = 0.02  # of the image's longer side: a joint this near the border may continue outside it
SUGGEST_AT = 0.5

FEATURES = ("outline reach", "segment length", "outline at the end joint", "end joint visibility")
# Logistic model: p(absent) = 1 / (1 + exp(-(b0 + b . features))). Fitted by `bench_detect --calibrate`
# (seed 1001, 200 renders) - rerun it and paste its output here when the detector or the renders change.
COEFFICIENTS = (0.0, -4.0, -2.0, -2.0, 0.0)


@dataclass
class Suggestion:
    kind: str
    endpoint: tuple[float, float]
    score: float  # calibrated probability that the segment is absent (see the module's docstring)
    reasons: list[str] = field(default_factory=list)


@dataclass
class LimbJudgement:
    """What the detector concluded about one limb: a probability per segment, or why it was not judged."""

    limb: str
    judged: bool
    reason: str = ""  # why not judged
    probabilities: tuple[float, float] = (0.0, 0.0)  # upper, lower segment absent
    suggestion: Suggestion | None = None

    def to_json(self) -> dict:
        out = {"limb": self.limb, "judged": self.judged}
        if self.judged:
            out["p_absent"] = {"upper": round(self.probabilities[0], 3), "lower": round(self.probabilities[1], 3)}
        else:
            out["reason"] = self.reason
        if self.suggestion is not None:
            out["suggested"] = self.suggestion.kind
        return out


def _inside(point: np.ndarray, width: int, height: int, margin: float) -> bool:
    return margin <= point[0] < width - margin and margin <= point[1] < height - margin


def _mask_at(mask: np.ndarray, point: np.ndarray) -> float:
    x, y = int(round(point[0])), int(round(point[1]))
    if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]:
        return float(mask[y, x])
    return 0.0


def _surface_end(mask: np.ndarray, start: np.ndarray, direction: np.ndarray, max_length: float) -> float:
    """How far from `start` along `direction` the person's outline continues (pixels)."""
    step, distance = 2.0, 0.0
    while distance < max_length and _mask_at(mask, start + direction * (distance + step)) >= 0.5:
        distance += step
    return distance


def features(reach: float, length: float, mask_end: float, visibility: float, expected: float) -> np.ndarray:
    """The model's inputs for one segment (see FEATURES), lengths relative to the expected one."""
    return np.array([min(reach / expected, 1.5), min(length / expected, 1.5), mask_end, visibility])


def probability(x: np.ndarray) -> float:
    b = np.asarray(COEFFICIENTS)
    return float(1.0 / (1.0 + np.exp(-(b[0] + b[1:] @ x))))


@dataclass
class _Segment:
    start: np.ndarray
    end: np.ndarray
    length: float
    direction: np.ndarray
    expected: float


def _expected_lengths(lms: np.ndarray, kind: str) -> tuple[float, float] | None:
    """Lower bounds of an intact segment's length in the picture, from the torso (None: torso not seen)."""
    if min(lms[[11, 12, 23, 24], 3]) < HIDDEN_BELOW:
        return None
    torso = float(np.linalg.norm(0.5 * (lms[11, :2] + lms[12, :2]) - 0.5 * (lms[23, :2] + lms[24, :2])))
    return TORSO_RATIO[(kind, 0)] * torso, TORSO_RATIO[(kind, 1)] * torso


def _veto(lms: np.ndarray, world: np.ndarray | None, limb: str, chain, extremities, segments, width: int,
          height: int) -> str:
    """Why this limb cannot be judged from the picture ('' when it can)."""
    p, m, d = chain
    margin = BORDER_MARGIN * max(width, height)
    if not _inside(lms[p, :2], width, height, margin):
        return f"the {JOINT_NAMES[p]} is at or beyond the image border"
    for i in (m, d, *extremities):
        if not _inside(lms[i, :2], width, height, margin):
            return "it reaches the image border"
    upper, lower = segments
    if not _inside(upper.start + upper.direction * max(upper.expected, upper.length), width, height, margin):
        return "its full length would reach past the image border"
    if not _inside(lower.start + lower.direction * max(lower.expected, lower.length), width, height, margin):
        return "its full length would reach past the image border"
    hidden = [i for i in chain if lms[i, 3] < HIDDEN_BELOW]
    if hidden:
        return f"hidden: the {JOINT_NAMES[hidden[0]]}'s visibility is {lms[hidden[0], 3]:.2f}"
    if world is not None:
        for (a, b), name in zip(((p, m), (m, d)), SEGMENT_NAMES[limb.split("_")[1]]):
            v = world[b] - world[a]
            size = float(np.linalg.norm(v))
            if size > 1e-6 and abs(v[2]) / size > FORESHORTENED_ABOVE:
                way = "towards" if v[2] < 0 else "away from"
                angle = np.degrees(np.arcsin(abs(v[2]) / size))
                return f"foreshortened: its {name} points {way} the camera ({angle:.0f}° out of the image plane)"
    return ""


def _segments(lms: np.ndarray, chain, expected: tuple[float, float], other: list[float]) -> list[_Segment]:
    out = []
    for k, (a, b) in enumerate(((chain[0], chain[1]), (chain[1], chain[2]))):
        start, end = lms[a, :2], lms[b, :2]
        length = float(np.linalg.norm(end - start))
        direction = (end - start) / length if length > 1e-6 else np.array([0.0, 1.0])
        out.append(_Segment(start, end, length, direction, max(expected[k], other[k])))
    return out


@dataclass
class _Limb:
    name: str
    veto: str  # why it cannot be judged ('' when it can)
    segments: list[_Segment] = field(default_factory=list)
    x: list[np.ndarray] = field(default_factory=list)  # FEATURES of the upper and lower segment
    reach: list[float] = field(default_factory=list)
    mask_end: list[float] = field(default_factory=list)


def measure_limbs(lms: np.ndarray, mask: np.ndarray, world: np.ndarray | None = None) -> list[_Limb]:
    """Each limb's veto, or its segments' FEATURES (what judge_limbs and the calibration both use)."""
    height, width = mask.shape[:2]
    lengths, first, expected = {}, {}, {}
    for limb, _, _, chain, extremities in LIMBS:
        lengths[limb] = [float(np.linalg.norm(lms[chain[1], :2] - lms[chain[0], :2])),
                         float(np.linalg.norm(lms[chain[2], :2] - lms[chain[1], :2]))]
        expected[limb] = _expected_lengths(lms, limb.split("_")[1])
        if expected[limb] is not None:
            first[limb] = _veto(lms, world, limb, chain, extremities, _segments(lms, chain, expected[limb],
                                                                              [0.0, 0.0]), width, height)
    out = []
    for limb, _, _, chain, extremities in LIMBS:
        if expected[limb] is None:
            out.append(_Limb(limb, "the torso is not seen whole, so there is no scale to judge by"))
            continue
        # the other side's lengths count only where that side can be judged itself
        other = lengths[OTHER[limb]] if not first[OTHER[limb]] else [0.0, 0.0]
        segments = _segments(lms, chain, expected[limb], other)
        why = _veto(lms, world, limb, chain, extremities, segments, width, height)
        entry = _Limb(limb, why, segments)
        if not why:
            for k, seg in enumerate(segments):
                entry.reach.append(_surface_end(mask, seg.start, seg.direction, 1.5 * seg.expected))
                entry.mask_end.append(_mask_at(mask, seg.end))
                entry.x.append(features(entry.reach[k], seg.length, entry.mask_end[k], float(lms[chain[k + 1], 3]),
                                        seg.expected))
        out.append(entry)
    return out


def judge_limbs(lms: np.ndarray, mask: np.ndarray, world: np.ndarray | None = None) -> list[LimbJudgement]:
    """Judge every limb of one person. `lms`: (33, 4) x, y (pixels), z, visibility; `mask`: (H, W) person
    segmentation in [0, 1]; `world`: (33, 3) MediaPipe's metric landmarks (None: no foreshortening test)."""
    out = []
    for (limb, upper_kind, lower_kind, chain, _), entry in zip(LIMBS, measure_limbs(lms, mask, world)):
        if entry.veto:
            out.append(LimbJudgement(limb, False, entry.veto))
            continue
        probs = [probability(x) for x in entry.x]
        judgement = LimbJudgement(limb, True, probabilities=(probs[0], probs[1]))
        for k, kind_name in ((0, upper_kind), (1, lower_kind)):
            if probs[k] < SUGGEST_AT:
                continue
            seg, name, joint = entry.segments[k], SEGMENT_NAMES[limb.split("_")[1]][k], JOINT_NAMES[chain[k + 1]]
            endpoint = seg.start + seg.direction * min(entry.reach[k], seg.length)
            reasons = [f"p(absent) {probs[k]:.2f}",
                       f"the body outline ends {entry.reach[k]:.0f} px along the {name}, where an intact one is "
                       f"at least {seg.expected:.0f} px long",
                       f"the {name} is {seg.length:.0f} px long in the picture",
                       f"the outline under the {joint}: {entry.mask_end[k]:.2f}",
                       f"the {joint}'s visibility: {lms[chain[k + 1], 3]:.2f}"]
            judgement.suggestion = Suggestion(kind_name, (float(endpoint[0]), float(endpoint[1])), probs[k],
                                              reasons)
            break  # a missing upper segment implies the lower one: one kind per limb
        out.append(judgement)
    return out



def limb_loss_hints(lms: np.ndarray, mask: np.ndarray, world: np.ndarray | None = None) -> list[Suggestion]:
    return [j.suggestion for j in judge_limbs(lms, mask, world) if j.suggestion is not None]
