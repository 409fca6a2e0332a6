"""The built extension .zip installs through Blender's own extension system and its operators run."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import bpy
import pytest

ROOT = Path(__file__).resolve().parents[1]
REPO = "resihmr_zip_repo"


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_extension.py"), "--no-wheels", "--out",
                           str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return next(out.glob("resihmr_blender-*.zip"))


def test_zip_installs_and_an_operator_runs(built_zip, tmp_path):
    addon_utils = importlib.import_module("addon_utils")
    bpy.ops.wm.read_homefile(use_empty=True)
    directory = tmp_path / "repo"
    directory.mkdir()
    repos = bpy.context.preferences.extensions.repos
    repo = repos.new(name=REPO, module=REPO, custom_directory=str(directory), source="USER")
    module = f"bl_ext.{REPO}.resihmr_blender"
    try:
        bpy.ops.extensions.package_install_files(filepath=str(built_zip), repo=REPO, enable_on_install=True)
        assert (directory / "resihmr_blender" / "blender_manifest.toml").is_file()
        assert module in {a.module for a in bpy.context.preferences.addons}
        example = ROOT / "examples" / "demo"
        assert bpy.ops.resihmr.load_keypoints(filepath=str(example / "keypoints.json")) == {"FINISHED"}
        assert sum(e.enabled for e in bpy.context.scene.resihmr.residuals) == 2
    finally:
        addon_utils.disable(module, default_set=True)
        repos.remove(repo)
