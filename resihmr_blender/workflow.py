"""The Blender-side steps behind the operators (operators stay thin: they call these and report).

Scene state (the current input): `scene.resihmr` — photo, keypoints file, person, the 8 residual entries the user
can edit. Avatar state (one per avatar): custom properties on the mesh object (`resihmr_result` JSON, the cuts).
"""
from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np

from .core.keypoints import KeypointsFile
from .core.keypoints_io import read_keypoints
from .core.residuals import RESIDUAL_KINDS, residual_by_name
from .errors import UserError

KEYPOINTS_OBJECT = "ResiHMR keypoints"
DISPLAY_DEPTH = 1.0  # metres in front of the camera where the keypoints are drawn (they project onto the photo)


def ensure_residual_entries(state) -> None:
    if len(state.residuals) != len(RESIDUAL_KINDS):
        state.residuals.clear()
        for kind in RESIDUAL_KINDS:
            entry = state.residuals.add()
            entry.kind = kind


def read_scene_keypoints(scene) -> KeypointsFile:
    state = scene.resihmr
    if not state.keypoints_path:
        raise UserError("no keypoints file: load one in the Input panel (or File > Import > ResiHMR keypoints)")
    size = _photo_size(scene)
    return read_keypoints(bpy.path.abspath(state.keypoints_path), image_size=size)


def _photo_size(scene):
    state = scene.resihmr
    if not state.photo_path:
        return None
    image = bpy.data.images.load(bpy.path.abspath(state.photo_path), check_existing=True)
    return tuple(int(v) for v in image.size) if image.size[0] > 0 else None


def load_keypoints(scene, path: str) -> KeypointsFile:
    """Read and validate the file (errors name file, person, field, index), then show it in the scene."""
    kfile = read_keypoints(path, image_size=_photo_size(scene))
    if not kfile.people:
        raise UserError(f"{path}: no people in the file")
    state = scene.resihmr
    state.keypoints_path = path
    state.person_index = min(state.person_index, len(kfile.people) - 1)
    ensure_residual_entries(state)
    person = kfile.people[state.person_index]
    for k, entry in enumerate(state.residuals):
        x, y, conf = person.residual[k]
        entry.enabled, entry.endpoint, entry.confidence = bool(conf > 0), (float(x), float(y)), float(max(conf, 0))
    if kfile.image_path and not state.photo_path and kfile.path:
        photo = Path(kfile.path).parent / kfile.image_path
        if photo.is_file():
            state.photo_path = str(photo)
    setup_camera(scene, kfile)
    show_keypoints(scene, kfile)
    return kfile


def scene_camera_model(scene, kfile: KeypointsFile | None = None):
    """The core Camera for the scene's input: the photo's size, the file's focal length or the guess."""
    from .core.camera import Camera

    size = _photo_size(scene) or (kfile.image_size if kfile is not None else None)
    if not size:
        raise UserError("image size unknown: load the photo, or give image width/height in the keypoints file")
    return Camera.for_image(size[0], size[1], kfile.focal_length_px if kfile is not None else None)


def setup_camera(scene, kfile: KeypointsFile | None = None):
    from .mesh.camera import create_photo_camera

    camera = scene_camera_model(scene, kfile)
    old = bpy.data.objects.get("ResiHMR camera")
    if old is not None:
        bpy.data.objects.remove(old)
    state = scene.resihmr
    path = bpy.path.abspath(state.photo_path) if state.photo_path else None
    return create_photo_camera(camera, image_path=path if path and Path(path).is_file() else None)


def load_photo(scene, path: str) -> None:
    image = bpy.data.images.load(path, check_existing=True)
    if image.size[0] == 0:
        raise UserError(f"{path}: not an image Blender can read")
    scene.resihmr.photo_path = path
    kfile = None
    if scene.resihmr.keypoints_path:
        kfile = read_scene_keypoints(scene)
    setup_camera(scene, kfile)
    if kfile is not None:
        show_keypoints(scene, kfile)


def show_keypoints(scene, kfile: KeypointsFile) -> None:
    """The person's keypoints as vertices on a plane in front of the camera, so they sit on the photo."""
    from .mesh.frames import camera_to_world

    camera = scene_camera_model(scene, kfile)
    person = kfile.people[scene.resihmr.person_index]
    points = [p for p in person.body25 if p[2] > 0] + [p for p in person.residual if p[2] > 0]
    pixels = np.array([p[:2] for p in points]).reshape(-1, 2)
    rays = np.c_[(pixels - camera.principal_point) / camera.focal_length, np.ones(len(pixels))] * DISPLAY_DEPTH
    world = camera_to_world(rays)
    mesh = bpy.data.meshes.new(KEYPOINTS_OBJECT)
    mesh.from_pydata(world.tolist(), [], [])
    old = bpy.data.objects.get(KEYPOINTS_OBJECT)
    if old is not None:
        bpy.data.objects.remove(old)
    obj = bpy.data.objects.new(KEYPOINTS_OBJECT, mesh)
    obj.display_type = "WIRE"
    obj.show_in_front = True
    obj.hide_render = True
    scene.collection.objects.link(obj)


