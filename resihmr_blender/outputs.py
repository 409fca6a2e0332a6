"""Write one reconstruction's outputs (DESIGN §3.5): result.json, overlay.png, mask.png (numpy, no Blender) and
avatar.blend / avatar.glb / avatar.fbx (Blender, imported only when asked for; built by workflow.apply, the
same entry the sidebar uses). Every file is written atomically; inputs are never touched.
"""
from __future__ import annotations

from pathlib import Path

from .core.atomic import atomic_path

FORMATS = ("json", "overlay", "mask", "blend", "glb", "fbx")
BLENDER_FORMATS = ("blend", "glb", "fbx")


def write_outputs(out_dir: Path, reconstruction, formats) -> list[Path]:
    from .core.image import write_png
    from .core.overlay import mask_picture, overlay_picture
    from .core.photo import read_photo
    from .core.result_json import write_json_atomic

    out_dir = Path(out_dir)
    written = []
    camera, meshes = reconstruction.camera, reconstruction.meshes
    if "json" in formats:
        write_json_atomic(out_dir / "result.json", reconstruction.document())
        written.append(out_dir / "result.json")
    if "overlay" in formats:
        people = [reconstruction.keypoints.people[i] for i in reconstruction.person_indices]
        picture = overlay_picture(camera, people, reconstruction.people, meshes, read_photo(reconstruction.keypoints))
        write_png(out_dir / "overlay.png", picture)
        written.append(out_dir / "overlay.png")
    if "mask" in formats:
        write_png(out_dir / "mask.png", mask_picture(camera, meshes))
        written.append(out_dir / "mask.png")
    if any(f in formats for f in BLENDER_FORMATS):
        written += write_blender_outputs(out_dir, reconstruction, formats)
    return written


def write_blender_outputs(out_dir: Path, reconstruction, formats) -> list[Path]:
    """Every fitted person as a live rigged, cut and marked avatar in a fresh scene (workflow.apply), saved."""
    import bpy

    from .core.pipeline import PersonFailure
    from .mesh.export import export_avatar
    from .properties import ensure_attached
    from .workflow import apply, show_photo_camera

    ensure_attached()
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    show_photo_camera(scene, reconstruction)
    avatars = []
    for p, res in enumerate(reconstruction.people):
        if isinstance(res, PersonFailure):
            continue
        arm, obj = apply(reconstruction, scene, person=p, name="ResiHMR" if p == 0 else f"ResiHMR_{p}")
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
