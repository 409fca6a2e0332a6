"""Natural poses for the embedded SMPL-X body, without mocap data: hand-authored keyframes and a sampler.

Conventions (measured on the model, see tests/test_synth.py): at the T-pose rest every joint frame is aligned
with the SMPL-X frame (y up, subject's left = +x, facing +z), and a joint's rotation acts in its parent's
frame. With right-handed rotations that gives:

* shoulder, left arm (along +x): z- lowers it to the side, z+ raises it; x- swings it forward. The right arm
  (along -x) mirrors the z sign; the x sign is the same. A twist about x turns the elbow's bending plane.
* elbow: bends about its local y; the left flexes with y-, the right with y+ (forearm forwards/up).
* hip: x- flexes (thigh forwards), x+ extends; z+ abducts the left leg, z- the right.
* knee: x+ flexes (ankle moves backwards, -z); x- would hyperextend and is never produced.
* ankle: x- lifts the toes (dorsiflexion). spine/neck/head: x+ bends forwards, z+ leans to the subject's
  right, y+ turns to the subject's left.
"""
from __future__ import annotations

import math

import numpy as np

from resihmr_blender.core.body_model import JOINT_NAMES, NUM_BODY_JOINTS
from resihmr_blender.core.rotations import matrix_to_axis_angle, rot, slerp

BODY_JOINTS: tuple[str, ...] = JOINT_NAMES[1:NUM_BODY_JOINTS + 1]  # body_pose order (joints 1..21)
_BODY_INDEX = {name: i for i, name in enumerate(BODY_JOINTS)}


# ---------------------------------------------------------------------------------------------------------------
# Rotation helpers (numpy, so the generator needs no autograd)


# ---------------------------------------------------------------------------------------------------------------
# Keyframes


def keyframe(**joints: list[tuple[str, float]]) -> np.ndarray:
    """body_pose (63,) from per-joint lists of elementary rotations; the first in a list acts first."""
    pose = np.zeros((NUM_BODY_JOINTS, 3))
    for name, steps in joints.items():
        m = np.eye(3)
        for axis, angle in steps:
            m = rot(axis, angle) @ m
        pose[_BODY_INDEX[name]] = matrix_to_axis_angle(m)
    return pose.reshape(-1)


def _arm(side: str, down: float = 1.3, forward: float = 0.0, twist: float = 0.0, elbow: float = 0.2,
         collar: float = 0.0) -> dict[str, list[tuple[str, float]]]:
    """One arm: lowered by `down` from the T-pose, swung `forward` (negative = back), elbow flexed `elbow`.

    `twist` turns the arm about its own axis first, which tilts the elbow's bending plane: -π/2 makes the
    forearm bend upwards (waving), +π/2 makes it bend downwards/inwards in the frontal plane (hands on hips).
    """
    sign = 1.0 if side == "right" else -1.0  # mirrored z (abduction) and elbow y signs
    return {f"{side}_shoulder": [("x", twist), ("z", sign * down), ("x", -forward)],
            f"{side}_elbow": [("y", sign * elbow)],
            f"{side}_collar": [("z", -sign * collar)]}  # collar z raises the shoulder


def _arms(**kw: float) -> dict[str, list[tuple[str, float]]]:
    """Both arms: keyword `left_down=...`, `right_elbow=...` etc.; unset ones keep the relaxed default."""
    out: dict[str, list[tuple[str, float]]] = {}
    for side in ("left", "right"):
        out.update(_arm(side, **{k[len(side) + 1:]: v for k, v in kw.items() if k.startswith(side + "_")}))
    return out


