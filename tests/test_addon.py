"""The add-on as Blender loads an extension: manifest validation, enable/disable twice, preferences, names."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import bpy
import pytest

addon_utils = importlib.import_module("addon_utils")  # on the path only once bpy is imported

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "resihmr_blender"
BLENDER_EXT = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
REPO = "resihmr_test_repo"
MODULE = f"bl_ext.{REPO}.resihmr_blender"


def test_manifest_passes_blenders_validator():
    proc = subprocess.run([sys.executable, str(BLENDER_EXT), "validate", str(PACKAGE)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def extension_repo(tmp_path_factory):
    """A user extension repository whose directory holds our package, as an installed extension would."""
    directory = tmp_path_factory.mktemp("extensions")
    (directory / "resihmr_blender").symlink_to(PACKAGE, target_is_directory=True)
    repos = bpy.context.preferences.extensions.repos
    repo = repos.new(name=REPO, module=REPO, custom_directory=str(directory), source="USER")
    yield repo
    addon_utils.disable(MODULE, default_set=True)
    repos.remove(repo)


def enabled_modules() -> set[str]:
    return {a.module for a in bpy.context.preferences.addons}


def test_enable_disable_twice_like_blender(extension_repo):
    for _ in range(2):
        module = addon_utils.enable(MODULE, default_set=True, handle_error=None)
        assert module is not None and MODULE in enabled_modules()
        prefs = bpy.context.preferences.addons[MODULE].preferences
        assert prefs.accept_threshold_px == 15.0 and prefs.body_model_path == ""
        assert hasattr(bpy.types.Scene, "resihmr") and hasattr(bpy.types.Object, "resihmr")
        addon_utils.disable(MODULE, default_set=True, handle_error=None)
        assert MODULE not in enabled_modules()
        assert not hasattr(bpy.types.Scene, "resihmr")


def test_core_honours_the_body_model_preference(extension_repo, tmp_path):
    import shutil

    from resihmr_blender.core.body_model import DEFAULT_MODEL_PATH

    module = addon_utils.enable(MODULE, default_set=True, handle_error=None)
    try:
        prefs_module = sys.modules[f"{MODULE}.preferences"]
        assert prefs_module.resolve_body_model().is_default
        copy = tmp_path / "my_model.npz"
        shutil.copy(DEFAULT_MODEL_PATH, copy)
        bpy.context.preferences.addons[MODULE].preferences.body_model_path = str(copy)
        model = prefs_module.resolve_body_model()
        assert model.source_path == str(copy) and not model.is_default
        bpy.context.preferences.addons[MODULE].preferences.body_model_path = str(tmp_path / "missing.npz")
        from resihmr_blender.core.body_model import BodyModelError
        with pytest.raises(Exception) as info:
            prefs_module.resolve_body_model()
        assert "missing.npz" in str(info.value) and type(info.value).__name__ == BodyModelError.__name__
    finally:
        bpy.context.preferences.addons[MODULE].preferences.body_model_path = ""
        addon_utils.disable(MODULE, default_set=True, handle_error=None)
    assert module is not None


def test_registered_names_follow_the_conventions():
    from resihmr_blender import operators, panels, preferences, properties

    for cls in operators.classes:
        assert cls.__name__.startswith("RESIHMR_OT_") and cls.bl_idname.startswith("resihmr."), cls
    for cls in panels.classes:
        assert cls.__name__.startswith("RESIHMR_PT_") and cls.bl_category == "ResiHMR", cls
        assert cls.bl_space_type == "VIEW_3D" and cls.bl_region_type == "UI"
    for cls in properties.classes:
        assert cls.__name__.startswith("RESIHMR_PG_"), cls
    assert preferences.RESIHMR_AP_Preferences.__name__.startswith("RESIHMR_")


def test_blender_command_entry_runs_the_cli(tmp_path):
    from resihmr_blender.cli import blender_command

    example = ROOT / "examples" / "demo" / "keypoints.json"
    assert blender_command(["run", str(example), "--out", str(tmp_path), "--formats", "json"]) == 0
    assert (tmp_path / "demo" / "result.json").is_file()


def test_the_tilt_prior_preference_reaches_rafo(extension_repo):
    """The preference decides the RAFO the sidebar's fits run: the tilt prior by default, the paper's eq. 4 when
    unticked (its result.json then records no tilt prior)."""
    module = addon_utils.enable(MODULE, default_set=True, handle_error=None)
    try:
        workflow = sys.modules[f"{MODULE}.workflow"]
        prefs = bpy.context.preferences.addons[MODULE].preferences
        assert prefs.tilt_prior and workflow.settings_from_preferences().rafo.to_json()["tilt_prior"] is not None
        prefs.tilt_prior = False
        assert workflow.settings_from_preferences().rafo.to_json()["tilt_prior"] is None
    finally:
        bpy.context.preferences.addons[MODULE].preferences.tilt_prior = True
        addon_utils.disable(MODULE, default_set=True, handle_error=None)
        assert module is not None
