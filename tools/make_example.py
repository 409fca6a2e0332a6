"""Make the bundled demo input: a SYNTHETIC person (the embedded default body) with two known amputations.

    python tools/make_example.py [--out examples/demo]

Writes keypoints.json (OpenPose-extended, DESIGN §3.4), photo_synthetic.png (a flat-shaded render of the
amputated body, clearly not a photograph) and ground_truth.json (parameters, λ, residual lengths). The
detector-style keypoints include the usual failure on amputees: the missing foot is reported with high
confidence along a prosthesis, and the missing hand squeezed into the stump.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resihmr_blender.core.body_model import JOINT_INDEX, load_body_model  # noqa: E402
from resihmr_blender.core.camera import Camera  # noqa: E402
from resihmr_blender.core.image import write_png  # noqa: E402
from resihmr_blender.core.keypoints import KeypointsFile, Person  # noqa: E402
from resihmr_blender.core.keypoints_io import write_keypoints  # noqa: E402
from resihmr_blender.core.layouts import BODY25_INDEX  # noqa: E402
from resihmr_blender.core.raster import shaded  # noqa: E402
from resihmr_blender.core.residuals import RESIDUAL_KINDS, residual_by_name  # noqa: E402
from resihmr_blender.core.rotations import matrix_to_axis_angle  # noqa: E402
from resihmr_blender.core.stump import cut_plane, removed_vertices  # noqa: E402

AMPUTATIONS = {"left_transtibial": 0.45, "right_transradial": 0.35}


def body_pose() -> np.ndarray:
    pose = np.zeros((22, 3))
    pose[JOINT_INDEX["left_shoulder"]] = [0.0, 0.1, -1.15]
    pose[JOINT_INDEX["right_shoulder"]] = [0.0, -0.1, 1.05]
    pose[JOINT_INDEX["left_elbow"]] = [0.0, -0.35, 0.0]
    pose[JOINT_INDEX["right_elbow"]] = [0.0, 0.5, 0.0]
    pose[JOINT_INDEX["left_hip"]] = [-0.15, 0.0, 0.08]
    pose[JOINT_INDEX["left_knee"]] = [0.25, 0.0, 0.0]
    pose[JOINT_INDEX["right_hip"]] = [0.05, 0.0, -0.05]
    pose[JOINT_INDEX["spine2"]] = [0.05, 0.05, 0.0]
    pose[JOINT_INDEX["neck"]] = [0.05, -0.1, 0.0]
    return pose[1:].reshape(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples/demo")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    model = load_body_model(dtype=torch.float64)
    camera = Camera(width=1080, height=1920, focal_length=1600.0)
    yaw = math.radians(20)
    r_yaw = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    r_flip = np.diag([1.0, -1.0, -1.0])  # half turn about x: facing the camera
    params = {"betas": np.array([0.8, -0.5, 0.3, 0.0, 0.4, -0.2, 0.1, 0.0, 0.0, 0.0]),
              "global_orient": matrix_to_axis_angle(r_yaw @ r_flip), "body_pose": body_pose(),
              "transl": np.array([0.02, 0.05, 2.6])}
    t = {k: torch.tensor(v)[None] for k, v in params.items()}
    full = model.forward(**t)
    joints, verts = full.joints[0].numpy(), full.vertices[0].numpy()
    kp2d = camera.project_np(full.body25[0].numpy())

    body25 = np.c_[kp2d + rng.normal(0, 2.0, kp2d.shape), rng.uniform(0.75, 0.95, 25)]
    residual = np.zeros((8, 3))
    removed = np.zeros(len(verts), bool)
    truth = {}
    for kind_name, lam in AMPUTATIONS.items():
        kind = residual_by_name(kind_name)
        ja, jt = joints[JOINT_INDEX[kind.anchor_joint]], joints[JOINT_INDEX[kind.upstream_joint]]
        end3d = ja + lam * (jt - ja)
        end2d = camera.project_np(end3d)
        residual[RESIDUAL_KINDS.index(kind_name)] = [*(end2d + rng.normal(0, 2.0, 2)), 0.9]
        removed |= removed_vertices(verts, model.weights.numpy(), kind, cut_plane(ja, jt, lam))
        truth[kind_name] = {"lambda": lam, "endpoint_2d": end2d.tolist(), "endpoint_3d": end3d.tolist(),
                            "residual_length_m": float((1 - lam) * np.linalg.norm(jt - ja))}
    # detector hallucinations: a foot along a prosthesis continuing the shank; a hand squeezed into the stump
    knee2d, tip2d = kp2d[BODY25_INDEX["LKnee"]], np.array(truth["left_transtibial"]["endpoint_2d"])
    direction = (tip2d - knee2d) / np.linalg.norm(tip2d - knee2d)
    shank_px = np.linalg.norm(kp2d[BODY25_INDEX["LAnkle"]] - knee2d)
    prosthesis = {"LAnkle": 1.0, "LHeel": 1.08, "LBigToe": 1.12, "LSmallToe": 1.1}
    for name, f in prosthesis.items():
        side = np.array([-direction[1], direction[0]]) * (12.0 if "Toe" in name else -8.0)
        body25[BODY25_INDEX[name]] = [*(knee2d + f * shank_px * direction + (side if f > 1 else 0)), 0.8]
    stump = np.array(truth["right_transradial"]["endpoint_2d"])
    body25[BODY25_INDEX["RWrist"]] = [*(stump + rng.normal(0, 4.0, 2)), 0.7]

    kfile = KeypointsFile(path=None, people=[Person(body25=body25, residual=residual)],
                          image_path="photo_synthetic.png", image_width=camera.width, image_height=camera.height,
                          focal_length_px=camera.focal_length)
    write_keypoints(out / "keypoints.json", kfile)
    keep = ~removed[model.faces].any(axis=1)
    background = np.tile(np.linspace(250, 200, camera.height)[:, None, None], (1, camera.width, 3))
    write_png(out / "photo_synthetic.png", shaded(verts, model.faces[keep], camera, background=background,
                                                  alpha=1.0))
    document = {"note": "SYNTHETIC example: the embedded default body rendered with known amputations",
                "params": {k: np.asarray(v).tolist() for k, v in params.items()},
                "camera": camera.to_json(), "residuals": truth, "body25_2d": kp2d.tolist()}
    (out / "ground_truth.json").write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {out}/keypoints.json, photo_synthetic.png, ground_truth.json")


if __name__ == "__main__":
    main()
