"""The 8 residual-limb kinds (DESIGN §3.3) and the rule "at most one kind per limb".

Every module that needs a kind's anchor, upstream joint or distal keypoints reads it here: the fit (which
keypoints to ignore), RAFO (eq. 3's Ja and Jt), the cut (which body parts go), the Blender properties.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layouts import BODY25_INDEX, N_BODY25, N_RESIDUAL

LIMBS: tuple[str, ...] = ("right_arm", "left_arm", "right_leg", "left_leg")


@dataclass(frozen=True)
class ResidualKind:
    """One of the 8 residual-limb kinds (DESIGN §3.3).

    The endpoint is ``R = Ja + λ (Jt − Ja)`` with ``Ja`` the anchor and ``Jt`` the upstream joint.
    ``distal_body25`` lists the BODY_25 keypoints beyond the endpoint; detectors hallucinate them,
    so the fit must ignore them even when they come with high confidence.
    """

    name: str
    ldpose_name: str
    limb: str
    anchor_joint: str
    upstream_joint: str
    anchor_body25: int
    upstream_body25: int
    distal_body25: tuple[int, ...]


def _kind(name: str, ldpose: str, limb: str, anchor: str, upstream: str, distal: Sequence[str]) -> ResidualKind:
    # SMPL-X joint name "right_elbow" <-> BODY_25 name "RElbow".
    def b25(joint: str) -> int:
        side, part = joint.split("_", 1)
        return BODY25_INDEX[side[0].upper() + part.capitalize()]

    return ResidualKind(name, ldpose, limb, anchor, upstream, b25(anchor), b25(upstream),
                        tuple(BODY25_INDEX[d] for d in distal))


# Fixed order of DESIGN §3.3. The anchor itself is distal: e.g. a transhumeral residual ends between
# shoulder and elbow, so any elbow a detector reports is hallucinated.
RESIDUALS: tuple[ResidualKind, ...] = (
    _kind("right_transhumeral", "above_right_elbow_end", "right_arm", "right_elbow", "right_shoulder",
          ("RElbow", "RWrist")),
    _kind("right_transradial", "below_right_elbow_end", "right_arm", "right_wrist", "right_elbow", ("RWrist",)),
    _kind("left_transhumeral", "above_left_elbow_end", "left_arm", "left_elbow", "left_shoulder",
          ("LElbow", "LWrist")),
    _kind("left_transradial", "below_left_elbow_end", "left_arm", "left_wrist", "left_elbow", ("LWrist",)),
    _kind("right_transfemoral", "above_right_knee_end", "right_leg", "right_knee", "right_hip",
          ("RKnee", "RAnkle", "RBigToe", "RSmallToe", "RHeel")),
    _kind("right_transtibial", "below_right_knee_end", "right_leg", "right_ankle", "right_knee",
          ("RAnkle", "RBigToe", "RSmallToe", "RHeel")),
    _kind("left_transfemoral", "above_left_knee_end", "left_leg", "left_knee", "left_hip",
          ("LKnee", "LAnkle", "LBigToe", "LSmallToe", "LHeel")),
    _kind("left_transtibial", "below_left_knee_end", "left_leg", "left_ankle", "left_knee",
          ("LAnkle", "LBigToe", "LSmallToe", "LHeel")),
)
RESIDUAL_KINDS: tuple[str, ...] = tuple(k.name for k in RESIDUALS)
LDPOSE_NAMES: tuple[str, ...] = tuple(k.ldpose_name for k in RESIDUALS)
_RESIDUAL_BY_NAME: dict[str, ResidualKind] = {k.name: k for k in RESIDUALS}


def residual_by_name(name: str) -> ResidualKind:
    """The :class:`ResidualKind` called ``name`` (our kind name or its LDPose name)."""
    if name in _RESIDUAL_BY_NAME:
        return _RESIDUAL_BY_NAME[name]
    for kind in RESIDUALS:
        if kind.ldpose_name == name:
            return kind
    raise KeyError(f"unknown residual kind {name!r}; known kinds: {', '.join(RESIDUAL_KINDS)}")


def _residual_flags(residual_flags: Any) -> np.ndarray:
    """Normalise the accepted spellings of "which kinds are present" to a bool (8,) array."""
    if isinstance(residual_flags, str):
        residual_flags = [residual_flags]
    if not isinstance(residual_flags, np.ndarray):
        residual_flags = list(residual_flags)
        if all(isinstance(x, str) for x in residual_flags) and residual_flags:
            present = {residual_by_name(x).name for x in residual_flags}
            return np.array([k in present for k in RESIDUAL_KINDS], dtype=bool)
    arr = np.asarray(residual_flags)
    if arr.shape == (N_RESIDUAL, 3):  # a Person.residual array: present where confidence > 0
        return arr[:, 2].astype(np.float64) > 0
    if arr.shape == (N_RESIDUAL,):
        return arr.astype(bool) if arr.dtype == bool else arr.astype(np.float64) > 0
    if arr.size == 0:
        return np.zeros(N_RESIDUAL, dtype=bool)
    raise ValueError(f"residual flags must be 8 flags, an (8, 3) residual array or kind names; got shape {arr.shape}")


def distal_mask(residual_flags: Any) -> np.ndarray:
    """Bool (25,) mask of BODY_25 keypoints the fit must ignore.

    ``residual_flags``: 8 flags in :data:`RESIDUAL_KINDS` order (truthy = present), a
    ``Person.residual`` (8, 3) array (present = confidence > 0), or an iterable of kind names.
    """
    flags = _residual_flags(residual_flags)
    mask = np.zeros(N_BODY25, dtype=bool)
    for kind, present in zip(RESIDUALS, flags):
        if present:
            mask[list(kind.distal_body25)] = True
    return mask


def ignored_hands(residual_flags: Any) -> tuple[bool, bool]:
    """(left, right): whether that hand's 21 keypoints are hallucinated (an arm residual on that side)."""
    flags = _residual_flags(residual_flags)
    limbs = {kind.limb for kind, present in zip(RESIDUALS, flags) if present}
    return "left_arm" in limbs, "right_arm" in limbs


# --------------------------------------------------------------------------------------------
# COCO / LDPose layout


def limb_conflict(kinds: Iterable[str]) -> tuple[str, str] | None:
    """The rule of DESIGN §3.3, one limb takes one residual kind: the first (earlier, later) pair of kinds
    that share a limb, in the order given, or None."""
    seen: dict[str, str] = {}
    for name in kinds:
        limb = residual_by_name(name).limb
        if limb in seen:
            return seen[limb], residual_by_name(name).name
        seen[limb] = residual_by_name(name).name
    return None


def limb_label(kind: str) -> str:
    """'left leg' for a kind on the left leg (for messages)."""
    return residual_by_name(kind).limb.replace("_", " ")
