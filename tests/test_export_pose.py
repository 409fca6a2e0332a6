"""One pose convention for GLB and FBX (mesh/export_pose.py): the static pose (rest or photo) on the ground at the
origin in both formats, the photo pose as the clip `photo_pose`, a motion as its own clip, keys from time 0,
4 or 8 skin influences, and the command line's --pose/--preset/--influences/--motion."""
from __future__ import annotations

import json
import math
from pathlib import Path

import bpy
import numpy as np
import pytest
from scipy.spatial import cKDTree
from test_animation import walking_motion
from test_export import glb_json

from resihmr_blender.cli import main
from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.mesh.animation import apply_motion, read_motion
from resihmr_blender.mesh.build import build_avatar, evaluated_vertices
from resihmr_blender.mesh.cut import cut_residual
from resihmr_blender.mesh.export import ExportError, export_avatar

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"betas": np.linspace(-1, 1, 10), "global_orient": np.array([math.pi, 0.3, 0.0]),
          "body_pose": np.r_[np.zeros(45), 0.0, 0.0, -0.8, np.zeros(15)], "transl": np.array([0.1, 0.2, 3.0])}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("pose")
    bpy.ops.wm.read_homefile(use_empty=True)
    arm, obj = build_avatar(load_body_model(), PARAMS)
    cut_residual(obj, "left_transtibial", 0.4)
    photo_scene = evaluated_vertices(obj)  # the photo pose as the scene shows it (in the camera's frame)
    written = {}
    for pose in ("rest", "photo"):
        for fmt in ("glb", "fbx"):
            written[pose, fmt] = export_avatar(arm, obj, out / f"{pose}.{fmt}", pose=pose, photo_params=PARAMS,
                                               influences=8)
    written["four"] = export_avatar(arm, obj, out / "four.glb", photo_params=PARAMS)
    apply_motion(arm, *read_motion(walking_motion(out / "walk.npz")))
    for fmt in ("glb", "fbx"):
        written["motion", fmt] = export_avatar(arm, obj, out / f"motion.{fmt}", animation=True, photo_params=PARAMS)
    return written, photo_scene, len(obj.data.vertices)


def static_vertices(path: Path) -> np.ndarray:
    """World vertices of the static pose as Blender's importers read it (the GLB without its animations, which
    the glTF importer would otherwise play on import; the FBX without its takes)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    if path.suffix == ".glb":
        data = path.read_bytes()
        n = int.from_bytes(data[12:16], "little")
        doc = json.loads(data[20:20 + n])
        doc.pop("animations", None)
        text = json.dumps(doc).encode()
        text += b" " * (-len(text) % 4)
        rest = data[20 + n:]
        static = path.with_name(path.stem + "_static.glb")
        static.write_bytes(b"glTF" + (2).to_bytes(4, "little") + (20 + len(text) + len(rest)).to_bytes(4, "little")
                           + len(text).to_bytes(4, "little") + b"JSON" + text + rest)
        bpy.ops.import_scene.gltf(filepath=str(static))
    else:
        bpy.ops.import_scene.fbx(filepath=str(path), use_anim=False)
    mesh = next(o for o in bpy.data.objects if o.type == "MESH" and o.find_armature() is not None)
    return evaluated_vertices(mesh)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric largest nearest-point distance (GLB splits vertices at seams, FBX does not)."""
    return max(cKDTree(b).query(a)[0].max(), cKDTree(a).query(b)[0].max())


