"""SMPL-X body model: the file contract, a loader and a batched torch forward.

Written from the SMPL-X paper's equations (shape blend shapes, pose correctives, linear blend skinning),
not from the `smplx` package, which is only used by the tests as a reference.

Two forward paths return the same joints:
- `forward` skins every vertex (used once per fit, to pose the mesh);
- `joints_only` skips vertex skinning: rest joints come from a precomputed (joint regressor x shape space)
  and only the few surface vertices that BODY_25 needs are skinned (used inside optimisation loops).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .rotations import axis_angle_to_matrix

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_MODEL_PATH = DATA_DIR / "resihmr_default_body.npz"

NUM_JOINTS = 55
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar",
    "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "jaw", "left_eye_smplhf", "right_eye_smplhf",
    *(f"left_{f}{i}" for f in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)),
    *(f"right_{f}{i}" for f in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)),
)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# SMPL-X kinematic tree (parent of each joint; -1 for the root). Parents always precede children.
PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)

# Surface points of the SMPL-X topology (vertex ids on the SMPL-X mesh). A model file may override them with
# the optional keys `surface_keypoint_names` / `surface_keypoint_vertex_ids`.
SMPLX_SURFACE_VERTEX_IDS: dict[str, int] = {
    "nose": 9120, "right_eye": 9929, "left_eye": 9448, "right_ear": 616, "left_ear": 6,
    "left_big_toe": 5770, "left_small_toe": 5780, "left_heel": 8846,
    "right_big_toe": 8463, "right_small_toe": 8474, "right_heel": 8635,
}

# Where each BODY_25 keypoint comes from: a skeleton joint or a surface vertex. Neck and MidHip use the SMPL-X
# neck and pelvis joints (OpenPose's own neck/mid-hip are close to them on a real body).
BODY25_SOURCES: tuple[tuple[str, str], ...] = (
    ("vertex", "nose"), ("joint", "neck"),
    ("joint", "right_shoulder"), ("joint", "right_elbow"), ("joint", "right_wrist"),
    ("joint", "left_shoulder"), ("joint", "left_elbow"), ("joint", "left_wrist"),
    ("joint", "pelvis"), ("joint", "right_hip"), ("joint", "right_knee"), ("joint", "right_ankle"),
    ("joint", "left_hip"), ("joint", "left_knee"), ("joint", "left_ankle"),
    ("vertex", "right_eye"), ("vertex", "left_eye"), ("vertex", "right_ear"), ("vertex", "left_ear"),
    ("vertex", "left_big_toe"), ("vertex", "left_small_toe"), ("vertex", "left_heel"),
    ("vertex", "right_big_toe"), ("vertex", "right_small_toe"), ("vertex", "right_heel"),
)

NUM_BODY_JOINTS = 21  # body_pose covers joints 1..21
NUM_BODY_FACE_JOINTS = 25  # pelvis .. right eye: everything but the fingers
NUM_HAND_JOINTS = 15


class BodyModelError(ValueError):
    """A model file that breaks the SMPL-X contract; the message names the file, key and shapes."""


@dataclass
class BodyOutput:
    """Result of a forward pass; `vertices` is None on the joints-only path."""

    joints: torch.Tensor  # (B, 55, 3) posed skeleton joints
    body25: torch.Tensor  # (B, 25, 3) BODY_25 keypoints in 3D
    vertices: torch.Tensor | None = None  # (B, V, 3)
    rest_joints: torch.Tensor | None = None  # (B, 55, 3) shaped rest (T-pose) joints
    transforms: torch.Tensor | None = None  # (B, 55, 4, 4) skinning transforms (rest -> posed)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Loading and validation

# The keys read from a model file; anything else in it (landmarks, SMPL-X's pickled `joint2num`/`part2num`
# dictionaries) is never loaded, so it can neither break the load nor run code. `vt` / `ft` (texture coordinates
# per face corner, as in the SMPL-X npz files) are optional: without them the avatar has no UV layer.
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
                 "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")
OPTIONAL_KEYS = ("surface_keypoint_names", "surface_keypoint_vertex_ids", "vt", "ft")
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"


def _check_values(path: str, key: str, value: np.ndarray, integer: bool = False) -> np.ndarray:
    """Numbers only (integers when `integer`), at least one of them, all finite."""
    kinds = "iu" if integer else "biuf"
    if value.dtype.kind not in kinds:
        wanted = "integers" if integer else "numbers"
        raise BodyModelError(f"{path}: key '{key}' holds {value.dtype} values, expected {wanted}")
    if value.size == 0:
        raise BodyModelError(f"{path}: key '{key}' is empty (shape {tuple(value.shape)})")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise BodyModelError(f"{path}: key '{key}' contains NaN or infinite values")
    return value


def _expect(path: str, arrays, key: str, shape: tuple, what: str, integer: bool = False) -> np.ndarray:
    """Fetch `key` and check its shape and values; None entries in `shape` accept any size."""
    if key not in arrays:
        raise BodyModelError(f"{path}: missing key '{key}' ({what}, expected shape {_fmt_shape(shape)})")
    value = np.asarray(arrays[key])
    if value.ndim != len(shape) or any(e is not None and e != a for e, a in zip(shape, value.shape)):
        raise BodyModelError(
            f"{path}: key '{key}' has shape {tuple(value.shape)}, expected {_fmt_shape(shape)} ({what})")
    return _check_values(path, key, value, integer)


def _fmt_shape(shape: tuple) -> str:
    return str(tuple("*" if s is None else s for s in shape)).replace("'", "")


def _pkl_refusal(path: str, renamed: bool = False) -> BodyModelError:
    what = "holds pickled data (a .pkl file renamed?), which is" if renamed else ".pkl model files are"
    return BodyModelError(
        f"{path}: {what} refused because unpickling can run code. Convert it once to .npz "
        "in a trusted Python: `import pickle, numpy as np; d = pickle.load(open(p, 'rb'), encoding='latin1'); "
        "np.savez(p[:-4] + '.npz', **{k: np.asarray(v.toarray() if hasattr(v, 'toarray') else v) "
        "for k, v in d.items()})`, or download the .npz version from the SMPL-X website.")


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """The keys we use from an .npz, after checking it is one; every failure is a BodyModelError."""
    if os.path.isdir(path):
        raise BodyModelError(f"{path}: is a folder, not a body model file (give the .npz file itself)")
    if not os.path.isfile(path):
        raise BodyModelError(f"{path}: body model file not found (set it in the add-on preferences, or leave it "
                             "empty to use the embedded default body)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise BodyModelError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise BodyModelError(f"{path}: is empty (0 bytes); the download or copy did not finish")
    if head.startswith(_NPY_MAGIC):
        raise BodyModelError(f"{path}: is a single .npy array, not an .npz archive of named arrays (v_template, f, "
                             "shapedirs, ...); save the model with numpy.savez(path, v_template=..., f=..., ...)")
    if head[:1] == b"\x80":
        raise _pkl_refusal(path, renamed=True)
    if not head.startswith(_ZIP_MAGIC):
        raise BodyModelError(f"{path}: not an .npz file (it does not start like a zip archive)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # OSError, ValueError, zipfile.BadZipFile, EOFError on a damaged archive
        raise BodyModelError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise BodyModelError(f"{path}: not an .npz archive of named arrays")
    raw = {}
    with npz:
        for key in npz.files:
            if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
                continue
            try:
                raw[key] = npz[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc):  # object arrays need pickle, which we refuse
                    raise BodyModelError(f"{path}: key '{key}' is a pickled object array, which is refused; "
                                         "store it as a plain numeric array") from exc
                raise BodyModelError(f"{path}: key '{key}' cannot be read ({exc})") from exc
            except Exception as exc:  # a damaged member: zlib.error, BadZipFile, EOFError, MemoryError, ...
                raise BodyModelError(f"{path}: key '{key}' cannot be read ({type(exc).__name__}: {exc})") from exc
    return raw


def read_model_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate an SMPL-X `.npz` by the contract of DESIGN §3.1. Never unpickles.

    Every problem is a BodyModelError naming the file and the key: a missing, empty, 0-byte, damaged or .npy
    file; a missing key; a wrong shape; non-numeric, non-finite or (for faces and the tree) non-integer values;
    faces or surface keypoints that index vertices the model does not have."""
    path = str(path)
    if Path(path).suffix.lower() == ".pkl":
        raise _pkl_refusal(path)
    raw = _read_npz(path)

    v_template = _expect(path, raw, "v_template", (None, 3), "template vertices")
    n_verts = v_template.shape[0]
    out = {"v_template": v_template}
    faces = _expect(path, raw, "f", (None, 3), "triangle faces", integer=True)
    bad = np.flatnonzero(((faces < 0) | (faces >= n_verts)).any(axis=1))
    if bad.size:
        row = faces[int(bad[0])]
        index = int(row[(row < 0) | (row >= n_verts)][0])
        raise BodyModelError(f"{path}: key 'f' face {int(bad[0])} uses vertex {index}, but the vertices are "
                             f"numbered 0..{n_verts - 1}")
    out["f"] = faces
    shapedirs = _expect(path, raw, "shapedirs", (n_verts, 3, None), "shape (+ expression) blend shapes")
    if shapedirs.shape[2] < 20:
        raise BodyModelError(
            f"{path}: key 'shapedirs' has shape {shapedirs.shape}, expected ({n_verts}, 3, K) with K >= 20")
    out["shapedirs"] = shapedirs
    if "posedirs" not in raw:
        raise BodyModelError(f"{path}: missing key 'posedirs' (pose correctives, expected ({n_verts}, 3, 486) "
                             f"or ({n_verts * 3}, 486))")
    posedirs = np.asarray(raw["posedirs"])
    if posedirs.shape == (n_verts, 3, 486):
        posedirs = posedirs.reshape(n_verts * 3, 486)
    elif posedirs.shape != (n_verts * 3, 486):
        raise BodyModelError(f"{path}: key 'posedirs' has shape {posedirs.shape}, expected ({n_verts}, 3, 486) "
                             f"or ({n_verts * 3}, 486)")
    out["posedirs"] = _check_values(path, "posedirs", posedirs)
    out["J_regressor"] = _expect(path, raw, "J_regressor", (NUM_JOINTS, n_verts), "joint regressor")
    weights = _expect(path, raw, "weights", (n_verts, NUM_JOINTS), "skinning weights")
    if np.abs(weights.sum(axis=1) - 1.0).max() > 1e-3:
        bad_row = int(np.argmax(np.abs(weights.sum(axis=1) - 1.0)))
        raise BodyModelError(f"{path}: key 'weights' row {bad_row} sums to {weights[bad_row].sum():.4f}, expected 1")
    out["weights"] = weights
    kintree = _expect(path, raw, "kintree_table", (2, NUM_JOINTS), "kinematic tree")
    if kintree.dtype.kind == "f" and not np.all(kintree == np.round(kintree)):
        raise BodyModelError(f"{path}: key 'kintree_table' holds non-integer joint numbers")
    parents = kintree[0].astype(np.int64)
    parents[0] = -1  # files store 2**32-1 for the root
    if tuple(parents.tolist()) != PARENTS:
        raise BodyModelError(f"{path}: key 'kintree_table' is not the SMPL-X tree (parents {parents.tolist()})")
    out["parents"] = parents
    for side in ("l", "r"):
        comps = _expect(path, raw, f"hands_components{side}", (None, 45), "hand pose PCA basis")
        out[f"hands_components{side}"] = comps
        out[f"hands_mean{side}"] = _expect(path, raw, f"hands_mean{side}", (45,), "mean hand pose")
    names = list(SMPLX_SURFACE_VERTEX_IDS)
    ids = np.array([SMPLX_SURFACE_VERTEX_IDS[n] for n in names], dtype=np.int64)
    if "surface_keypoint_names" in raw and "surface_keypoint_vertex_ids" in raw:
        names_raw = np.asarray(raw["surface_keypoint_names"])
        ids_raw = np.asarray(raw["surface_keypoint_vertex_ids"])
        if names_raw.dtype.kind not in "US" or names_raw.ndim != 1:
            raise BodyModelError(f"{path}: key 'surface_keypoint_names' must be a list of names, got "
                                 f"{names_raw.dtype} of shape {tuple(names_raw.shape)}")
        _check_values(path, "surface_keypoint_vertex_ids", ids_raw, integer=True)
        if ids_raw.shape != names_raw.shape:
            raise BodyModelError(f"{path}: key 'surface_keypoint_vertex_ids' has shape {tuple(ids_raw.shape)}, "
                                 f"expected {tuple(names_raw.shape)} (one per name in 'surface_keypoint_names')")
        override = dict(zip([str(n) for n in names_raw], ids_raw.tolist()))
        ids = np.array([override.get(n, SMPLX_SURFACE_VERTEX_IDS[n]) for n in names], dtype=np.int64)
    if ids.min() < 0 or ids.max() >= n_verts:
        raise BodyModelError(f"{path}: has {n_verts} vertices but the surface keypoints need vertex ids "
                             f"{int(ids.min())}..{int(ids.max())}; add or fix the 'surface_keypoint_names'/"
                             "'surface_keypoint_vertex_ids' keys")
    out["surface_vertex_ids"] = ids
    out["surface_names"] = np.array(names)
    out.update(_read_uvs(path, raw, len(faces)))
    return out


