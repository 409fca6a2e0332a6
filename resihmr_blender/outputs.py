"""Write one image's outputs (DESIGN §3.5): result.json, overlay.png, mask.png (numpy, no Blender) and
avatar.blend / avatar.glb / avatar.fbx (Blender, imported only when asked for). Every file is written
atomically; inputs are never touched.
"""
from __future__ import annotations

from pathlib import Path

from .core.atomic import atomic_path

FORMATS = ("json", "overlay", "mask", "blend", "glb", "fbx")
BLENDER_FORMATS = ("blend", "glb", "fbx")


def write_outputs(out_dir: Path, model, kfile, camera, results, meshes, formats, source: str | None = None,
                  photo=None) -> list[Path]:
    from .core.image import write_png
    from .core.overlay import mask_picture, overlay_picture
    from .core.pipeline import result_document, write_json_atomic

    written = []
    if "json" in formats:
        write_json_atomic(out_dir / "result.json", result_document(model, camera, results, source=source))
        written.append(out_dir / "result.json")
    if "overlay" in formats:
        write_png(out_dir / "overlay.png", overlay_picture(camera, kfile.people, results, meshes, photo))
        written.append(out_dir / "overlay.png")
    if "mask" in formats:
        write_png(out_dir / "mask.png", mask_picture(camera, meshes))
        written.append(out_dir / "mask.png")
    if any(f in formats for f in BLENDER_FORMATS):
        written += write_blender_outputs(out_dir, model, camera, results, formats, kfile)
    return written


def write_blender_outputs(out_dir: Path, model, camera, results, formats, kfile=None) -> list[Path]:
    """Build every fitted person as a live rigged avatar in a fresh scene, cut the accepted limbs, save."""
    import bpy

    from .core.pipeline import PersonFailure, accepted_cuts
    from .mesh.build import build_avatar
    from .mesh.camera import create_photo_camera
    from .mesh.cut import cut_residual
    from .mesh.export import export_avatar

    bpy.ops.wm.read_homefile(use_empty=True)
    image_path = None
    if kfile is not None and kfile.image_path and kfile.path:
        candidate = Path(kfile.path).parent / kfile.image_path
        image_path = str(candidate) if candidate.is_file() else None
    create_photo_camera(camera, image_path=image_path)
    avatars = []
    for p, res in enumerate(results):
        if isinstance(res, PersonFailure):
            continue
        arm, obj = build_avatar(model, res.params(), name="ResiHMR" if p == 0 else f"ResiHMR_{p}")
        for kind, lam in accepted_cuts(res):
            cut_residual(obj, kind, lam)
        avatars.append((p, arm, obj))
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmt in ("glb", "fbx"):
        if fmt in formats:
            for p, arm, obj in avatars:
                path = out_dir / (f"avatar.{fmt}" if p == 0 else f"avatar_{p}.{fmt}")
                written.append(export_avatar(arm, obj, path))
    if "blend" in formats:
        target = out_dir / "avatar.blend"
        with atomic_path(target) as tmp:
            bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, check_existing=False, compress=True)
        written.append(target)
    return written
