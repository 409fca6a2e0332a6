"""Limb-loss hints from MediaPipe's landmarks, its person mask and the photo: which limbs look absent, how
likely, and why.

A limb is judged only where the photo can show whether it is there. It is never suggested as lost when
  - it reaches the image border: a joint of it lies near the border, or its full length (the other side's, or
    the torso's proportions) would run past it - the frame may have cut the limb off;
  - it is hidden: a joint has low MediaPipe visibility and something covers where it would be - the person's own
    body, or something that is not the background around the limb (an object, an animal, another person: the
    colour just beyond where the outline ends differs from the colour beside the limb). The person's own body
    hides a segment only where its picture runs over another part of the body (the torso, the head, another
    limb MediaPipe sees), the limb's outline does not end where the segment starts, and MediaPipe's 3D
    landmarks put the joint behind what covers it. MediaPipe draws a missing forearm or shank the way it draws
    a hidden one (low visibility, behind the body), but folded back over the limb's own stump, whose outline
    ends in free space: that is no hiding place, so such a limb is judged;
  - it is foreshortened: a segment points towards or away from the camera (MediaPipe's metric 3D landmarks),
    the person's outline covers that short segment in the picture and the hand or foot is seen at its end -
    what an intact limb gives. Only when that explains every short segment of the limb; otherwise the limb is
    judged with the foreshortened segment counted as seen.
Such a limb is reported as "not judged", with the reason. A joint of low visibility whose place shows only the
background that surrounds the limb is no such case: it is what a limb that ends there looks like.

A judged segment (upper arm, forearm, thigh, shank) gets the probability that it is absent from a logistic
model of what the picture shows (FEATURES): how far the outline continues along the segment, the segment's
length, the outline under its end joint and the end joint's visibility, the outline around the wrist or ankle
where the hand or foot would be, and how far the other side's outline reaches - lengths against what an intact
segment would give. The coefficients were fitted on synthetic renders of the embedded body with known
amputations (`python -m benchmarks.bench_detect --calibrate`, on a seed apart from the benchmark's), so the
probability is calibrated for people who, like those renders, have 1-3 amputated limbs each; where fewer people
are amputees it overstates the chance. A limb is suggested when one of its segments reaches SUGGEST_AT (0.6,
not 0.5: intact people in real photos reach up to about 0.5, `python -m benchmarks.bench_detect`); the level
(above or below the elbow or knee) then comes from where the outline ends along the upper segment.
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

# Typical segment lengths against the torso (the embedded body's, and the median of intact limbs seen in the
# renders): where the outline along an upper segment ends short of this, a cut limb is cut above the middle joint.
TYPICAL_RATIO = {"arm": 0.55, "leg": 0.8}

HIDDEN_BELOW = 0.5  # MediaPipe visibility under which a joint may be hidden
FORESHORTENED_ABOVE = 0.6  # |depth| / length of a segment in the 3D landmarks: more than ~37° out of the image plane
BORDER_MARGIN = 0.02  # of the image's longer side: a joint this near the border may continue outside it
BEHIND_BY = 0.15  # metres behind the body part it lies over (MediaPipe's 3D landmarks) to be hidden by it
OCCLUDER_COLOUR = 45.0  # RGB distance between the colour beyond the outline's end and beside the limb
GAP = 0.1  # of the expected segment length: a break in the outline this short does not end it
BAND = 0.1  # of the expected segment length: the outline this near across a segment's line counts as on it
WHOLE = 0.9  # of the expected length: an outline reaching this far to a visible end joint shows the segment whole
MIN_TORSO_PX = 80.0  # a smaller person's limbs are a few pixels wide in the mask: too small to judge
# Another part of the body, against the torso's length in the picture: the torso's outline of shoulders and hips
# widened by TORSO_MARGIN, the head's radius around the nose, the half-width of an arm and of a leg
TORSO_MARGIN, HEAD_RADIUS, LIMB_WIDTH = 0.175, 0.35, {"arm": 0.12, "leg": 0.18}
# Shares of the outline on the half-circles beyond a joint (_arc): the limb's outline goes on past the elbow or
# knee (something there could hide the rest) at CONTINUES_AT; it stops there (nothing of a lower segment left,
# other parts of the body not counted) under ENDS_BELOW; a hand or foot is seen around the wrist or ankle at
# EXTREMITY_AT
CONTINUES_AT, ENDS_BELOW, EXTREMITY_AT = 0.5, 0.1, 0.2
LEVEL_AT = 0.9  # of a typical upper segment: an outline ending shorter along it puts the cut above the joint
SUGGEST_AT = 0.6

FEATURES = ("outline reach", "segment length", "outline along the segment", "outline at the end joint",
            "end joint visibility", "outline around the hand or foot", "the other side's outline reach")
# Logistic model: p(absent) = 1 / (1 + exp(-(b0 + b . features))), from `python -m benchmarks.bench_detect
# --calibrate` (200 renders, seed 1001); rerun it and paste its output here when the detector, the rules above
# or the renders change.
COEFFICIENTS = (6.448, -3.661, -4.44, 3.129, -0.617, -2.664, -1.081, 0.759)


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
        out: dict = {"limb": self.limb, "judged": self.judged}
        if self.judged:
            out["p_absent"] = {"upper": round(self.probabilities[0], 3), "lower": round(self.probabilities[1], 3)}
        else:
            out["reason"] = self.reason
        if self.suggestion is not None:
            out["suggested"] = self.suggestion.kind
        return out


@dataclass
class _Segment:
    start: np.ndarray
    end: np.ndarray
    length: float
    direction: np.ndarray
    expected: float  # what an intact segment would at least measure in the picture


@dataclass
class _Limb:
    name: str
    veto: str  # why it cannot be judged ('' when it can)
    segments: list[_Segment] = field(default_factory=list)
    x: list[np.ndarray | None] = field(default_factory=list)  # FEATURES per segment, None: seen whole
    reach: list[float] = field(default_factory=list)
    mask_end: list[float] = field(default_factory=list)
    extremity: float = 1.0  # the outline around the wrist or ankle (_arc)
    past_middle: float = 1.0  # the outline beyond the elbow or knee (_arc)
    upper_reach: float = 0.0  # how far the outline goes along the upper segment, up to a typical one's length
    upper_typical: float = 0.0  # a typical upper segment's length in the picture
    folded: bool = False  # the lower segment was drawn folded back over the upper one (measured straight on)


def _inside(point: np.ndarray, width: int, height: int, margin: float) -> bool:
    return margin <= point[0] < width - margin and margin <= point[1] < height - margin


def _mask_at(mask: np.ndarray, point: np.ndarray) -> float:
    x, y = int(round(point[0])), int(round(point[1]))
    if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]:
        return float(mask[y, x])
    return 0.0


def _surface_end(mask: np.ndarray, start: np.ndarray, direction: np.ndarray, max_length: float,
                 gap: float = 0.0, band: float = 0.0) -> float:
    """How far from `start` along `direction` the person's outline continues (pixels), stepping over gaps of up
    to `gap` pixels (a joint drawn just off a thin limb, the mask's own ragged edge); with `band`, a point counts
    as on the outline when the outline is within `band` pixels of it across the line (MediaPipe's joints often
    sit on a limb's edge, so the line between them runs along it)."""
    normal = np.array([-direction[1], direction[0]])
    offsets = (0.0, -band, band) if band > 0 else (0.0,)
    step, distance, last_on = 2.0, 0.0, 0.0
    while distance < max_length:
        distance += step
        point = start + direction * distance
        if any(_mask_at(mask, point + normal * o) >= 0.5 for o in offsets):
            last_on = distance
        elif distance - last_on > gap:
            break
    return min(last_on, max_length)


def _colour(image: np.ndarray, points: list[np.ndarray]) -> np.ndarray | None:
    h, w = image.shape[:2]
    inside = [p for p in points if 0 <= p[0] < w and 0 <= p[1] < h]
    if not inside:
        return None
    return np.median([image[int(p[1]), int(p[0]), :3].astype(float) for p in inside], axis=0)


def _occluded(image: np.ndarray, mask: np.ndarray, seg: _Segment, reach: float) -> bool:
    """Does something other than the surrounding background lie where the outline ends along this segment?
    Compares the colour just beyond the end with the colour beside the limb just before it."""
    normal = np.array([-seg.direction[1], seg.direction[0]])
    scale = max(seg.expected, 8.0)
    end = seg.start + seg.direction * reach
    beyond = [end + seg.direction * scale * t for t in (0.15, 0.25, 0.35)]
    beyond = [p for p in beyond if _mask_at(mask, p) < 0.5]
    sides = []
    for t in (0.3, 0.6):
        base = seg.start + seg.direction * (reach * t)
        for sign in (-1.0, 1.0):
            width = _surface_end(mask, base, sign * normal, scale)
            sides.append(base + sign * normal * (width + 0.15 * scale))
    sides = [p for p in sides if _mask_at(mask, p) < 0.5]
    a, b = _colour(image, beyond), _colour(image, sides)
    if a is None or b is None:
        return True  # nothing to compare: cannot show the background continues
    return float(np.linalg.norm(a - b)) > OCCLUDER_COLOUR


def features(reach: float, length: float, coverage: float, mask_end: float, visibility: float,
             expected: float, extremity: float, other_reach: float) -> np.ndarray:
    """The model's inputs for one segment (see FEATURES), lengths relative to the expected one."""
    return np.array([min(reach / expected, 1.0), min(length / expected, 1.0), coverage, mask_end, visibility,
                     extremity, other_reach])


def _arc(mask: np.ndarray, centre: np.ndarray, direction: np.ndarray, scale: float, skip=None) -> float:
    """Share of the person's outline on half-circles around `centre` facing `direction` (within 80 degrees,
    at 0.3 and 0.5 of `scale`): about 0 where a limb ends there in free space. Points where `skip(point)` holds
    do not count as outline."""
    base = np.arctan2(direction[1], direction[0])
    points = [centre + r * scale * np.array([np.cos(base + a), np.sin(base + a)])
              for r in (0.3, 0.5) for a in np.radians(np.arange(-80, 81, 10))]
    hits = [_mask_at(mask, q) >= 0.5 and not (skip is not None and skip(q)) for q in points]
    return float(np.mean(hits))


def _coverage(mask: np.ndarray, seg: _Segment, band: float = 0.0) -> float:
    """Share of the segment's picture that lies on the person's outline (within `band` across it)."""
    normal = np.array([-seg.direction[1], seg.direction[0]])
    offsets = (0.0, -band, band) if band > 0 else (0.0,)
    n = max(int(seg.length / 2.0), 1)
    return float(np.mean([any(_mask_at(mask, seg.start + seg.direction * seg.length * (i + 0.5) / n + normal * o)
                              >= 0.5 for o in offsets) for i in range(n)]))


def probability(x: np.ndarray) -> float:
    b = np.asarray(COEFFICIENTS)
    return float(1.0 / (1.0 + np.exp(-(b[0] + b[1:] @ x))))


def _segments(lms: np.ndarray, chain, expected: tuple[float, float], other: list[float]) -> list[_Segment]:
    out = []
    for k, (a, b) in enumerate(((chain[0], chain[1]), (chain[1], chain[2]))):
        start, end = lms[a, :2], lms[b, :2]
        length = float(np.linalg.norm(end - start))
        direction = (end - start) / length if length > 1e-6 else np.array([0.0, 1.0])
        out.append(_Segment(start, end, length, direction, max(expected[k], other[k])))
    return out


def _expected_lengths(lms: np.ndarray, kind: str) -> tuple[float, float] | None:
    """Lower bounds of an intact segment's length in the picture, from the torso (None: torso not seen)."""
    if min(lms[[11, 12, 23, 24], 3]) < HIDDEN_BELOW:
        return None
    torso = _torso_length(lms)
    if torso < MIN_TORSO_PX:
        return None
    return TORSO_RATIO[(kind, 0)] * torso, TORSO_RATIO[(kind, 1)] * torso


def _border(lms: np.ndarray, chain, extremities, segments: list[_Segment], width: int, height: int) -> str:
    margin = BORDER_MARGIN * max(width, height)
    if not _inside(lms[chain[0], :2], width, height, margin):
        return f"the {JOINT_NAMES[chain[0]]} is at or beyond the image border"
    for i in (*chain[1:], *extremities):
        if not _inside(lms[i, :2], width, height, margin):
            return "it reaches the image border"
    for seg in segments:
        if not _inside(seg.start + seg.direction * max(seg.expected, seg.length), width, height, margin):
            return "its full length would reach past the image border"
    return ""


TORSO = (11, 12, 24, 23)  # a quadrilateral, in order


def _in_polygon(point: np.ndarray, polygon: np.ndarray) -> bool:
    inside = False
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0)):
        if (a[1] > point[1]) != (b[1] > point[1]):
            x = a[0] + (point[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
            inside ^= point[0] < x
    return inside


def _cover_depth(lms: np.ndarray, world: np.ndarray, chain, joint: int) -> float:
    """Depth (MediaPipe's 3D landmarks) of the body part the joint's picture position lies over: the torso when
    inside its outline of shoulders and hips, else the nearest joint of another limb."""
    if _in_polygon(lms[joint, :2], lms[list(TORSO), :2]):
        return float(world[list(TORSO), 2].mean())
    others = [i for _, _, _, c, ext in LIMBS if c != chain for i in (*c, *ext)]
    nearest = min(others, key=lambda i: np.linalg.norm(lms[i, :2] - lms[joint, :2]))
    return float(world[nearest, 2])


def _torso_length(lms: np.ndarray) -> float:
    return float(np.linalg.norm(0.5 * (lms[11, :2] + lms[12, :2]) - 0.5 * (lms[23, :2] + lms[24, :2])))


def _segment_distance(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip((point - a) @ ab / max(float(ab @ ab), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(point - (a + t * ab)))


def _over_other_part(lms: np.ndarray, chain, point: np.ndarray) -> bool:
    """Does the point lie over a part of the body other than this limb: the torso (shoulders to hips, widened a
    little), the head, or a segment of another limb that MediaPipe sees?"""
    torso = _torso_length(lms)
    polygon = lms[list(TORSO), :2]
    edges = zip(polygon, np.roll(polygon, -1, axis=0))
    if _in_polygon(point, polygon) or min(_segment_distance(point, a, b) for a, b in edges) < TORSO_MARGIN * torso:
        return True
    if np.linalg.norm(point - lms[0, :2]) < HEAD_RADIUS * torso:
        return True
    for limb, _, _, other, _ in LIMBS:
        if other == chain:
            continue
        for a, b in ((other[0], other[1]), (other[1], other[2])):
            if min(lms[a, 3], lms[b, 3]) >= HIDDEN_BELOW and \
                    _segment_distance(point, lms[a, :2], lms[b, :2]) < LIMB_WIDTH[limb.split("_")[1]] * torso:
                return True
    return False


def _hidden(lms: np.ndarray, mask: np.ndarray, world: np.ndarray | None, image: np.ndarray | None, chain,
            segments: list[_Segment]) -> str:
    """Why a joint of low visibility may just be out of sight ('' when the picture shows nothing hides it)."""
    if lms[chain[0], 3] < HIDDEN_BELOW:
        return f"hidden: the {JOINT_NAMES[chain[0]]}'s visibility is {lms[chain[0], 3]:.2f}"
    for k, seg in enumerate(segments):
        joint = chain[k + 1]
        if lms[joint, 3] >= HIDDEN_BELOW:
            continue
        what = f"the {JOINT_NAMES[joint]} (visibility {lms[joint, 3]:.2f})"
        reach = _surface_end(mask, seg.start, seg.direction, seg.length, GAP * seg.expected)
        if reach >= 0.9 * seg.length:  # the person's outline all the way: is the joint behind another part?
            # An upper segment starts at the torso. A lower one hides behind another part only where the limb's
            # outline goes on past the elbow or knee and the segment's picture runs over that other part: a
            # missing one drawn folded back over the limb's own stump, whose outline ends there, hides nowhere.
            covered = k == 0 or (
                _arc(mask, segments[0].end, segments[0].direction, seg.expected) >= CONTINUES_AT
                and all(_over_other_part(lms, chain, seg.start + seg.direction * seg.length * t)
                        for t in (0.25, 0.5, 0.75, 1.0)))
            depth = None if world is None else world[joint, 2] - _cover_depth(lms, world, chain, joint)
            if covered and (depth is None or depth > BEHIND_BY):
                return f"hidden: {what} lies behind the person's own body"
            continue  # over the body but not behind another part of it: an arm or leg there would be seen
        if image is None or _occluded(image, mask, seg, reach):
            return f"hidden: something other than the background around the limb covers {what}"
        return ""  # the outline ends and the background continues: nothing hides the rest of the limb
    return ""


def _foreshortened(lms: np.ndarray, mask: np.ndarray, world: np.ndarray | None, limb: str, chain, extremities,
                   segments: list[_Segment]) -> tuple[str, list[bool]]:
    """Segments pointing towards or away from the camera whose limb is seen to its end (the hand or foot points
    visible and on the outline): their shortness in the picture is what an intact limb gives. Returns the veto
    (when that explains every short segment of the limb) and which segments it explains."""
    explained = [False, False]
    if world is None:
        return "", explained
    if any(lms[i, 3] < HIDDEN_BELOW or _mask_at(mask, lms[i, :2]) < 0.5 for i in extremities):
        return "", explained  # the hand or foot is not seen there: foreshortening does not explain a short limb
    reason = ""
    for k, (seg, name) in enumerate(zip(segments, SEGMENT_NAMES[limb.split("_")[1]])):
        v = world[chain[k + 1]] - world[chain[k]]
        size = float(np.linalg.norm(v))
        if size < 1e-6 or abs(v[2]) / size <= FORESHORTENED_ABOVE:
            continue
        covered = _surface_end(mask, seg.start, seg.direction, seg.length, GAP * seg.expected) >= 0.8 * seg.length
        if covered and lms[chain[k + 1], 3] >= HIDDEN_BELOW:
            explained[k] = True
            way = "towards" if v[2] < 0 else "away from"
            angle = np.degrees(np.arcsin(abs(v[2]) / size))
            reason = reason or (f"foreshortened: its {name} points {way} the camera ({angle:.0f}° out of the "
                                "image plane)")
    # a short segment that foreshortening does not explain is still judged (the explained ones count as seen)
    if all(e or seg.length >= WHOLE * seg.expected for e, seg in zip(explained, segments)):
        return reason, explained
    return "", explained


def measure_limbs(lms: np.ndarray, mask: np.ndarray, world: np.ndarray | None = None,
                  image: np.ndarray | None = None) -> list[_Limb]:
    """Each limb's veto (border, hidden, foreshortened, no scale), or its segments' FEATURES."""
    height, width = mask.shape[:2]
    lengths, borders, expected, reaches = {}, {}, {}, {}
    for limb, _, _, chain, extremities in LIMBS:
        lengths[limb] = [float(np.linalg.norm(lms[chain[1], :2] - lms[chain[0], :2])),
                         float(np.linalg.norm(lms[chain[2], :2] - lms[chain[1], :2]))]
        expected[limb] = _expected_lengths(lms, limb.split("_")[1])
        if expected[limb] is not None:
            segs = _segments(lms, chain, expected[limb], [0.0, 0.0])
            borders[limb] = _border(lms, chain, extremities, segs, width, height)
            if not borders[limb]:  # how far this side's outline reaches along its segments, for the other side
                reaches[limb] = [min(_surface_end(mask, g.start, g.direction, g.expected, GAP * g.expected,
                                                  BAND * g.expected)
                                     / g.expected, 1.0) for g in segs]
    out = []
    for limb, _, _, chain, extremities in LIMBS:
        if expected[limb] is None:
            out.append(_Limb(limb, "the torso is not seen whole, or is under "
                                   f"{MIN_TORSO_PX:.0f} px: no scale to judge by"))
            continue
        # the other side's lengths count only where the frame does not cut that side
        other = lengths[OTHER[limb]] if not borders[OTHER[limb]] else [0.0, 0.0]
        segments = _segments(lms, chain, expected[limb], other)
        explained = [False, False]
        why = _border(lms, chain, extremities, segments, width, height) or _hidden(lms, mask, world, image, chain,
                                                                                   segments)
        if not why:
            why, explained = _foreshortened(lms, mask, world, limb, chain, extremities, segments)
        entry = _Limb(limb, why, segments)
        if not why:
            upper, lower = segments
            if lms[chain[2], 3] < HIDDEN_BELOW and float(lower.direction @ upper.direction) < 0.0:
                # MediaPipe folds a missing forearm or shank back over the stump: measure it straight on from the
                # elbow or knee instead, where an intact one would go on
                segments[1] = _Segment(lower.start, lower.start + upper.direction * lower.length, lower.length,
                                       upper.direction, lower.expected)
                entry.folded = True
            torso, kind = _torso_length(lms), limb.split("_")[1]
            entry.upper_typical = max(TYPICAL_RATIO[kind] * torso, other[0])
            entry.upper_reach = _surface_end(mask, segments[0].start, segments[0].direction, entry.upper_typical,
                                             GAP * segments[0].expected, BAND * segments[0].expected)
            # what is left below the elbow or knee: the outline beyond it, not counting other parts of the body
            # (the other leg beside a stump)
            entry.past_middle = _arc(mask, segments[0].end, segments[0].direction, segments[1].expected,
                                     lambda q: _over_other_part(lms, chain, q))
            entry.extremity = _arc(mask, segments[1].end, segments[1].direction, segments[1].expected)
            other_reach = reaches.get(OTHER[limb], [1.0, 1.0])  # the other side cut by the frame: no evidence
            for k, seg in enumerate(segments):
                entry.reach.append(_surface_end(mask, seg.start, seg.direction, seg.expected, GAP * seg.expected,
                                                BAND * seg.expected))
                entry.mask_end.append(_mask_at(mask, seg.end))
                visibility = float(lms[chain[k + 1], 3])
                extremity = entry.extremity if k == 1 else 1.0  # a hand or foot ends only the lower segment
                seen_whole = (entry.reach[k] >= WHOLE * seg.expected and entry.mask_end[k] >= 0.5
                              and visibility >= HIDDEN_BELOW and extremity >= EXTREMITY_AT)
                coverage = _coverage(mask, seg, BAND * seg.expected)
                entry.x.append(None if seen_whole or explained[k] else
                               features(entry.reach[k], seg.length, coverage, entry.mask_end[k], visibility,
                                        seg.expected, extremity, other_reach[k]))
            if entry.x[1] is None:
                entry.x[0] = None  # a lower segment seen whole hangs from an upper one that is there
        out.append(entry)
    return out


def _suggest(lms: np.ndarray, limb: str, kinds: tuple[str, str], chain, entry: _Limb,
             probs: list[float]) -> Suggestion:
    """The suggestion for a limb that looks cut, with its reasons. The level: the upper segment when it looks
    absent itself, or when the outline along it ends short of a typical one (a long stump above the knee or
    elbow looks like a whole thigh or upper arm to the model, which judges each segment against a lower bound)."""
    k_scored = int(probs[1] > probs[0])
    seg, names = entry.segments[k_scored], SEGMENT_NAMES[limb.split("_")[1]]
    joint = JOINT_NAMES[chain[k_scored + 1]]
    reach = entry.reach[k_scored]
    outline = (f"the body outline ends {reach:.0f} px along the {names[k_scored]}" if reach < seg.expected else
               f"the body outline runs the whole {reach:.0f} px along the {names[k_scored]}")
    reasons = [f"p(absent) {probs[k_scored]:.2f} for the {names[k_scored]}",
               f"{outline}, where an intact one is at least {seg.expected:.0f} px long",
               f"the {names[k_scored]} is {seg.length:.0f} px long in the picture",
               f"the outline under the {joint}: {entry.mask_end[k_scored]:.2f}; its visibility "
               f"{lms[chain[k_scored + 1], 3]:.2f}"]
    if k_scored == 1 and entry.folded:
        reasons.append(f"MediaPipe drew the {joint} folded back over the {names[0]}: measured straight on from "
                       f"the {JOINT_NAMES[chain[1]]}")
    if k_scored == 1:
        reasons.append(f"the outline around the {joint}, where the {'hand' if 'arm' in limb else 'foot'} would "
                       f"be: {entry.extremity:.2f}")
    short_upper = entry.upper_reach < LEVEL_AT * entry.upper_typical
    ends_at_middle = entry.past_middle < ENDS_BELOW
    level = 0 if k_scored == 0 or short_upper or ends_at_middle else 1
    if level == 0:
        end = entry.segments[0].start + entry.segments[0].direction * min(entry.upper_reach, entry.reach[0])
        if short_upper:
            reasons.append(f"the outline along the {names[0]} ends {entry.upper_reach:.0f} px from the "
                           f"{JOINT_NAMES[chain[0]]}, short of a typical {names[0]} ({entry.upper_typical:.0f} px)")
        if ends_at_middle:
            reasons.append(f"nothing of the {names[1]} beyond the {JOINT_NAMES[chain[1]]}: the outline ends there")
    else:
        end = seg.start + seg.direction * min(entry.reach[1], seg.length)
    return Suggestion(kinds[level], (float(end[0]), float(end[1])), probs[k_scored], reasons)


def judge_limbs(lms: np.ndarray, mask: np.ndarray, world: np.ndarray | None = None,
                image: np.ndarray | None = None) -> list[LimbJudgement]:
    """Judge every limb of one person. `lms`: (33, 4) x, y (pixels), z, visibility; `mask`: (H, W) person
    segmentation in [0, 1]; `world`: (33, 3) MediaPipe's metric landmarks (None: no foreshortening test);
    `image`: the RGB photo (None: every joint of low visibility counts as hidden)."""
    out = []
    for (limb, upper_kind, lower_kind, chain, _), entry in zip(LIMBS, measure_limbs(lms, mask, world, image)):
        if entry.veto:
            out.append(LimbJudgement(limb, False, entry.veto))
            continue
        probs = [0.0 if x is None else probability(x) for x in entry.x]  # None: the picture shows it whole
        judgement = LimbJudgement(limb, True, probabilities=(probs[0], probs[1]))
        if max(probs) >= SUGGEST_AT:
            judgement.suggestion = _suggest(lms, limb, (upper_kind, lower_kind), chain, entry, probs)
        out.append(judgement)
    return out


def limb_loss_hints(lms: np.ndarray, mask: np.ndarray, world: np.ndarray | None = None,
                    image: np.ndarray | None = None) -> list[Suggestion]:
    return [j.suggestion for j in judge_limbs(lms, mask, world, image) if j.suggestion is not None]
