"""`make demo`: the bundled synthetic example through everything that exists, for real.

Today that is: fit -> RAFO -> pose feedback -> result.json, plus overlay.png (the fitted body over the photo,
distal parts of accepted residual limbs removed, the residual segment in red, keypoints drawn). The terminal
shows λ, the reprojection error and the residual length of each limb beside the example's ground truth.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo"


def run_demo(out_dir: Path, example: Path = EXAMPLE, formats=("json", "overlay", "mask", "blend", "glb", "fbx")) -> int:
    from .core.body_model import load_body_model
    from .core.keypoints_io import read_keypoints
    from .core.pipeline import PersonFailure, run
    from .core.settings import Settings
    from .outputs import write_outputs

    t0 = time.perf_counter()
    kfile = read_keypoints(example / "keypoints.json")
    reconstruction = run(load_body_model(), kfile, Settings())
    results = reconstruction.people
    written = write_outputs(out_dir, reconstruction, formats)
    truth = json.loads((example / "ground_truth.json").read_text())["residuals"]
    print("ResiHMR demo on the bundled SYNTHETIC example (the embedded body with two known amputations)")
    for person, res in zip(kfile.people, results):
        if isinstance(res, PersonFailure):
            print(f"person failed: {res.reason}")
            continue
        print(f"fit error {res.fit.fit_error_px:.1f} px over {int(res.fit.used.sum())} keypoints "
              f"(ignored as distal to a residual limb: {int((person.body25[:, 2] > 0).sum() - res.fit.used.sum())})")
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
    print(f"outputs in {out_dir}/: {', '.join(p.name for p in written)}  ({time.perf_counter() - t0:.1f} s)")
    print("overlay.png: green = input keypoints, yellow = residual endpoints, blue = fitted keypoints, "
          "red = residual limb")
    return 0 if all(not isinstance(r, PersonFailure) for r in results) else 1
