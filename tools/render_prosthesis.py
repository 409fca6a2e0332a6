"""Render avatars with and without their prostheses with Blender's Workbench: standing and in a walking frame.

    python tools/render_prosthesis.py [--out docs/prosthesis.png] [--size 400]

Two rows: the demo's amputations (right transradial with a split hook, left transtibial) and a right
transfemoral (with a pylon cover) + left transhumeral (hand). Each row: without prostheses, with them standing
(front), with them in a walking frame (from the side of the leg prosthesis).
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
from resihmr_blender.mesh.build import apply_pose, build_avatar  # noqa: E402
from resihmr_blender.mesh.cut import cut_residual  # noqa: E402
from resihmr_blender.mesh.prosthesis import add_prosthesis, devices  # noqa: E402

CASES = ((("right_transradial", 0.55, "hook", False), ("left_transtibial", 0.45, None, False)),
         (("right_transfemoral", 0.5, None, True), ("left_transhumeral", 0.45, "hand", False)))


def body_pose(walking: bool) -> np.ndarray:
    pose = np.zeros((22, 3))
    pose[JOINT_INDEX["left_shoulder"], 2] = -1.2  # arms down
    pose[JOINT_INDEX["right_shoulder"], 2] = 1.2
    if walking:
        pose[JOINT_INDEX["left_hip"], 0] = -0.45  # left leg forward
        pose[JOINT_INDEX["right_hip"], 0] = 0.3
        pose[JOINT_INDEX["right_knee"], 0] = 0.6
        pose[JOINT_INDEX["left_knee"], 0] = 0.1
        pose[JOINT_INDEX["left_shoulder"], 1] = 0.35  # arms swing against the legs
        pose[JOINT_INDEX["right_shoulder"], 1] = 0.35
        pose[JOINT_INDEX["right_elbow"], 1] = 0.5
        pose[JOINT_INDEX["left_elbow"], 1] = -0.3
    return pose[1:].reshape(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/prosthesis.png")
    parser.add_argument("--size", type=int, default=400)
    args = parser.parse_args()
    model = load_body_model()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r, case in enumerate(CASES):
            new_workbench_scene()
            params = {"betas": np.array([0.8, -0.5, 0.3, 0, 0.4, -0.2, 0.1, 0, 0, 0.0]),
                      "global_orient": np.array([math.pi, 0.0, 0.0]), "body_pose": body_pose(False),
                      "transl": np.zeros(3)}
            arm, obj = build_avatar(model, params)
            for kind, lam, _, _ in case:
                cut_residual(obj, kind, lam)
            row = []
            path = Path(tmp) / f"{r}_without.png"
            render_view([obj], 0.0, args.size, path)
            row.append(read_png(path)[..., :3])
            for kind, _, terminal, cover in case:
                add_prosthesis(obj, kind, terminal=terminal, cover=cover)
            path = Path(tmp) / f"{r}_with.png"
            render_view([obj, *devices(obj)], 0.0, args.size, path)
            row.append(read_png(path)[..., :3])
            apply_pose(arm, {**params, "body_pose": body_pose(True)})
            leg = next(kind for kind, *_ in case if "tibial" in kind or "femoral" in kind)
            path = Path(tmp) / f"{r}_walking.png"
            render_view([obj, *devices(obj)], 1.0 if leg.startswith("left") else -1.0, args.size, path)
            row.append(read_png(path)[..., :3])
            rows.append(np.concatenate(row, axis=1))
    write_png(args.out, np.concatenate(rows, axis=0))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