KEYFRAMES: dict[str, np.ndarray] = {
    # arms ~75° down from the T-pose, elbows slightly bent, knees soft
    "standing": keyframe(**_arms(), left_knee=[("x", 0.05)], right_knee=[("x", 0.05)]),
    # walking, left leg forward in swing / right leg behind, opposite arms swing
    "walk_left_step": keyframe(**_arms(left_forward=-0.35, right_forward=0.4, left_elbow=0.25, right_elbow=0.5),
                               left_hip=[("x", -0.45)], left_knee=[("x", 0.25)], left_ankle=[("x", -0.1)],
                               right_hip=[("x", 0.25)], right_knee=[("x", 0.35)], right_ankle=[("x", 0.2)],
                               spine2=[("y", 0.06)]),
    "walk_right_step": keyframe(**_arms(right_forward=-0.35, left_forward=0.4, right_elbow=0.25, left_elbow=0.5),
                                right_hip=[("x", -0.45)], right_knee=[("x", 0.25)], right_ankle=[("x", -0.1)],
                                left_hip=[("x", 0.25)], left_knee=[("x", 0.35)], left_ankle=[("x", 0.2)],
                                spine2=[("y", -0.06)]),
    # mid-swing: the swinging leg's knee strongly flexed, the foot passing under the body
    "walk_left_swing": keyframe(**_arms(left_forward=-0.1, right_forward=0.15, right_elbow=0.4),
                                left_hip=[("x", -0.35)], left_knee=[("x", 1.0)], left_ankle=[("x", 0.1)],
                                right_hip=[("x", 0.05)], right_knee=[("x", 0.1)]),
    "wave_left": keyframe(**_arms(left_down=-0.35, left_twist=-1.5, left_elbow=1.7, left_collar=0.15),
                          spine2=[("z", 0.05)], neck=[("y", 0.15)]),
    "wave_right": keyframe(**_arms(right_down=-0.35, right_twist=-1.5, right_elbow=1.7, right_collar=0.15),
                           spine2=[("z", -0.05)], neck=[("y", -0.15)]),
    "hands_on_hips": keyframe(**_arms(left_down=0.75, right_down=0.75, left_twist=1.35, right_twist=1.35,
                                      left_elbow=1.7, right_elbow=1.7, left_forward=-0.3, right_forward=-0.3)),
    # `forward` swings a lowered arm about x, so a horizontal reach starts from an arm hanging (almost) down
    "reach_forward": keyframe(**_arms(right_down=1.5, right_forward=1.45, right_elbow=0.15, left_forward=0.3),
                              spine1=[("x", 0.15)], spine2=[("x", 0.1)]),
    # arms 45° down, the pose of photos taken for avatars
    "a_pose": keyframe(**_arms(left_down=0.75, right_down=0.75, left_elbow=0.1, right_elbow=0.1)),
    "sitting": keyframe(**_arms(left_forward=0.55, right_forward=0.55, left_elbow=0.9, right_elbow=0.9),
                        left_hip=[("x", -1.5)], right_hip=[("x", -1.5)], left_knee=[("x", 1.5)],
                        right_knee=[("x", 1.5)], spine1=[("x", 0.05)]),
    "squat": keyframe(**_arms(left_forward=1.3, right_forward=1.3, left_down=1.5, right_down=1.5),
                      left_hip=[("x", -1.55), ("z", 0.2)], right_hip=[("x", -1.55), ("z", -0.2)],
                      left_knee=[("x", 1.9)], right_knee=[("x", 1.9)], left_ankle=[("x", -0.35)],
                      right_ankle=[("x", -0.35)], spine1=[("x", 0.3)], spine2=[("x", 0.1)]),
    # kneeling on the right knee, left foot planted in front
    "kneel": keyframe(**_arms(left_forward=0.3, left_elbow=0.8), left_hip=[("x", -1.5)], left_knee=[("x", 1.55)],
                      right_hip=[("x", 0.05)], right_knee=[("x", 1.6)], right_ankle=[("x", 0.5)]),
    "side_step": keyframe(**_arms(left_down=1.05, right_down=1.4), left_hip=[("z", 0.35)],
                          left_knee=[("x", 0.1)], right_hip=[("z", -0.08)], spine1=[("z", -0.05)]),
    "lean": keyframe(**_arms(right_down=1.45, left_down=1.15), spine1=[("z", 0.12)], spine2=[("z", 0.12)],
                     spine3=[("z", 0.08)], neck=[("z", -0.1)], left_hip=[("z", 0.1)]),
    "look_sideways": keyframe(**_arms(), neck=[("y", 0.45)], head=[("y", 0.35), ("x", 0.1)],
                              spine3=[("y", 0.15)]),
}


# ---------------------------------------------------------------------------------------------------------------
# Limits and sampling

_WIDE = (-math.pi, math.pi)


