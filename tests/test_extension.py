"""The built extension: one validated zip per desktop platform holding only that platform's wheels (torch
included), and the zip installs through Blender's own extension system and its operators run."""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy
import pytest

from tools import build_extension

ROOT = Path(__file__).resolve().parents[1]
REPO = "resihmr_zip_repo"
BUILT = {"windows-x64", "macos-arm64", "linux-x64"}  # macos-x64: no Blender 5 and no torch 2.13.0 wheel for it


def platforms_of(wheel: str) -> set[str]:
    """Blender platforms named by a wheel file name's platform tags, read here without the tool's code."""
    result = set()
    for tag in wheel.removesuffix(".whl").split("-")[-1].split("."):
        if tag == "any":
            result.add("any")
        elif tag == "win_amd64":
            result.add("windows-x64")
        elif "linux" in tag and tag.endswith("_x86_64"):
            result.add("linux-x64")
        elif tag.startswith("macosx_") and tag.endswith("_universal2"):
            result |= {"macos-arm64", "macos-x64"}
        elif tag.startswith("macosx_"):
            result.add("macos-arm64" if tag.endswith("_arm64") else "macos-x64" if tag.endswith("_x86_64") else tag)
        else:
            result.add(tag)
    return result


def zip_contents(path: Path) -> tuple[dict, list[str]]:
    with zipfile.ZipFile(path) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        return manifest, sorted(Path(n).name for n in archive.namelist() if re.fullmatch(r"wheels/[^/]+\.whl", n))


def foreign_wheels(path: Path) -> list[str]:
    manifest, wheels = zip_contents(path)
    (plat,) = manifest["build"]["generated"]["platforms"]
    return [w for w in wheels if not platforms_of(w) & {plat, "any"}]


@pytest.fixture(scope="module")
def platform_zips(tmp_path_factory):
    """The real `make extension` build: torch, its dependencies and Pillow downloaded for every platform."""
    out = tmp_path_factory.mktemp("dist-platforms")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_extension.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(out.glob("*.zip")), proc.stdout


def test_one_validated_zip_per_platform_with_only_its_wheels(platform_zips):
    zips, stdout = platform_zips
    assert {z.name for z in zips} == {f"resihmr_blender-0.1.0-{p.replace('-', '_')}.zip" for p in BUILT}
    assert "macos-x64: not built" in stdout and "no torch 2.13.0 wheel for macOS x86_64" in stdout
    for path in zips:
        manifest, wheels = zip_contents(path)
        plat = path.stem.rsplit("-", 1)[1].replace("_", "-")
        assert manifest["build"]["generated"]["platforms"] == [plat]
        assert set(manifest["platforms"]) == BUILT
        assert sorted(Path(w).name for w in manifest["build"]["generated"]["wheels"]) == wheels
        assert foreign_wheels(path) == [], path.name
        names = [w.split("-")[0].lower() for w in wheels]
        assert len(names) == len(set(names)), f"{path.name}: two versions of one package: {wheels}"
        torch = [w for w in wheels if w.startswith("torch-2.13.0")]
        assert len(torch) == 1 and platforms_of(torch[0]) == {plat}, (path.name, wheels)
        assert any(w.startswith("pillow-13.0.0-") and platforms_of(w) == {plat} for w in wheels), wheels
        assert "numpy" not in names  # Blender ships it
        assert not any(n.startswith(("nvidia", "cuda", "triton")) for n in names), wheels  # the CPU build only
        proc = subprocess.run([sys.executable, str(build_extension.BLENDER_EXT), "validate", str(path)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_wheel_of_another_platform_is_refused(platform_zips, tmp_path):
    """A linux-x64 zip that also holds the Windows Pillow wheel: this test's check and the build's both refuse it."""
    zips, _ = platform_zips
    linux = next(z for z in zips if z.name.endswith("linux_x64.zip"))
    windows = next(z for z in zips if z.name.endswith("windows_x64.zip"))
    _, windows_wheels = zip_contents(windows)
    stray = next(w for w in windows_wheels if w.startswith("pillow-"))
    forged = tmp_path / linux.name
    with zipfile.ZipFile(linux) as src, zipfile.ZipFile(windows) as win, zipfile.ZipFile(forged, "w") as dst:
        manifest = src.read("blender_manifest.toml").decode()
        wheels = [n for n in src.namelist() if n.startswith("wheels/")]
        for name in wheels:
            dst.writestr(name, src.read(name))
        dst.writestr(f"wheels/{stray}", win.read(f"wheels/{stray}"))
        listed = ", ".join(f'"./{n}"' for n in [*wheels, f"wheels/{stray}"])
        generated = re.sub(r"\[build\.generated\]\n(platforms = .*\n)wheels = \[.*\]\n",
                           lambda m: f"[build.generated]\n{m[1]}wheels = [{listed}]\n", manifest)
        assert generated != manifest
        dst.writestr("blender_manifest.toml", generated)
    assert foreign_wheels(forged) == [stray]
    with pytest.raises(SystemExit, match=re.escape(stray)):
        build_extension.check_zip(forged)
    build_extension.check_zip(linux)  # the real one passes


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


INSTALL = """
import pathlib, sys
import bpy
repo = bpy.context.preferences.extensions.repos.new(name="zips", module="zips", custom_directory=sys.argv[2],
                                                    source="USER")
assert bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="zips", enable_on_install=True) == {
    "FINISHED"}
assert "bl_ext.zips.resihmr_blender" in {a.module for a in bpy.context.preferences.addons}
"""
RUN_TORCH = """
import sys
sys.path.insert(0, sys.argv[1])
import PIL.Image, torch
assert torch.__file__.startswith(sys.argv[1]) and PIL.Image.__file__.startswith(sys.argv[1])
x = torch.arange(6.0).reshape(2, 3)
print(torch.__version__, PIL.__version__, float((x @ x.T).sum()))
"""


def test_linux_zip_installs_its_wheels_and_its_torch_runs(platform_zips, tmp_path):
    """Blender installs the linux-x64 zip's wheels; its torch and Pillow, alone on the path, import and compute."""
    zips, _ = platform_zips
    linux = next(z for z in zips if z.name.endswith("linux_x64.zip"))
    user = tmp_path / "user"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    proc = subprocess.run([sys.executable, "-c", INSTALL, str(linux), str(tmp_path / "repo")], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (site,) = user.glob("extensions/.local/lib/python3.11/site-packages")
    # -I -S: no site-packages of this venv, so only the extension's wheels can answer the imports
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", RUN_TORCH, str(site)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    torch_version, pillow_version, total = proc.stdout.split()
    assert (torch_version, pillow_version, float(total)) == ("2.13.0+cpu", "13.0.0", 83.0)  # [[5, 14], [14, 50]]