def _read_uvs(path: str, raw: dict, n_faces: int) -> dict[str, np.ndarray]:
    """The optional texture coordinates: `vt` (T, 2) and `ft` (F, 3) UV indices per face corner, both or none."""
    present = [k for k in ("vt", "ft") if k in raw]
    if not present:
        return {}
    if len(present) == 1:
        other = "ft" if present[0] == "vt" else "vt"
        raise BodyModelError(f"{path}: has key '{present[0]}' but not '{other}'; texture coordinates need both "
                             "('vt' UV coordinates, 'ft' UV indices per face corner)")
    vt = _expect(path, raw, "vt", (None, 2), "UV coordinates")
    ft = _expect(path, raw, "ft", (n_faces, 3), "UV indices per face corner, one row per face in 'f'",
                 integer=True)
    bad = np.flatnonzero(((ft < 0) | (ft >= len(vt))).any(axis=1))
    if bad.size:
        row = ft[int(bad[0])]
        index = int(row[(row < 0) | (row >= len(vt))][0])
        raise BodyModelError(f"{path}: key 'ft' face {int(bad[0])} uses UV {index}, but 'vt' has UVs numbered "
                             f"0..{len(vt) - 1}")
    return {"vt": vt, "ft": ft}


_MODEL_CACHE: dict[tuple, BodyModel] = {}


