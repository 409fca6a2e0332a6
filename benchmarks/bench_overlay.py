"""overlay.png over a real-size photo: time to read the photo + draw the overlay + write the PNG (reported, never
asserted).

    python -m benchmarks.bench_overlay [--sizes 1280x720,6000x4000] [--repeat 3] [--full]

The embedded body with a left transtibial cut (core.avatar_mesh.build_mesh), standing upright so that it fills
80% of the image height, over a photo-like JPEG of each size (a gradient with sensor-like noise, written by
Pillow at quality 90: JPEG decoding and PNG compression cost what they cost on a real photo). Each phase is timed
on its own (median of --repeat runs), with the mask as a separate line. --full also times the previous way, the
whole image rasterised at full resolution (raster.shaded), for comparison. Targets: <= 0.5 s at 1280x720,
<= 3 s at 24 MP (6000x4000), read + draw + write.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.camera import Camera
from resihmr_blender.core.image import read_image, write_png
from resihmr_blender.core.keypoints import Person
from resihmr_blender.core.overlay import mask_picture, overlay_picture

TARGETS_S = {(1280, 720): 0.5, (6000, 4000): 3.0}


def body_mesh(model):
    params = {"betas": np.zeros(model.num_betas), "global_orient": np.array([np.pi, 0.0, 0.0]),
              "body_pose": np.zeros(63), "transl": np.zeros(3)}
    return build_mesh(model, params, [("left_transtibial", 0.5)])


def place(mesh, camera: Camera, fill: float = 0.8):
    """The mesh's posed vertices moved in front of the camera so that it fills `fill` of the image height."""
    verts = mesh.rest_vertices if mesh.posed_vertices is None else mesh.posed_vertices
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    depth = camera.focal_length * (hi[1] - lo[1]) / (fill * camera.height)
    placed = verts - (lo + hi) / 2 + np.array([0.0, 0.0, depth])
    return placed


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([90 + 80 * x / width, 110 + 60 * y / height, 140 - 50 * (x + y) / (width + height)], axis=2)
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    return image.clip(0, 255).astype(np.uint8)


def timed(fn, repeat: int):
    """(median wall seconds, median CPU seconds of this process - all its threads -, last result)."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), out


def cell(wall: float, cpu: float) -> str:
    return f"{wall:5.2f} ({cpu:4.2f})"


def run(sizes, repeat: int, full: bool) -> None:
    from PIL import Image

    model = load_body_model()
    mesh = body_mesh(model)
    print(f"# overlay benchmark: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPU(s), mesh {len(mesh.rest_vertices)} vertices / {len(mesh.faces)} faces, "
          f"median of {repeat}")
    print("seconds: wall (CPU of this process; the wall time includes waiting for cores other processes use)")
    print(f"{'size':>11} {'MP':>5} {'read':>12} {'draw':>12} {'write':>12} {'total':>12} {'target':>7} "
          f"{'mask':>12}" + (f" {'full-res draw':>14}" if full else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in sizes:
            camera = Camera.for_image(width, height)
            mesh.posed_vertices = place(mesh, camera)
            uv = camera.project_np(mesh.posed_vertices[::400])[:25]
            person = Person(body25=np.column_stack([uv, np.full(len(uv), 0.9)]))
            photo_file = Path(tmp) / f"photo_{width}x{height}.jpg"
            Image.fromarray(photo_like(width, height)).save(photo_file, quality=90)
            *t_read, photo = timed(lambda: read_image(photo_file), repeat)
            *t_draw, picture = timed(lambda: overlay_picture(camera, [person], [None], [mesh], photo), repeat)
            out = Path(tmp) / "overlay.png"
            *t_write, _ = timed(lambda: write_png(out, picture), repeat)
            *t_mask, _ = timed(lambda: mask_picture(camera, [mesh]), repeat)
            total = [a + b + c for a, b, c in zip(t_read, t_draw, t_write)]
            target = TARGETS_S.get((width, height))
            line = (f"{width:>5}x{height:<5} {width * height / 1e6:5.1f} {cell(*t_read)} {cell(*t_draw)} "
                    f"{cell(*t_write)} {cell(*total)} {('<=' + format(target, 'g')) if target else '-':>7} "
                    f"{cell(*t_mask)}")
            if full:
                from resihmr_blender.core.raster import shaded

                t_full = timed(lambda: shaded(mesh.posed_vertices, mesh.faces, camera, background=photo,
                                              alpha=0.7), 1)
                line += f" {cell(*t_full[:2]):>14}"
            print(line, flush=True)
    print(f"# command: {' '.join([Path(sys.executable).name, '-m', 'benchmarks.bench_overlay', *sys.argv[1:]])}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1280x720,6000x4000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time full-resolution rasterising (slow)")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",") if s]
    run(sizes, args.repeat, args.full)


if __name__ == "__main__":
    main()