def test_static_glb_and_fbx_agree_on_the_ground_at_the_origin(files):
    written, photo_scene, _ = files
    static = {key: static_vertices(written[key]) for key in written if key[0] in ("rest", "photo")}
    for pose in ("rest", "photo"):
        glb, fbx = static[pose, "glb"], static[pose, "fbx"]
        assert distance(glb, fbx) < 1e-3, pose
        assert abs(glb[:, 2].min()) < 1e-4 and abs(fbx[:, 2].min()) < 1e-4  # standing on the ground
    assert distance(static["rest", "glb"], static["photo", "glb"]) > 0.2  # the two conventions differ
    # the photo convention is the scene's photo pose, moved (not turned) onto the ground
    target = static["photo", "fbx"]
    moved = photo_scene - photo_scene.mean(0) + target.mean(0)
    for _ in range(3):  # translation-only ICP
        index = cKDTree(target).query(moved)[1]
        moved = moved + (target[index] - moved).mean(0)
    assert distance(moved, target) < 1e-3
    # the rest convention: T-pose, arms level
    rest = static["rest", "glb"]
    assert np.ptp(rest[:, 0]) > 1.4 and np.ptp(rest[:, 2]) > 1.4


def test_every_file_carries_the_photo_pose_clip_from_time_zero(files):
    written, _, _ = files
    doc = glb_json(written["motion", "glb"])
    clips = {a["name"]: a for a in doc["animations"]}
    assert set(clips) == {"photo_pose", "ResiHMR motion"}
    for clip in clips.values():
        first = min(doc["accessors"][s["input"]]["min"][0] for s in clip["samplers"])
        assert abs(first) < 1e-6
    walk = max(doc["accessors"][s["input"]]["max"][0] for s in clips["ResiHMR motion"]["samplers"])
    assert walk == pytest.approx(11 / 30, abs=1e-4)  # 12 frames at 30 fps, keys at 0 .. 11/30 s
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(written["motion", "fbx"]))
    names = {a.name.split("|")[-1] for a in bpy.data.actions}
    assert {"photo_pose", "ResiHMR motion"} <= names


def test_eight_influences_on_request(files):
    written, _, _ = files
    eight = glb_json(written["rest", "glb"])["meshes"][0]["primitives"][0]["attributes"]
    four = glb_json(written["four"])["meshes"][0]["primitives"][0]["attributes"]
    assert "JOINTS_1" in eight and "WEIGHTS_1" in eight
    assert "JOINTS_1" not in four and "JOINTS_0" in four


def test_bad_export_choices_are_refused(files, tmp_path):
    bpy.ops.wm.read_homefile(use_empty=True)
    arm, obj = build_avatar(load_body_model(), PARAMS)
    for kwargs, match in [({"pose": "sitting"}, "pose 'sitting' unknown"), ({"influences": 6}, "6 skin influences"),
                          ({"preset": "godot"}, "preset 'godot' unknown")]:
        with pytest.raises(ExportError, match=match):
            export_avatar(arm, obj, tmp_path / "x.glb", **kwargs)
    assert not list(tmp_path.iterdir())


def test_command_line_pose_preset_influences_and_motion(tmp_path, capsys):
    walk = walking_motion(tmp_path / "walk.npz")
    out = tmp_path / "out"
    assert main(["run", str(ROOT / "examples" / "demo" / "keypoints.json"), "--out", str(out), "--formats", "glb,fbx",
                 "--pose", "photo", "--preset", "unity", "--influences", "8", "--motion", str(walk)]) == 0
    doc = glb_json(out / "demo" / "avatar.glb")
    assert {a["name"] for a in doc["animations"]} == {"photo_pose", "ResiHMR motion"}
    assert "JOINTS_1" in doc["meshes"][0]["primitives"][0]["attributes"]
    record = json.loads((out / "demo" / ".resihmr-done.json").read_text())["fingerprint"]
    assert record["pose"] == "photo" and record["preset"] == "unity" and record["influences"] == 8
    assert record["motion_sha256"]
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(out / "demo" / "avatar.fbx"), use_anim=False)
    assert len([o for o in bpy.data.objects if o.type == "ARMATURE"]) == 1
    capsys.readouterr()
    # a motion that cannot be read: one line naming the file, exit 2, nothing written
    bad = tmp_path / "bad.npz"
    bad.write_text("not a motion")
    assert main(["run", str(ROOT / "examples" / "demo" / "keypoints.json"), "--out", str(tmp_path / "o2"),
                 "--formats", "glb", "--motion", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and not (tmp_path / "o2").exists()
