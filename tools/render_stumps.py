"""Render the live avatar after a cut with Blender's Workbench: front, side and T-pose, residual limb in red.

    python tools/render_stumps.py [--out docs/stumps.png]

Two cases: a left transtibial (λ = 0.45) and a right transhumeral (λ = 0.5) amputation of the embedded body
in a relaxed pose. Each row: posed front, posed side, T-pose (rest) front.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workbench_views import new_workbench_scene, render_view  # noqa: E402  (beside this script)

from resihmr_blender.core.body_model import JOINT_INDEX, load_body_model  # noqa: E402
from resihmr_blender.core.image import read_png, write_png  # noqa: E402
from resihmr_blender.mesh.build import build_avatar  # noqa: E402
from resihmr_blender.mesh.cut import cut_residual  # noqa: E402

CASES = (("left_transtibial", 0.45), ("right_transhumeral", 0.5))


def relaxed_pose() -> np.ndarray:
    pose = np.zeros((22, 3))
    pose[JOINT_INDEX["left_shoulder"], 2] = -1.1
    pose[JOINT_INDEX["right_shoulder"], 2] = 1.1
    pose[JOINT_INDEX["left_elbow"], 1] = -0.3
    pose[JOINT_INDEX["right_elbow"], 1] = 0.3
    pose[JOINT_INDEX["left_knee"], 0] = 0.15
    return pose[1:].reshape(-1)


def render_stump_view(obj, arm, rest: bool, side: float, size: int, path: Path) -> None:
    arm.data.pose_position = "REST" if rest else "POSE"
    render_view([obj], side, size, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/stumps.png")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    model = load_body_model()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, lam in CASES:
            new_workbench_scene()
            params = {"betas": np.array([0.5, -0.3, 0.2, 0, 0, 0, 0, 0, 0, 0.0]),
                      "global_orient": np.array([math.pi, 0.0, 0.0]), "body_pose": relaxed_pose(),
                      "transl": np.zeros(3)}
            arm, obj = build_avatar(model, params)
            cut_residual(obj, kind, lam)
            row = []
            toward = 1.0 if kind.startswith("left") else -1.0  # look at the cut side
            for i, (rest, side) in enumerate(((False, 0.0), (False, toward), (True, 0.0))):
                path = Path(tmp) / f"{kind}_{i}.png"
                render_stump_view(obj, arm, rest, side, args.size, path)
                row.append(read_png(path)[..., :3])
            rows.append(np.concatenate(row, axis=1))
    write_png(args.out, np.concatenate(rows, axis=0))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