def load_body_model(path: str | os.PathLike | None = None, dtype: torch.dtype = torch.float64,
                    use_cache: bool = True) -> BodyModel:
    """Load an SMPL-X `.npz` (None or "" = the embedded default body). Cached by path, size and mtime."""
    path = str(DEFAULT_MODEL_PATH if path in (None, "") else Path(path).expanduser())
    key = None
    if use_cache and os.path.isfile(path):
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, dtype)
        if key in _MODEL_CACHE:
            return _MODEL_CACHE[key]
    model = BodyModel(read_model_arrays(path), source_path=path, dtype=dtype)
    if key is not None:
        _MODEL_CACHE[key] = model
    return model


def _depth_levels(parents: tuple[int, ...]) -> list[list[int]]:
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        depth[j] = 0 if p < 0 else depth[p] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


# ---------------------------------------------------------------------------------------------------------------
# The model


class BodyModel:
    """An SMPL-X body as torch tensors, with a batched forward and a joints-only path."""

    def __init__(self, arrays: dict[str, np.ndarray], source_path: str | None = None,
                 dtype: torch.dtype = torch.float64):
        self.source_path = source_path
        self.dtype = dtype
        self._sha256: str | None = None
        self._cache: dict = {}
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype)  # noqa: E731
        self.faces = np.asarray(arrays["f"], dtype=np.int64)
        self.v_template = t(arrays["v_template"])
        self.num_vertices = self.v_template.shape[0]
        shapedirs = np.asarray(arrays["shapedirs"])
        # SMPL-X layout: 300 shape + 100 expression dirs in the 400-dim files, 10 + 10 in the small ones.
        n_shape = 300 if shapedirs.shape[2] >= 400 else 10
        self.shapedirs = t(shapedirs[:, :, :n_shape])
        self.exprdirs = t(shapedirs[:, :, n_shape:n_shape + (100 if n_shape == 300 else 10)])
        self.num_betas = self.shapedirs.shape[2]
        self.num_expression = self.exprdirs.shape[2]
        posedirs = np.asarray(arrays["posedirs"])
        # Zero correctives (e.g. the embedded body) skip the 486-dim product entirely.
        self.posedirs = None if not np.any(posedirs) else t(posedirs.T)  # (486, V*3)
        self.J_regressor = t(arrays["J_regressor"])
        self.weights = t(arrays["weights"])
        self.parents = tuple(int(p) for p in arrays["parents"])
        self.levels = _depth_levels(self.parents)
        self.hands_components = {s: t(arrays[f"hands_components{s}"]) for s in ("l", "r")}
        self.hands_mean = {s: t(arrays[f"hands_mean{s}"]) for s in ("l", "r")}
        self.surface_vertex_ids = {str(n): int(i) for n, i in zip(arrays["surface_names"],
                                                                   arrays["surface_vertex_ids"])}
        # texture coordinates (None when the file has none): `uv_faces[i, k]` is the row of `uv_coords` for
        # corner k of face i
        self.uv_coords = None if "vt" not in arrays else np.asarray(arrays["vt"], dtype=np.float64)
        self.uv_faces = None if "ft" not in arrays else np.asarray(arrays["ft"], dtype=np.int64)
        # Joints-only path: rest joints are linear in (betas, expression).
        self.J_template = self.J_regressor @ self.v_template  # (55, 3)
        self.J_shapedirs = torch.einsum("jv,vck->jck", self.J_regressor, self.shapedirs)
        self.J_exprdirs = torch.einsum("jv,vck->jck", self.J_regressor, self.exprdirs)
        # BODY_25 index map into the concatenation [55 joints, surface vertices].
        surface_order = list(self.surface_vertex_ids)
        self.body25_index, self.body25_index_body_only = (torch.tensor(
            [JOINT_INDEX[name] if kind == "joint" else offset + surface_order.index(name)
             for kind, name in BODY25_SOURCES], dtype=torch.long) for offset in (NUM_JOINTS, NUM_BODY_FACE_JOINTS))
        self._surface_ids = torch.tensor([self.surface_vertex_ids[n] for n in surface_order], dtype=torch.long)
        posedirs_rows = None
        if self.posedirs is not None:
            cols = (self._surface_ids[:, None] * 3 + torch.arange(3)).reshape(-1)
            posedirs_rows = self.posedirs[:, cols]
        self._surface = {
            "v_template": self.v_template[self._surface_ids],
            "shapedirs": self.shapedirs[self._surface_ids],
            "exprdirs": self.exprdirs[self._surface_ids],
            "weights": self.weights[self._surface_ids],
            "posedirs": posedirs_rows,
        }
        self._surface_body_only = bool(self._surface["weights"][:, NUM_BODY_FACE_JOINTS:].abs().max() < 1e-6)

    @property
    def sha256(self) -> str | None:
        if self._sha256 is None and self.source_path and os.path.isfile(self.source_path):
            self._sha256 = file_sha256(self.source_path)
        return self._sha256

    def corner_uvs(self) -> np.ndarray | None:
        """(F, 3, 2) UV of every face corner, or None for a model without texture coordinates."""
        return None if self.uv_faces is None else self.uv_coords[self.uv_faces]

    @property
    def is_default(self) -> bool:
        return self.source_path is not None and Path(self.source_path).resolve() == DEFAULT_MODEL_PATH.resolve()

    # -- parameter handling -------------------------------------------------------------------------------------

    def _batch_size(self, params: dict) -> int:
        sizes = {v.shape[0] for v in params.values() if v is not None}
        if len(sizes) > 1:
            raise ValueError(f"inconsistent batch sizes in body parameters: {sorted(sizes)}")
        return sizes.pop() if sizes else 1

    def full_pose(self, batch: int, global_orient=None, body_pose=None, jaw_pose=None, leye_pose=None,
                  reye_pose=None, left_hand_pose=None, right_hand_pose=None, hand_pca: bool = False,
                  flat_hand_mean: bool = False) -> torch.Tensor:
        """Concatenate every part into (B, 55, 3) axis-angle; hands may be PCA coefficients."""
        def part(value, size):
            if value is None:
                return torch.zeros(batch, size, dtype=self.dtype)
            return value.to(self.dtype).reshape(batch, size)

        hands = []
        for side, value in (("l", left_hand_pose), ("r", right_hand_pose)):
            if hand_pca and value is not None:
                n_comps = value.shape[-1]
                hand = value.to(self.dtype) @ self.hands_components[side][:n_comps]
            else:
                hand = part(value, 45)
            if not flat_hand_mean:
                hand = hand + self.hands_mean[side]
            hands.append(hand)
        pose = torch.cat([part(global_orient, 3), part(body_pose, 63), part(jaw_pose, 3), part(leye_pose, 3),
                          part(reye_pose, 3), *hands], dim=1)
        return pose.reshape(batch, NUM_JOINTS, 3)

    def _shape_offsets(self, batch, betas, expression, shapedirs, exprdirs):
        offset = 0.0
        if betas is not None:
            offset = offset + torch.einsum("bk,...k->b...", betas.to(self.dtype), shapedirs[..., :betas.shape[1]])
        if expression is not None:
            offset = offset + torch.einsum("bk,...k->b...", expression.to(self.dtype),
                                           exprdirs[..., :expression.shape[1]])
        return offset

    # -- kinematics ----------------------------------------------------------------------------------------------

    def kinematics(self, rot: torch.Tensor, rest_joints: torch.Tensor):
        """Forward kinematics by depth level over the first J joints of `rot` (parents precede children):
        global rotations (B,J,3,3) and posed joints (B,J,3)."""
        batch, n_joints = rot.shape[:2]
        parents = torch.tensor(self.parents[:n_joints])
        rel = torch.cat([rest_joints[:, :1], rest_joints[:, 1:n_joints] - rest_joints[:, parents[1:]]], dim=1)
        g_rot = torch.empty(batch, n_joints, 3, 3, dtype=rot.dtype)
        g_pos = torch.empty(batch, n_joints, 3, dtype=rot.dtype)
        for level in self._levels_for(n_joints):
            if level[0] == 0:
                g_rot = g_rot.index_copy(1, level, rot[:, level])
                g_pos = g_pos.index_copy(1, level, rest_joints[:, level])
                continue
            par = parents[level]
            p_rot = g_rot[:, par]
            g_pos = g_pos.index_copy(1, level, g_pos[:, par] + (p_rot @ rel[:, level, :, None])[..., 0])
            g_rot = g_rot.index_copy(1, level, p_rot @ rot[:, level])
        return g_rot, g_pos

    def _levels_for(self, n_joints: int) -> list[torch.Tensor]:
        key = ("levels", n_joints)
        if key not in self._cache:
            self._cache[key] = [torch.tensor([j for j in lv if j < n_joints]) for lv in self.levels
                                if any(j < n_joints for j in lv)]
        return self._cache[key]

    def _skin_transforms(self, g_rot, g_pos, rest_joints):
        """4x4 transforms mapping rest-pose points to posed points, per joint."""
        trans = g_pos - (g_rot @ rest_joints[..., None])[..., 0]
        top = torch.cat([g_rot, trans[..., None]], dim=-1)
        bottom = torch.zeros(*top.shape[:-2], 1, 4, dtype=top.dtype)
        bottom[..., 0, 3] = 1.0
        return torch.cat([top, bottom], dim=-2)

    @staticmethod
    def _skin(points, weights, g_rot, g_pos, rest_joints):
        """LBS: sum_j w_j (R_j (v - J_j) + G_j) with per-vertex blended rotation and offset."""
        trans = g_pos - (g_rot @ rest_joints[..., None])[..., 0]  # (B,55,3)
        blend_rot = torch.einsum("vj,bjkl->bvkl", weights, g_rot)
        blend_trans = torch.einsum("vj,bjk->bvk", weights, trans)
        return (blend_rot @ points[..., None])[..., 0] + blend_trans

    # -- public forwards -------------------------------------------------------------------------------------------

    def forward(self, betas=None, expression=None, global_orient=None, body_pose=None, jaw_pose=None,
                leye_pose=None, reye_pose=None, left_hand_pose=None, right_hand_pose=None, transl=None,
                hand_pca: bool = False, flat_hand_mean: bool = False, return_verts: bool = True) -> BodyOutput:
        """Full SMPL-X forward. All parameters are (B, n) tensors or None (= zeros)."""
        params = dict(betas=betas, expression=expression, global_orient=global_orient, body_pose=body_pose,
                      jaw_pose=jaw_pose, leye_pose=leye_pose, reye_pose=reye_pose, left_hand_pose=left_hand_pose,
                      right_hand_pose=right_hand_pose, transl=transl)
        if not return_verts:
            return self.joints_only(hand_pca=hand_pca, flat_hand_mean=flat_hand_mean, **params)
        batch = self._batch_size(params)
        rot = axis_angle_to_matrix(self.full_pose(batch, global_orient, body_pose, jaw_pose, leye_pose, reye_pose,
                                                  left_hand_pose, right_hand_pose, hand_pca, flat_hand_mean))
        v_shaped = self.v_template + self._shape_offsets(batch, betas, expression, self.shapedirs, self.exprdirs)
        if not torch.is_tensor(v_shaped) or v_shaped.dim() == 2:
            v_shaped = self.v_template.expand(batch, -1, -1)
        rest_joints = torch.einsum("jv,bvc->bjc", self.J_regressor, v_shaped)
        v_posed = v_shaped
        if self.posedirs is not None:
            eye = torch.eye(3, dtype=self.dtype)
            pose_feature = (rot[:, 1:] - eye).reshape(batch, -1)
            v_posed = v_shaped + (pose_feature @ self.posedirs).reshape(batch, -1, 3)
        g_rot, g_pos = self.kinematics(rot, rest_joints)
        verts = self._skin(v_posed, self.weights, g_rot, g_pos, rest_joints)
        joints = g_pos
        if transl is not None:
            offset = transl.to(self.dtype)[:, None, :]
            verts, joints = verts + offset, joints + offset
        surface = verts[:, self._surface_ids]
        body25 = torch.cat([joints, surface], dim=1)[:, self.body25_index]
        return BodyOutput(joints=joints, body25=body25, vertices=verts, rest_joints=rest_joints,
                          transforms=self._skin_transforms(g_rot, g_pos, rest_joints))

    __call__ = forward

    def rest_joints(self, betas=None, expression=None, batch: int | None = None) -> torch.Tensor:
        """Shaped T-pose joints (B, 55, 3) without touching the vertices."""
        if batch is None:
            batch = self._batch_size(dict(betas=betas, expression=expression))
        offset = self._shape_offsets(batch, betas, expression, self.J_shapedirs, self.J_exprdirs)
        joints = self.J_template + offset
        return joints if joints.dim() == 3 else self.J_template.expand(batch, -1, -1)

    def joints_only(self, betas=None, expression=None, global_orient=None, body_pose=None, jaw_pose=None,
                    leye_pose=None, reye_pose=None, left_hand_pose=None, right_hand_pose=None, transl=None,
                    hand_pca: bool = False, flat_hand_mean: bool = False, body_only: bool = False) -> BodyOutput:
        """Same joints and BODY_25 as `forward`, skinning only the surface keypoint vertices.

        `body_only` skips the 30 finger joints (fitting loops on BODY_25): `joints` then holds the first 25.
        """
        params = dict(betas=betas, expression=expression, global_orient=global_orient, body_pose=body_pose,
                      jaw_pose=jaw_pose, leye_pose=leye_pose, reye_pose=reye_pose, left_hand_pose=left_hand_pose,
                      right_hand_pose=right_hand_pose, transl=transl)
        batch = self._batch_size(params)
        rot = axis_angle_to_matrix(self.full_pose(batch, global_orient, body_pose, jaw_pose, leye_pose, reye_pose,
                                                  left_hand_pose, right_hand_pose, hand_pca, flat_hand_mean))
        rest_joints = self.rest_joints(betas, expression, batch)
        surf = self._surface
        if body_only:
            if not self._surface_body_only:
                raise ValueError("this model's BODY_25 surface vertices follow finger joints; use body_only=False")
            rot, rest_joints = rot[:, :NUM_BODY_FACE_JOINTS], rest_joints[:, :NUM_BODY_FACE_JOINTS]
            surf = dict(surf, weights=surf["weights"][:, :NUM_BODY_FACE_JOINTS])
        pts = surf["v_template"] + self._shape_offsets(batch, betas, expression, surf["shapedirs"],
                                                       surf["exprdirs"])
        if pts.dim() == 2:
            pts = pts.expand(batch, -1, -1)
        if surf["posedirs"] is not None:
            eye = torch.eye(3, dtype=self.dtype)
            pts = pts + ((rot[:, 1:] - eye).reshape(batch, -1) @ surf["posedirs"]).reshape(batch, -1, 3)
        g_rot, g_pos = self.kinematics(rot, rest_joints)
        surface = self._skin(pts, surf["weights"], g_rot, g_pos, rest_joints)
        joints = g_pos
        if transl is not None:
            offset = transl.to(self.dtype)[:, None, :]
            joints, surface = joints + offset, surface + offset
        index = self.body25_index_body_only if body_only else self.body25_index
        body25 = torch.cat([joints, surface], dim=1)[:, index]
        return BodyOutput(joints=joints, body25=body25, rest_joints=rest_joints)

    # -- analytic Jacobian for the fit's least-squares solver ------------------------------------------------------

    def has_analytic_jacobian(self) -> bool:
        """`points_and_jacobian` needs a body without pose correctives whose BODY_25 vertices follow body joints."""
        return self.posedirs is None and self._surface_body_only

    def _point_set(self) -> dict:
        """Constants of the points `points_and_jacobian` returns, the BODY_25 points, each written as a skinned
        point (rest position U0 + SU·β, skinning weights over the 25 body/face joints; a joint is the point at its
        own rest position with all its weight on itself)."""
        key = "body25_points"
        if key in self._cache:
            return self._cache[key]
        n = NUM_BODY_FACE_JOINTS
        surface_order = list(self.surface_vertex_ids)
        onehot = torch.eye(n, dtype=self.dtype)
        u0, su, wt = [], [], []
        for kind, name in BODY25_SOURCES:
            if kind == "joint":
                j = JOINT_INDEX[name]
                u0.append(self.J_template[j]), su.append(self.J_shapedirs[j]), wt.append(onehot[j])
            else:
                s = surface_order.index(name)
                u0.append(self._surface["v_template"][s]), su.append(self._surface["shapedirs"][s])
                wt.append(self._surface["weights"][s, :n])
        parents = torch.tensor(self.parents[:n])
        anc = torch.zeros(n, n, dtype=self.dtype)  # anc[j, k] = 1 when k is j or one of its ancestors
        for j in range(n):
            k = j
            while k >= 0:
                anc[j, k] = 1.0
                k = self.parents[k]
        wt = torch.stack(wt)
        out = {"u0": torch.stack(u0), "su": torch.stack(su), "wt": wt, "anc": anc, "parents": parents,
               # M[p, j, k] = weight of joint j on point p when k moves j; a[p, k] = total weight k moves
               "m": wt[:, :, None] * anc[None], "a": wt @ anc}
        self._cache[key] = out
        return out

    def points_and_jacobian(self, betas: torch.Tensor, global_orient: torch.Tensor, body_pose: torch.Tensor,
                            transl: torch.Tensor, camera_only: bool = False):
        """Posed BODY_25 points (B, 25, 3) and their exact Jacobian (B, 25, 3, D) with respect to x = [global_orient
        3 | transl 3 | betas K | body_pose 63] (the fit's row).

        Written from rigid-body kinematics: turning joint k about a world axis ω moves every point it carries by
        ω × (p − p_k); for an axis-angle θ the world axes of its three components are G_parent · J_l(θ) (the
        SO(3) left Jacobian). Needs `has_analytic_jacobian()`; the same points as `joints_only(body_only=True)`.
        `camera_only`: the Jacobian's first six columns only (global_orient, transl).
        """
        if not self.has_analytic_jacobian():
            raise ValueError("points_and_jacobian needs a body without pose correctives (use autograd instead)")
        dtype, batch, n_betas = self.dtype, betas.shape[0], betas.shape[1]
        n = NUM_BODY_FACE_JOINTS
        c = self._point_set()
        pose = torch.cat([global_orient, body_pose, torch.zeros(batch, 3 * (n - 22), dtype=dtype)], 1)
        pose = pose.reshape(batch, n, 3)
        rot = axis_angle_to_matrix(pose)
        s_j = self.J_shapedirs[:n, :, :n_betas]  # (n, 3, K)
        rest = self.J_template[:n] + torch.einsum("bk,jck->bjc", betas, s_j)
        g_rot, g_pos = self.kinematics(rot, rest)
        # every point as carried by every joint: q[b, p, j] = G_j (u_p − J_j) + p_j, skinned v = Σ_j w_pj q_pj
        su = c["su"][..., :n_betas]
        u = c["u0"] + torch.einsum("bk,pck->bpc", betas, su)
        q = torch.einsum("bjcd,bpjd->bpjc", g_rot, u[:, :, None] - rest[:, None]) + g_pos[:, None]
        points = torch.einsum("pj,bpjc->bpc", c["wt"], q) + transl[:, None]
        n_points = points.shape[1]
        n_turned = 1 if camera_only else 22  # joints whose rotation is differentiated
        # rotations of joints 0..21 (global_orient, then body_pose)
        parent_rot = torch.cat([torch.eye(3, dtype=dtype).expand(batch, 1, 3, 3),
                                g_rot[:, c["parents"][1:n_turned]]], 1)
        axes = parent_rot @ _left_jacobian(pose[:, :n_turned])  # (B, k, 3, 3): column i = world axis of component i
        lever = torch.einsum("pjk,bpjc->bpkc", c["m"][:, :, :n_turned], q) \
            - c["a"][None, :, :n_turned, None] * g_pos[:, None, :n_turned]
        # ω × L for each component, as L · [ω]×ᵀ per joint (one batched product)
        cross = torch.einsum("ixy,bkxc->bkyci", _LEVI_CIVITA.to(dtype), axes).reshape(batch, n_turned, 3, 9)
        turn = (lever.transpose(1, 2) @ cross).reshape(batch, n_turned, n_points, 3, 3)  # (B, k, P, component, xyz)
        turn = turn.permute(0, 2, 4, 1, 3).reshape(batch, n_points, 3, 3 * n_turned)
        shift = torch.eye(3, dtype=dtype).expand(batch, n_points, 3, 3)
        if camera_only:
            return points, torch.cat([turn, shift], -1)
        # shape: rest joints and points move with β; a joint's position is the sum of its chain's rotated bones
        s_par = torch.cat([torch.zeros(1, 3, n_betas, dtype=dtype), s_j[c["parents"][1:]]], 0)
        bone = torch.cat([s_j[None, :1].expand(batch, -1, -1, -1),
                          g_rot[:, c["parents"][1:]] @ (s_j[1:] - s_par[1:])], 1)  # (B, n, 3, K)
        joint_d = torch.einsum("jm,bmck->bjck", c["anc"], bone)
        shape = (torch.einsum("pj,bjcd,pdk->bpck", c["wt"], g_rot, su)
                 - torch.einsum("pj,bjcd,jdk->bpck", c["wt"], g_rot, s_j)
                 + torch.einsum("pj,bjck->bpck", c["wt"], joint_d))
        jac = torch.cat([turn[..., :3], shift, shape, turn[..., 3:]], -1)
        return points, jac


_LEVI_CIVITA = torch.zeros(3, 3, 3, dtype=torch.float64)
for _i, _j, _k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
    _LEVI_CIVITA[_i, _j, _k], _LEVI_CIVITA[_i, _k, _j] = 1.0, -1.0


def _left_jacobian(rotvec: torch.Tensor) -> torch.Tensor:
    """SO(3) left Jacobian J_l(θ) = I + (1 − cos a)/a² [θ]× + (a − sin a)/a³ [θ]×², (..., 3) -> (..., 3, 3):
    d exp([θ]×) / dθ_i = [J_l e_i]× exp([θ]×). Small angles use the series."""
    a2 = (rotvec * rotvec).sum(-1)[..., None, None]
    a = torch.sqrt(a2.clamp(min=1e-24))
    small = a2 < 1e-8
    c1 = torch.where(small, 0.5 - a2 / 24.0, (1.0 - torch.cos(a)) / a2.clamp(min=1e-24))
    c2 = torch.where(small, 1.0 / 6.0 - a2 / 120.0, (a - torch.sin(a)) / (a2 * a).clamp(min=1e-36))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype).expand_as(skew)
    return eye + c1 * skew + c2 * (skew @ skew)
