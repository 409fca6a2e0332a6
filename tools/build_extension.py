"""Build the installable Blender extension .zip with Blender's own extension tool (shipped in the bpy wheel).

    python tools/build_extension.py [--out dist] [--no-wheels]

The package folder is staged in a fresh folder under build/; unless --no-wheels, torch==2.13.0 and its pure-Python
dependencies and Pillow (photos) are downloaded as linux x86_64 / CPython 3.11 wheels into it and listed in the
staged manifest
(`wheels = [...]`, `platforms = ["linux-x64"]`); numpy is not bundled (Blender ships it). Other platforms: run
the same with `--platform` set to the pip platform tag of the target (e.g. macosx_11_0_arm64, win_amd64) and
the matching Blender platform (macos-arm64, windows-x64).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[1]
BLENDER_EXT = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def stage(build: Path) -> Path:
    target = build / "resihmr_blender"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ROOT / "resihmr_blender", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def add_wheels(staged: Path, pip_platform: str, blender_platform: str) -> None:
    wheels = staged / "wheels"
    wheels.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "torch==2.13.0", "Pillow==13.0.0",
                    "--dest", str(wheels),
                    "--only-binary=:all:", "--python-version", "3.11", "--platform", pip_platform,
                    "--platform", "any"], check=True)
    for numpy_wheel in wheels.glob("numpy-*.whl"):
        numpy_wheel.unlink()  # Blender ships numpy
    names = sorted(p.name for p in wheels.glob("*.whl"))
    manifest = staged / "blender_manifest.toml"
    text = manifest.read_text()
    listed = ",\n  ".join(f'"./wheels/{n}"' for n in names)
    text = text.replace('blender_version_min = "5.0.0"\n',
                        f'blender_version_min = "5.0.0"\nplatforms = ["{blender_platform}"]\n'
                        f'wheels = [\n  {listed},\n]\n')
    manifest.write_text(text)


def build(out: Path, wheels: bool, pip_platform: str, blender_platform: str) -> Path:
    (ROOT / "build").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="extension-", dir=ROOT / "build"))  # concurrent builds never collide
    try:
        staged = stage(workdir)
        if wheels:
            add_wheels(staged, pip_platform, blender_platform)
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(BLENDER_EXT), "build", "--source-dir", str(staged), "--output-dir",
                        str(out)], check=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    zips = sorted(out.glob("resihmr_blender-*.zip"), key=lambda p: p.stat().st_mtime)
    subprocess.run([sys.executable, str(BLENDER_EXT), "validate", str(zips[-1])], check=True)
    return zips[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dist")
    parser.add_argument("--no-wheels", action="store_true")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64")
    parser.add_argument("--blender-platform", default="linux-x64")
    args = parser.parse_args()
    path = build(Path(args.out), not args.no_wheels, args.platform, args.blender_platform)
    print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
