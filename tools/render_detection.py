"""Picture of the detector on the bundled example: detected keypoints (green), limb-loss suggestions (yellow
rings at the suggested endpoints), the person segmentation dimmed in.

    python tools/render_detection.py [--out docs/detection_example.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resihmr_blender.core.image import write_png  # noqa: E402
from resihmr_blender.core.raster import draw_points  # noqa: E402
from resihmr_blender.detect import detect, read_image  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "photo_synthetic.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/detection_example.png")
    args = parser.parse_args()
    image = read_image(PHOTO)
    found = detect(image)
    canvas = (image * (0.55 + 0.45 * found.mask[..., None])).astype(np.uint8)
    kp = found.person.body25
    draw_points(canvas, kp[kp[:, 2] > 0, :2], (30, 170, 60), radius=7)
    for s in found.suggestions:
        draw_points(canvas, [s.endpoint], (250, 200, 0), radius=16)
        draw_points(canvas, [s.endpoint], (200, 40, 40), radius=7)
        print(f"suggested {s.kind} at ({s.endpoint[0]:.0f}, {s.endpoint[1]:.0f}) score {s.score:.2f}: "
              f"{'; '.join(s.reasons)}")
    write_png(args.out, canvas)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
