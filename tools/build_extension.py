"""Build the installable Blender extension, one validated .zip per desktop platform, with Blender's own tool.

    python tools/build_extension.py [--out dist] [--no-wheels] [--platforms linux-x64,...]

The package folder is staged in a fresh folder under build/. Per platform, the torch==2.13.0 wheel, the wheels of
its dependencies (read from that torch wheel's own metadata, its markers evaluated for the target platform) and the
Pillow==13.0.0 wheel are downloaded for CPython 3.11 (Blender 5.0's Python); numpy is not bundled (Blender ships it).
All wheels and platforms go into the staged blender_manifest.toml, Blender's `extension build --split-platforms`
writes one zip per platform with the wheels that platform can load, `extension validate` checks each zip, and
check_zip() refuses a zip holding a wheel of another platform or missing torch.

macos-x64 is not built: Blender 5.0 (this extension's minimum) has no Intel-Mac build, 4.5 LTS was the last, and
PyPI has no torch 2.13.0 wheel for macOS x86_64 (PyTorch's last one was torch 2.2.2).
--no-wheels builds one platform-independent zip without wheels (for the installation test).
"""
from __future__ import annotations

import argparse
import platform as host
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import bpy
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
BLENDER_EXT = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
PYTHON = "3.11"  # Blender 5.0's Python
PILLOW = "Pillow==13.0.0"


@dataclass(frozen=True)
class Platform:
    blender: str  # Blender's name, also the zip's suffix (with "_")
    pip: str  # pip's platform tag; pip also takes the older tags of the same system (manylinux2014, macosx_11_0)
    torch: str  # the torch wheel to bundle
    system: str  # platform_system, sys_platform, os_name, platform_machine for the dependencies' markers
    sys_platform: str
    os_name: str
    machine: str


PLATFORMS = {p.blender: p for p in (
    Platform("windows-x64", "win_amd64", "torch==2.13.0", "Windows", "win32", "nt", "AMD64"),
    # torch 2.13.0's only macOS wheel is macosx_14_0_arm64: Apple silicon with macOS 14 or newer
    Platform("macos-arm64", "macosx_14_0_arm64", "torch==2.13.0", "Darwin", "darwin", "posix", "arm64"),
    # the CPU build: PyPI's Linux wheel requires the CUDA wheels (the machine image has it in pip's find-links)
    Platform("linux-x64", "manylinux_2_28_x86_64", "torch==2.13.0+cpu", "Linux", "linux", "posix", "x86_64"),
)}
NOT_BUILT = {"macos-x64": "Blender 5.0, this extension's minimum, has no Intel-Mac build (4.5 LTS was the last) and "
                          "PyPI has no torch 2.13.0 wheel for macOS x86_64 (PyTorch's last was torch 2.2.2)"}


def wheel_platforms(filename: str) -> set[str] | None:
    """The Blender platforms a wheel runs on, from its platform tags; None for a pure-Python wheel."""
    result: set[str] = set()
    for tag in parse_wheel_filename(filename)[3]:
        plat = tag.platform
        if plat == "any":
            return None
        if plat == "win_amd64":
            result.add("windows-x64")
        elif plat == "win_arm64":
            result.add("windows-arm64")
        elif re.fullmatch(r"(many|musl)?linux(_\d+_\d+|\d+)?_x86_64", plat):
            result.add("linux-x64")
        elif re.fullmatch(r"(many|musl)?linux(_\d+_\d+|\d+)?_aarch64", plat):
            result.add("linux-arm64")
        elif re.fullmatch(r"macosx_\d+_\d+_(arm64|x86_64|universal2)", plat):
            arch = plat.rsplit("_", 1)[1]
            result |= {"macos-arm64", "macos-x64"} if arch == "universal2" else {
                "macos-arm64" if arch == "arm64" else "macos-x64"}
        else:
            result.add(plat)  # win32 and others: matches no Blender platform, so check_zip refuses it
    return result


def pip_download(requirements: list[str], plat: Platform, dest: Path, deps: bool) -> None:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(dest),
               "--python-version", PYTHON, "--implementation", "cp", "--abi", "cp" + PYTHON.replace(".", ""),
               "--platform", plat.pip, *([] if deps else ["--no-deps"]), *requirements]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or [proc.stderr.strip()]
        raise SystemExit(f"{plat.blender}: pip download {' '.join(requirements)} failed: {errors[0]}")


