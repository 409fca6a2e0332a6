"""`make demo`: the bundled synthetic example through everything that exists, for real.

Today that is: fit -> RAFO -> pose feedback -> result.json, plus overlay.png (the fitted body over the photo,
distal parts of accepted residual limbs removed, the residual segment in red, keypoints drawn). The terminal
shows λ, the reprojection error and the residual length of each limb beside the example's ground truth.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo"


def run_demo(out_dir: Path, example: Path = EXAMPLE) -> int:

    from .core.body_model import load_body_model
    from .core.image import read_png, write_png
    from .core.keypoints import read_keypoints
    from .core.pipeline import (
        PersonFailure,
        camera_for,
        measure_people,
        reconstruct,
        result_document,
        write_json_atomic,
    )
    from .core.raster import draw_points, shaded

    t0 = time.perf_counter()
    model = load_body_model()
    kfile = read_keypoints(example / "keypoints.json")
    camera = camera_for(kfile)
    results = reconstruct(model, kfile.people, [camera] * len(kfile.people))
    meshes = measure_people(model, results, pose=True)
    write_json_atomic(out_dir / "result.json", result_document(model, camera, results, source=str(example)))
    truth = json.loads((example / "ground_truth.json").read_text())["residuals"]

    background = read_png(example / kfile.image_path) if kfile.image_path else None
    image = None
    for person, res in zip(kfile.people, results):
        if isinstance(res, PersonFailure):
            print(f"person failed: {res.reason}")
            continue
        mesh = meshes[results.index(res)]
        if mesh is None:
            continue
        faces = mesh.faces
        colors = np.where(mesh.residual_mask[faces].all(axis=1)[:, None], [[220.0, 40.0, 40.0]],
                          [[190.0, 200.0, 215.0]])
        image = shaded(mesh.posed_vertices, faces, camera, background=image if image is not None else background,
                       face_colors=colors, alpha=0.7)
        draw_points(image, person.body25[person.body25[:, 2] > 0, :2], (30, 160, 60), radius=6)
        draw_points(image, person.residual[person.residual[:, 2] > 0, :2], (250, 190, 0), radius=8)
        draw_points(image, res.body25_2d[res.fit.used], (40, 70, 200), radius=4)
        print(f"fit error {res.fit.fit_error_px:.1f} px over {int(res.fit.used.sum())} keypoints "
              f"(ignored as distal: {int((person.body25[:, 2] > 0).sum() - res.fit.used.sum())})")
        for r in res.residuals:
            gt = truth.get(r.kind, {})
            print(f"  {r.kind:18s} λ = {r.lam:.3f} (truth {gt.get('lambda', float('nan')):.3f})  "
                  f"reprojection {r.reproj_error_px:.1f} px  {'accepted' if r.accepted else 'REJECTED'}  "
                  f"residual length {r.residual_length_m * 100:.1f} cm "
                  f"(truth {gt.get('residual_length_m', float('nan')) * 100:.1f} cm)")
            m = res.measurements.get(r.kind, {})
            if "stump_volume_l" in m:
                circ = ", ".join(f"{c * 100:.1f}" for c in m["circumferences_m"])
                print(f"  {'':18s} stump volume {m['stump_volume_l']:.2f} l, circumferences at 25/50/75 %: "
                      f"{circ} cm, length on the mesh {m['residual_length_mesh_m'] * 100:.1f} cm")
    if image is not None:
        write_png(out_dir / "overlay.png", image)
    print(f"outputs in {out_dir}/: result.json" + (", overlay.png" if image is not None else "")
          + f"  ({time.perf_counter() - t0:.1f} s)")
    print("legend: green = input keypoints, yellow = residual endpoints, blue = fitted BODY_25, red = residual limb")
    return 0 if all(not isinstance(r, PersonFailure) for r in results) else 1
