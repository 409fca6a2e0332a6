"""Body model core against the `smplx` reference package (non-commercial: test-only) on the embedded body."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from resihmr_blender.core.body_model import (
    BODY25_SOURCES,
    DEFAULT_MODEL_PATH,
    JOINT_INDEX,
    BodyModelError,
    load_body_model,
    read_model_arrays,
)
from resihmr_blender.core.layouts import BODY25_NAMES
from resihmr_blender.core.rotations import axis_angle_to_matrix

smplx = pytest.importorskip("smplx")

# smplx appends these surface points after the 55 joints, in this order (its SMPL-X vertex-id table).
SMPLX_EXTRA_ORDER = ("nose", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
                     "left_heel", "right_big_toe", "right_small_toe", "right_heel")


@pytest.fixture(scope="module")
def model64():
    return load_body_model(dtype=torch.float64, use_cache=False)


@pytest.fixture(scope="module")
def reference():
    return smplx.SMPLX(str(DEFAULT_MODEL_PATH), ext="npz", use_pca=False, flat_hand_mean=True, num_betas=10,
                       num_expression_coeffs=10, dtype=torch.float64)


def random_params(batch: int, seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (torch.randn(*s, generator=g) * scale).to(dtype)  # noqa: E731
    return dict(betas=r(batch, 10, scale=1.5), expression=r(batch, 10), global_orient=r(batch, 3, scale=1.0),
                body_pose=r(batch, 63, scale=0.4), jaw_pose=r(batch, 3, scale=0.2), leye_pose=r(batch, 3, scale=0.2),
                reye_pose=r(batch, 3, scale=0.2), left_hand_pose=r(batch, 45, scale=0.4),
                right_hand_pose=r(batch, 45, scale=0.4), transl=r(batch, 3))


def reference_body25(out) -> torch.Tensor:
    table = torch.cat([out.joints[:, :55], out.joints[:, 55:55 + len(SMPLX_EXTRA_ORDER)]], dim=1)
    index = [JOINT_INDEX[name] if kind == "joint" else 55 + SMPLX_EXTRA_ORDER.index(name)
             for kind, name in BODY25_SOURCES]
    return table[:, index]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_matches_smplx(model64, reference, seed):
    params = random_params(8, seed)
    ref = reference(**params, return_verts=True)
    ours = model64.forward(**params, flat_hand_mean=True)
    fast = model64.joints_only(**params, flat_hand_mean=True)
    assert (ours.vertices - ref.vertices).abs().max() < 1e-5
    assert (ours.joints - ref.joints[:, :55]).abs().max() < 1e-5
    assert (fast.joints - ref.joints[:, :55]).abs().max() < 1e-5
    ref25 = reference_body25(ref)
    assert (ours.body25 - ref25).abs().max() < 1e-5
    assert (fast.body25 - ref25).abs().max() < 1e-5
    # the test is not vacuous: the bodies really move and differ
    assert (ref.vertices[0] - ref.vertices[1]).abs().max() > 0.05


def test_float32_forward_close_to_reference(reference):
    model32 = load_body_model(dtype=torch.float32, use_cache=False)
    params = random_params(4, 7)
    ref = reference(**params, return_verts=True)
    ours = model32.forward(**{k: v.float() for k, v in params.items()}, flat_hand_mean=True)
    fast = model32.joints_only(**{k: v.float() for k, v in params.items()}, flat_hand_mean=True)
    assert (ours.vertices.double() - ref.vertices).abs().max() < 1e-5
    assert (fast.body25.double() - reference_body25(ref)).abs().max() < 1e-5


def test_hand_pca_path_matches_smplx(model64):
    ref = smplx.SMPLX(str(DEFAULT_MODEL_PATH), ext="npz", use_pca=True, num_pca_comps=12, flat_hand_mean=False,
                      num_betas=10, num_expression_coeffs=10, dtype=torch.float64)
    params = random_params(3, 3)
    params["left_hand_pose"] = params["left_hand_pose"][:, :12]
    params["right_hand_pose"] = params["right_hand_pose"][:, :12]
    out = ref(**params, return_verts=True)
    ours = model64.forward(**params, hand_pca=True, flat_hand_mean=False)
    assert (ours.vertices - out.vertices).abs().max() < 1e-5


def test_joints_only_supports_gradients(model64):
    params = {k: v.requires_grad_(True) for k, v in random_params(2, 5).items()}
    out = model64.joints_only(**params)
    out.body25.sum().backward()
    for name in ("betas", "body_pose", "global_orient", "transl"):
        assert torch.isfinite(params[name].grad).all() and params[name].grad.abs().sum() > 0


def test_rodrigues_small_angles_and_identity():
    zero = torch.zeros(2, 3, dtype=torch.float64)
    assert torch.allclose(axis_angle_to_matrix(zero), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    r = torch.tensor([[0.0, 0.0, np.pi / 2]], dtype=torch.float64)
    rot = axis_angle_to_matrix(r)[0]
    assert torch.allclose(rot @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-12)


# ---- the embedded default body ---------------------------------------------------------------------------------


def test_default_body_is_a_t_pose(model64):
    rest = model64.forward().joints[0].numpy()
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder, elbow, wrist = (rest[JOINT_INDEX[f"{side}_{j}"]] for j in ("shoulder", "elbow", "wrist"))
        for a, b in ((shoulder, elbow), (elbow, wrist)):
            d = (b - a) / np.linalg.norm(b - a)
            assert d[0] * sign > 0.99, f"{side} arm not horizontal along {'+' if sign > 0 else '-'}x: {d}"
    head, pelvis = rest[JOINT_INDEX["head"]], rest[JOINT_INDEX["pelvis"]]
    assert head[1] - pelvis[1] > 0.4  # y up
    assert np.allclose(pelvis, 0.0, atol=0.05)


def test_default_body_keypoints_on_anatomy(model64):
    out = model64.forward()
    verts = out.vertices[0].numpy()
    kp = dict(zip(BODY25_NAMES, out.body25[0].numpy()))
    height = verts[:, 1].max() - verts[:, 1].min()
    assert 1.5 < height < 1.9
    # nose: the most forward point of the face, on the midline
    head_zone = verts[verts[:, 1] > kp["Neck"][1] + 0.05]
    assert abs(kp["Nose"][0]) < 0.01 and kp["Nose"][2] > head_zone[:, 2].max() - 0.01
    # eyes above the nose, ears behind the eyes and wider apart
    for side in "LR":
        assert kp[f"{side}Eye"][1] > kp["Nose"][1]
        assert kp[f"{side}Ear"][2] < kp[f"{side}Eye"][2] - 0.03
        assert abs(kp[f"{side}Ear"][0]) > abs(kp[f"{side}Eye"][0]) + 0.03
    # heels at the back-bottom of the feet, toes at the front, left on +x
    for side, sign in (("L", 1.0), ("R", -1.0)):
        heel, big, small = kp[f"{side}Heel"], kp[f"{side}BigToe"], kp[f"{side}SmallToe"]
        assert heel[1] < kp[f"{side}Ankle"][1] - 0.03 and heel[1] < verts[:, 1].min() + 0.03
        assert big[2] > heel[2] + 0.15 and small[2] > heel[2] + 0.1
        assert sign * small[0] > sign * big[0]  # the small toe is lateral
        assert sign * kp[f"{side}Shoulder"][0] > 0.1


def test_default_body_metadata_and_size():
    raw = np.load(DEFAULT_MODEL_PATH, allow_pickle=False)
    info = json.loads(str(raw["resihmr_info"]))
    assert info["shape_variance_explained"] > 0.999
    assert info["regressor_error_m"]["max"] < 1e-3
    assert DEFAULT_MODEL_PATH.stat().st_size < 8e6
    assert (DEFAULT_MODEL_PATH.parent / "NOTICE.md").is_file()


# ---- the file contract -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arrays():
    with np.load(DEFAULT_MODEL_PATH, allow_pickle=False) as raw:
        return {k: raw[k] for k in raw.files}


def write_variant(tmp_path, arrays, **changes):
    data = {k: v for k, v in arrays.items() if changes.get(k, 0) is not None}
    data.update({k: v for k, v in changes.items() if v is not None})
    path = tmp_path / "model.npz"
    np.savez(path, **data)
    return path


def test_pkl_is_refused_with_how_to(tmp_path):
    path = tmp_path / "SMPLX_NEUTRAL.pkl"
    path.write_bytes(b"not really a pickle")
    with pytest.raises(BodyModelError, match=r"SMPLX_NEUTRAL\.pkl.*refused.*np\.savez"):
        read_model_arrays(path)


def test_missing_file_points_at_preferences(tmp_path):
    with pytest.raises(BodyModelError, match="not found.*preferences"):
        load_body_model(tmp_path / "nowhere.npz")


@pytest.mark.parametrize("key", ["v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights",
                                 "kintree_table", "hands_componentsl", "hands_meanr"])
def test_missing_key_is_named(tmp_path, arrays, key):
    path = write_variant(tmp_path, arrays, **{key: None})
    with pytest.raises(BodyModelError, match=rf"model\.npz: missing key '{key}'.*expected"):
        read_model_arrays(path)


@pytest.mark.parametrize("key,bad,expected", [
    ("J_regressor", np.zeros((24, 13718)), r"'J_regressor' has shape \(24, 13718\), expected \(55, 13718\)"),
    ("weights", np.zeros((13718, 24)), r"'weights' has shape \(13718, 24\), expected \(13718, 55\)"),
    ("shapedirs", np.zeros((13718, 3)), r"'shapedirs' has shape \(13718, 3\), expected \(13718, 3, \*\)"),
    ("hands_meanl", np.zeros(44), r"'hands_meanl' has shape \(44,\), expected \(45,\)"),
    ("posedirs", np.zeros((13718, 3, 10)), r"'posedirs' has shape \(13718, 3, 10\)"),
])
def test_wrong_shape_is_named(tmp_path, arrays, key, bad, expected):
    path = write_variant(tmp_path, arrays, **{key: bad})
    with pytest.raises(BodyModelError, match=expected):
        read_model_arrays(path)


def test_nan_values_are_refused(tmp_path, arrays):
    bad = arrays["v_template"].copy()
    bad[5, 1] = np.nan
    with pytest.raises(BodyModelError, match="'v_template' contains NaN"):
        read_model_arrays(write_variant(tmp_path, arrays, v_template=bad))


def test_object_arrays_are_refused_where_used_and_never_loaded_elsewhere(tmp_path, arrays):
    # SMPL-X's own .npz files hold pickled dictionaries (`joint2num`, `part2num`) we have no use for: they are
    # never loaded (so never unpickled), and the file still loads
    path = write_variant(tmp_path, arrays, joint2num=np.array({"pelvis": 0}, dtype=object),
                         part2num=np.array([{"a": 1}], dtype=object))
    assert read_model_arrays(path)["v_template"].shape == arrays["v_template"].shape
    path = write_variant(tmp_path, arrays, weights=np.array([{"a": 1}], dtype=object))
    with pytest.raises(BodyModelError, match=r"model\.npz: key 'weights' is a pickled object array, which is refused"):
        read_model_arrays(path)


def _npy(path, array):
    with open(path, "wb") as handle:
        np.save(handle, array)
    return path


@pytest.mark.parametrize("name,content,expected", [
    ("empty.npz", b"", r"empty\.npz: is empty \(0 bytes\)"),
    ("text.npz", b"v_template = ...", r"text\.npz: not an \.npz file"),
    ("pickle.npz", b"\x80\x04K\x01.", r"pickle\.npz: holds pickled data .*refused"),
    ("cut.npz", b"PK\x03\x04 and then nothing", r"cut\.npz: not a readable \.npz file"),
])
def test_unreadable_files_are_named(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BodyModelError, match=expected):
        read_model_arrays(path)


def test_npy_instead_of_npz(tmp_path, arrays):
    for name in ("SMPLX_NEUTRAL.npy", "SMPLX_NEUTRAL.npz"):
        path = _npy(tmp_path / name, arrays["v_template"])
        with pytest.raises(BodyModelError, match=rf"{name}: is a single \.npy array, not an \.npz archive"):
            load_body_model(path, use_cache=False)


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(BodyModelError, match="is a folder"):
        load_body_model(tmp_path)


@pytest.mark.parametrize("changes,expected", [
    ({"f": np.zeros((0, 3), np.int64)}, r"key 'f' is empty \(shape \(0, 3\)\)"),
    ({"f": np.array([["0", "1", "2"]])}, r"key 'f' holds <U1 values, expected integers"),
    ({"f": np.array([[0.0, 1.0, 2.0]])}, r"key 'f' holds float64 values, expected integers"),
    ({"f": np.array([[0, 1, 2], [3, 4, 13718]])}, r"key 'f' face 1 uses vertex 13718, but the vertices are numbered "
                                                   r"0\.\.13717"),
    ({"f": np.array([[0, -2, 2]])}, r"key 'f' face 0 uses vertex -2"),
    ({"v_template": np.zeros((0, 3), np.float32)}, r"key 'v_template' is empty"),
    ({"J_regressor": np.full((55, 13718), "x")}, r"key 'J_regressor' holds <U1 values, expected numbers"),
    ({"shapedirs": np.zeros((13718, 3, 20), np.complex64)}, r"key 'shapedirs' holds complex64 values"),
    ({"posedirs": np.full((13718 * 3, 486), np.nan, np.float32)}, r"key 'posedirs' contains NaN"),
    ({"posedirs": np.full((13718, 3, 486), "0")}, r"key 'posedirs' holds <U1 values"),
    ({"hands_componentsl": np.zeros((0, 45), np.float32)}, r"key 'hands_componentsl' is empty"),
    ({"kintree_table": np.full((2, 55), 0.5)}, r"key 'kintree_table' holds non-integer joint numbers"),
    ({"surface_keypoint_names": np.array(["nose", "left_heel"]), "surface_keypoint_vertex_ids": np.array([1])},
     r"key 'surface_keypoint_vertex_ids' has shape \(1,\), expected \(2,\)"),
    ({"surface_keypoint_names": np.array([1, 2]), "surface_keypoint_vertex_ids": np.array([1, 2])},
     r"key 'surface_keypoint_names' must be a list of names"),
    ({"surface_keypoint_names": np.array(["nose"]), "surface_keypoint_vertex_ids": np.array([-1])},
     r"has 13718 vertices but the surface keypoints need vertex ids -1\.\."),
])
def test_bad_values_are_named(tmp_path, arrays, changes, expected):
    with pytest.raises(BodyModelError, match=rf"model\.npz: {expected}"):
        read_model_arrays(write_variant(tmp_path, arrays, **changes))


def test_a_damaged_member_is_named(tmp_path, arrays):
    import zipfile

    path = write_variant(tmp_path, arrays)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("surface_keypoint_vertex_ids.npy", b"\x93NUMPY not really")
    with pytest.raises(BodyModelError, match=r"key 'surface_keypoint_vertex_ids' cannot be read"):
        read_model_arrays(path)


def test_nonzero_posedirs_are_applied(tmp_path, arrays, model64):
    """Pose correctives: our forward must add them exactly as the reference does."""
    rng = np.random.default_rng(0)
    posedirs = (rng.standard_normal(arrays["posedirs"].shape) * 1e-3).astype(np.float32)
    path = write_variant(tmp_path, arrays, posedirs=posedirs)
    ours = load_body_model(path, dtype=torch.float64, use_cache=False)
    ref = smplx.SMPLX(str(path), ext="npz", use_pca=False, flat_hand_mean=True, num_betas=10,
                      num_expression_coeffs=10, dtype=torch.float64)
    params = random_params(3, 11)
    out, expect = ours.forward(**params, flat_hand_mean=True), ref(**params, return_verts=True)
    assert (out.vertices - expect.vertices).abs().max() < 1e-5
    assert (ours.joints_only(**params, flat_hand_mean=True).body25 - reference_body25(expect)).abs().max() < 1e-5
    # and they matter: without them the vertices differ
    assert (model64.forward(**params, flat_hand_mean=True).vertices - expect.vertices).abs().max() > 1e-4