def torch_dependencies(wheel: Path, plat: Platform) -> list[str]:
    """torch's Requires-Dist whose markers hold on the target platform (pip would judge them on this machine)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    environment = {"platform_system": plat.system, "sys_platform": plat.sys_platform, "os_name": plat.os_name,
                   "platform_machine": plat.machine, "python_version": PYTHON,
                   "python_full_version": PYTHON + ".0", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "extra": ""}
    result = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or Marker(str(req.marker)).evaluate(environment):
                req.marker = None
                result.append(str(req))
    return result


def fetch_wheels(wheels: Path, platforms: list[str], downloads: Path) -> list[str]:
    """Download every platform's wheels into one folder; the same pure-Python wheels serve every platform."""
    wheels.mkdir(exist_ok=True)
    requirements = {PILLOW}
    for name in platforms:
        plat = PLATFORMS[name]
        dest = downloads / name / "torch"  # per build: concurrent builds never share a half-written file
        pip_download([plat.torch], plat, dest, deps=False)
        (torch_wheel,) = dest.glob("*.whl")
        shutil.move(torch_wheel, wheels / torch_wheel.name)
        requirements |= set(torch_dependencies(wheels / torch_wheel.name, plat))
    for name in platforms:  # the same requirements everywhere: one version of each pure-Python wheel
        dest = downloads / name / "deps"
        pip_download(sorted(requirements), PLATFORMS[name], dest, deps=True)
        for wheel in dest.glob("*.whl"):
            if canonicalize_name(parse_wheel_filename(wheel.name)[0]) != "numpy":  # Blender ships numpy
                shutil.copy2(wheel, wheels)
    names = sorted(p.name for p in wheels.glob("*.whl"))
    for name in platforms:  # two versions of one package in a zip: Blender would install either
        seen: dict[str, str] = {}
        for wheel in names:
            plats = wheel_platforms(wheel)
            if plats is None or name in plats:
                dist = canonicalize_name(parse_wheel_filename(wheel)[0])
                if dist in seen:
                    raise SystemExit(f"{name}: two wheels of {dist}: {seen[dist]} and {wheel}")
                seen[dist] = wheel
    return names


def write_manifest(staged: Path, platforms: list[str], wheels: list[str]) -> None:
    manifest = staged / "blender_manifest.toml"
    text = manifest.read_text()
    listed = ",\n  ".join(f'"./wheels/{n}"' for n in wheels)
    anchor = 'blender_version_min = "5.0.0"\n'
    if anchor not in text:
        raise SystemExit(f"{manifest}: no line {anchor.strip()!r} to put platforms and wheels after")
    quoted = ", ".join(f'"{p}"' for p in platforms)
    manifest.write_text(text.replace(anchor, f"{anchor}platforms = [{quoted}]\nwheels = [\n  {listed},\n]\n"))


def check_zip(path: Path) -> str:
    """The zip's one platform; SystemExit when a wheel belongs elsewhere, is unlisted, or torch is missing."""
    with zipfile.ZipFile(path) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        inside = {Path(n).name for n in archive.namelist() if n.startswith("wheels/") and n.endswith(".whl")}
    generated = manifest.get("build", {}).get("generated", {})
    platforms = generated.get("platforms", [])
    if len(platforms) != 1:
        raise SystemExit(f"{path.name}: [build.generated] platforms is {platforms!r}, not one platform")
    plat = platforms[0]
    listed = {Path(w).name for w in generated.get("wheels", [])}
    if listed != inside:
        raise SystemExit(f"{path.name}: wheels listed {sorted(listed ^ inside)!r} differ from the zip's")
    for wheel in sorted(inside):
        plats = wheel_platforms(wheel)
        if plats is not None and plat not in plats:
            raise SystemExit(f"{path.name}: wheel {wheel} is for {sorted(plats)}, not {plat}")
    if not any(w.startswith("torch-") for w in inside):
        raise SystemExit(f"{path.name}: no torch wheel for {plat}")
    return plat


def blender_ext(*args: str) -> None:
    proc = subprocess.run([sys.executable, str(BLENDER_EXT), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"extension {args[0]} failed: {(proc.stdout + proc.stderr).strip()}")


def build(out: Path, wheels: bool = True, platforms: list[str] | None = None) -> list[Path]:
    """Build, validate and check the zips; returns them (one platform-independent zip without wheels)."""
    if host.python_version_tuple()[:2] != tuple(PYTHON.split(".")):
        raise SystemExit(f"run with Python {PYTHON} (Blender 5.0's), not {host.python_version()}")
    platforms = platforms or list(PLATFORMS)
    for name in platforms:
        if name in NOT_BUILT:
            raise SystemExit(f"--platforms: {name} is not built: {NOT_BUILT[name]}")
        if name not in PLATFORMS:
            raise SystemExit(f"--platforms: unknown platform {name!r}; built: {', '.join(PLATFORMS)}")
    (ROOT / "build").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="extension-", dir=ROOT / "build"))  # concurrent builds never collide
    try:
        staged = workdir / "resihmr_blender"
        shutil.copytree(ROOT / "resihmr_blender", staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        manifest = tomllib.loads((staged / "blender_manifest.toml").read_text())
        stem = f"{manifest['id']}-{manifest['version']}"
        if wheels:
            write_manifest(staged, platforms, fetch_wheels(staged / "wheels", platforms, workdir / "downloads"))
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob(f"{stem}*.zip"):
            old.unlink()  # a zip of an earlier build or platform set is never mistaken for this one
        blender_ext("build", "--source-dir", str(staged), "--output-dir", str(out),
                    *(["--split-platforms"] if wheels else []))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    expected = [out / f"{stem}-{p.replace('-', '_')}.zip" for p in platforms] if wheels else [out / f"{stem}.zip"]
    for path in expected:
        if not path.is_file():
            raise SystemExit(f"extension build wrote no {path}")
        blender_ext("validate", str(path))
        if wheels:
            check_zip(path)
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dist")
    parser.add_argument("--no-wheels", action="store_true", help="one zip without wheels, for any platform")
    parser.add_argument("--platforms", default=",".join(PLATFORMS), help="comma-separated, of " + ", ".join(PLATFORMS))
    args = parser.parse_args()
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    paths = build(Path(args.out), not args.no_wheels, platforms)
    if not args.no_wheels:
        for name, reason in NOT_BUILT.items():
            print(f"{name}: not built: {reason}")
    for path in paths:
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB), validated")


if __name__ == "__main__":
    main()
