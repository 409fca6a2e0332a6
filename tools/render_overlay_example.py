"""Render the Workbench overlay of the bundled example through the add-on's own steps (as a user would).

    python tools/render_overlay_example.py [--out docs/overlay_example.png]

Prints how long each panel step takes on this machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import resihmr_blender  # noqa: E402
from resihmr_blender.core.image import read_png  # noqa: E402
from resihmr_blender.mesh.render import render_overlay  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/overlay_example.png")
    args = parser.parse_args()
    bpy.ops.wm.read_homefile(use_empty=True)
    resihmr_blender.register()
    steps = [("Load photo", lambda: bpy.ops.resihmr.load_photo(filepath=str(EXAMPLE / "photo_synthetic.png"))),
             ("Load keypoints", lambda: bpy.ops.resihmr.load_keypoints(filepath=str(EXAMPLE / "keypoints.json"))),
             ("Fit (fit + RAFO + measurements)", lambda: bpy.ops.resihmr.fit()),
             ("Cut and seal", lambda: bpy.ops.resihmr.cut_residual()),
             ("Overlay render (Workbench)", lambda: render_overlay(bpy.context.scene, args.out,
                                                                   read_png(EXAMPLE / "photo_synthetic.png"))),
             ("Export GLB", lambda: bpy.ops.resihmr.export(filepath="/tmp/resihmr_example.glb", preset="web"))]
    for name, step in steps:
        if name == "Cut and seal":
            bpy.context.view_layer.objects.active = bpy.data.objects["ResiHMR"]
        start = time.perf_counter()
        step()
        print(f"| {name} | {time.perf_counter() - start:.2f} s |")
    resihmr_blender.unregister()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