def scene_person(scene):
    """The person to fit, with the residual limbs as edited in the panel (they override the file's)."""
    kfile = read_scene_keypoints(scene)
    state = scene.resihmr
    if state.person_index >= len(kfile.people):
        raise UserError(f"person {state.person_index} does not exist in {state.keypoints_path}")
    person = kfile.people[state.person_index]
    ensure_residual_entries(state)
    residual = np.zeros((8, 3))
    limbs = {}
    for k, entry in enumerate(state.residuals):
        if not entry.enabled:
            continue
        limb = residual_by_name(entry.kind).limb
        if limb in limbs:
            raise UserError(f"two residual kinds on the {limb.replace('_', ' ')}: {limbs[limb]} and {entry.kind}; "
                            "keep one")
        limbs[limb] = entry.kind
        residual[k] = [entry.endpoint[0], entry.endpoint[1], max(entry.confidence, 1e-3)]
    person.residual = residual
    return person, scene_camera_model(scene, kfile), kfile


def validate_residual_toggle(state, index: int) -> None:
    """Refuse enabling a second kind on a limb that already has one."""
    entry = state.residuals[index]
    limb = residual_by_name(entry.kind).limb
    for other in state.residuals:
        if other != entry and other.enabled and residual_by_name(other.kind).limb == limb:
            raise UserError(f"the {limb.replace('_', ' ')} already has {other.kind}; disable it first")


# ---------------------------------------------------------------------------------------------------------------
# Avatar


def avatars(scene):
    return [o for o in scene.objects if o.type == "MESH" and o.get("resihmr_avatar")]


def apply_fit(scene, model, result, name: str = "ResiHMR"):
    """Build the live avatar for a fit result (replacing the previous avatar of the same name)."""
    from .core.pipeline import person_json
    from .mesh.build import build_avatar

    for old in [o for o in scene.objects if o.get("resihmr_avatar") and o.name.startswith(name)]:
        data = old.data
        bpy.data.objects.remove(old)
        if isinstance(data, bpy.types.Mesh) and data.users == 0:
            bpy.data.meshes.remove(data)
        elif isinstance(data, bpy.types.Armature) and data.users == 0:
            bpy.data.armatures.remove(data)
    arm, obj = build_avatar(model, result.params(), name=name, collection=scene.collection)
    obj["resihmr_result"] = json.dumps(person_json(result))
    state = scene.resihmr
    ensure_residual_entries(state)
    for entry in state.residuals:
        entry.reproj_error_px, entry.accepted = -1.0, False
    for r in result.residuals:
        entry = state.residuals[RESIDUAL_KINDS.index(r.kind)]
        entry.lam, entry.reproj_error_px, entry.accepted = r.lam, r.reproj_error_px, r.accepted
    obj.resihmr.fit_error_px = result.fit.fit_error_px
    obj.resihmr.model_sha256 = model.sha256 or ""
    return arm, obj


def cut_avatar(obj) -> list[str]:
    """Cut and seal every accepted residual limb of the avatar's fit that is not cut yet."""
    from .mesh.cut import cut_residual, cut_state

    if obj is None or not obj.get("resihmr_avatar") or obj.type != "MESH":
        raise UserError("select an avatar built by ResiHMR (run Fit first)")
    result = json.loads(obj.get("resihmr_result", "{}"))
    done = {c["kind"] for c in cut_state(obj)}
    todo = [(r["kind"], r["lambda"]) for r in result.get("residuals", []) if r["accepted"] and r["kind"] not in done]
    if not todo:
        raise UserError(f"{obj.name}: nothing to cut (no accepted residual limb left)")
    for kind, lam in todo:
        cut_residual(obj, kind, lam)
    return [k for k, _ in todo]


def measurements_text(obj, csv: bool = False) -> str:
    result = json.loads(obj.get("resihmr_result", "{}"))
    rows = [("kind", "lambda", "accepted", "residual_length_m", "stump_volume_l", "circumferences_m")]
    for r in result.get("residuals", []):
        rows.append((r["kind"], f"{r['lambda']:.4f}", str(r["accepted"]), f"{r.get('residual_length_m', 0):.4f}",
                     f"{r.get('stump_volume_l', float('nan')):.4f}",
                     " ".join(f"{c:.4f}" for c in r.get("circumferences_m", []))))
    sep = "," if csv else "\t"
    return "\n".join(sep.join(row) for row in rows)


def detect_photo(scene, out_folder: str) -> list:
    """Detect keypoints on the scene's photo, write them as a keypoints file in `out_folder` (never beside the
    photo, so no user file is overwritten), load it, and mark the limb-loss suggestions (not enabled)."""
    from .core.keypoints import KeypointsFile
    from .core.keypoints_io import write_keypoints
    from .detect import detect, read_image

    state = scene.resihmr
    if not state.photo_path:
        raise UserError("load the photo first")
    photo = bpy.path.abspath(state.photo_path)
    found = detect(read_image(photo), source=photo)
    target = Path(out_folder) / (Path(photo).stem + "_detected_keypoints.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_keypoints(target, KeypointsFile(path=None, people=[found.person], image_path=photo,
                                          image_width=found.width, image_height=found.height))
    load_keypoints(scene, str(target))
    for entry in state.residuals:
        entry.suggested = False
    for s in found.suggestions:
        entry = state.residuals[RESIDUAL_KINDS.index(s.kind)]
        entry.suggested, entry.suggested_endpoint, entry.suggestion_score = True, s.endpoint, s.score
    return found


def accept_suggestion(state, index: int) -> None:
    entry = state.residuals[index]
    if not entry.suggested:
        raise UserError(f"{entry.kind}: no suggestion to accept")
    if not entry.enabled:
        validate_residual_toggle(state, index)
    entry.enabled, entry.endpoint = True, tuple(entry.suggested_endpoint)
    entry.confidence, entry.suggested = max(entry.suggestion_score, 0.5), False