def _limits() -> tuple[np.ndarray, np.ndarray]:
    """Per-joint axis-angle component bounds (21, 3). Tight where a joint is a hinge (knees, elbows)."""
    low = np.full((NUM_BODY_JOINTS, 3), -math.pi)
    high = np.full((NUM_BODY_JOINTS, 3), math.pi)

    def set_(name: str, x=_WIDE, y=_WIDE, z=_WIDE) -> None:
        i = _BODY_INDEX[name]
        low[i], high[i] = (x[0], y[0], z[0]), (x[1], y[1], z[1])

    for side, s in (("left", 1.0), ("right", -1.0)):
        abduct = (-0.45, 1.0) if s > 0 else (-1.0, 0.45)
        set_(f"{side}_hip", x=(-2.2, 0.6), y=(-0.7, 0.7), z=abduct)
        # knee: flexion only (x >= 0: no hyperextension); little twist, almost no side bending
        set_(f"{side}_knee", x=(0.0, 2.4), y=(-0.25, 0.25), z=(-0.08, 0.08))
        set_(f"{side}_ankle", x=(-0.6, 0.8), y=(-0.3, 0.3), z=(-0.3, 0.3))
        set_(f"{side}_foot", x=(-0.4, 0.4), y=(-0.2, 0.2), z=(-0.2, 0.2))
        set_(f"{side}_collar", x=(-0.3, 0.3), y=(-0.4, 0.4), z=(-0.4, 0.4))
        # elbow: flexion only about y (left y <= 0, right y >= 0); forearm twist about x; no side bending
        flex = (-2.5, 0.0) if s > 0 else (0.0, 2.5)
        set_(f"{side}_elbow", x=(-0.6, 0.6), y=flex, z=(-0.1, 0.1))
        set_(f"{side}_wrist", x=(-0.8, 0.8), y=(-0.6, 0.6), z=(-0.8, 0.8))
    for name in ("spine1", "spine2", "spine3"):
        set_(name, x=(-0.35, 0.7), y=(-0.5, 0.5), z=(-0.4, 0.4))
    set_("neck", x=(-0.5, 0.6), y=(-0.9, 0.9), z=(-0.5, 0.5))
    set_("head", x=(-0.5, 0.6), y=(-0.7, 0.7), z=(-0.4, 0.4))
    return low.reshape(-1), high.reshape(-1)


LIMIT_LOW, LIMIT_HIGH = _limits()

# Per-joint perturbation scale (radians, per axis-angle component); drawn N(0, σ) and cut at 2σ.
_NOISE_SIGMA = {"spine1": 0.04, "spine2": 0.04, "spine3": 0.04, "neck": 0.06, "head": 0.06,
                "left_collar": 0.03, "right_collar": 0.03, "left_foot": 0.03, "right_foot": 0.03}
NOISE_SIGMA = np.repeat([_NOISE_SIGMA.get(n, 0.08) for n in BODY_JOINTS], 3)


def clamp_to_limits(body_pose: np.ndarray) -> np.ndarray:
    """Clip a (..., 63) body_pose to the joint limits (knees and elbows never hyperextend)."""
    return np.clip(body_pose, LIMIT_LOW, LIMIT_HIGH)


def sample_pose(rng: np.random.Generator, keyframes: dict[str, np.ndarray] | None = None
                ) -> tuple[np.ndarray, tuple[str, str, float]]:
    """A natural body_pose (63,): two keyframes slerped at a random t, small bounded noise, clipped to limits.

    Returns the pose and (keyframe a, keyframe b, t) so a sample can be traced back.
    """
    keyframes = KEYFRAMES if keyframes is None else keyframes
    names = list(keyframes)
    ia, ib = rng.choice(len(names), 2, replace=False)
    t = float(rng.uniform(0.0, 1.0))
    a, b = keyframes[names[ia]].reshape(-1, 3), keyframes[names[ib]].reshape(-1, 3)
    pose = slerp(a, b, t).reshape(-1)
    noise = np.clip(rng.normal(0.0, 1.0, pose.shape), -2.0, 2.0) * NOISE_SIGMA
    return clamp_to_limits(pose + noise), (names[ia], names[ib], t)


def sample_poses(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 63) natural body poses."""
    return np.stack([sample_pose(rng)[0] for _ in range(n)]) if n else np.zeros((0, 63))
