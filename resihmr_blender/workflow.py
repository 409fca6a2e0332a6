"""THE Blender entry: `apply(reconstruction, scene)` turns a core Reconstruction into a live rigged avatar
(built, cut, sealed, marked, its result document stored on it). Around it, the scene-side steps the operators
call (operators stay thin: they call these and report).

Scene state (the current input): `scene.resihmr` — photo, keypoints file, person, the 8 residual entries the user
can edit. Avatar state (one per avatar): `obj.resihmr` on the mesh object — its result document (the same
`resihmr-result/1` the command line writes), its cut limbs with their λ (a live slider: dragging re-cuts).

Every step validates everything it needs before it changes anything: a refused step leaves the scene as it was.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import bpy
import numpy as np

from .core.keypoints import KeypointsFile
from .core.keypoints_io import read_keypoints
from .core.residuals import RESIDUAL_KINDS, limb_conflict, limb_label
from .errors import UserError

_SYNCING = [False]  # True while the add-on itself writes mirrored values: their update callbacks must not act


@contextlib.contextmanager
def syncing():
    previous = _SYNCING[0]
    _SYNCING[0] = True
    try:
        yield
    finally:
        _SYNCING[0] = previous


def is_syncing() -> bool:
    return _SYNCING[0]


KEYPOINTS_OBJECT = "ResiHMR keypoints"
CAMERA_OBJECT = "ResiHMR camera"
DETECTED_MASK_SUFFIX = "_detected_mask.png"  # MediaPipe's person mask beside <photo>_detected_keypoints.json
DISPLAY_DEPTH = 1.0  # metres in front of the camera where the keypoints are drawn (they project onto the photo)


# ---------------------------------------------------------------------------------------------------------------
# Settings and camera: the core's one settings object and one camera decider, fed from the scene


def settings_from_preferences(context=None, image_size: tuple[int, int] | None = None):
    """The run's settings from the add-on preferences (the command line's defaults when it is not enabled);
    `image_size` is the loaded photo's. The live λ and endpoint updates call this without a photo: they need
    only the RAFO settings, and must not touch the image on every mouse move."""
    from .core.settings import Settings
    from .preferences import get_preferences

    prefs = get_preferences(context)
    values = {} if prefs is None else {
        "threshold_px": prefs.accept_threshold_px, "lambda_min": prefs.lambda_min, "lambda_max": prefs.lambda_max,
        "num_threads": prefs.num_threads, "tilt_prior": prefs.tilt_prior}
    return Settings.from_values(image_size=image_size, **values)


def _photo_size(scene, path: str | None = None) -> tuple[int, int] | None:
    path = path or scene.resihmr.photo_path
    if not path:
        return None
    image = _load_image(bpy.path.abspath(path))
    return tuple(int(v) for v in image.size)


def _load_image(path: str):
    """The photo as an image datablock; a file Blender cannot read leaves no datablock behind."""
    try:
        image = bpy.data.images.load(path, check_existing=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: cannot read this photo ({exc})") from None
    if image.size[0] == 0:
        if image.users == 0:
            bpy.data.images.remove(image)
        raise UserError(f"{path}: not an image Blender can read")
    return image


def _remove_object(name: str, datablocks) -> None:
    """Remove one of our helper objects (camera, keypoints) and its data when nothing else uses it."""
    old = bpy.data.objects.get(name)
    if old is not None:
        data = old.data
        bpy.data.objects.remove(old)
        if data is not None and data.users == 0:
            datablocks.remove(data)


def show_photo_camera(scene, reconstruction_or_camera, photo: str | None = None):
    """The photo's camera in the scene (replacing ours), with the photo as its background when known."""
    from .core.photo import photo_path
    from .mesh.camera import create_photo_camera

    camera = getattr(reconstruction_or_camera, "camera", reconstruction_or_camera)
    if photo is None and hasattr(reconstruction_or_camera, "keypoints"):
        found = photo_path(reconstruction_or_camera.keypoints)
        photo = str(found) if found else None
    _remove_object(CAMERA_OBJECT, bpy.data.cameras)
    return create_photo_camera(camera, name=CAMERA_OBJECT, scene=scene, image_path=photo)


# ---------------------------------------------------------------------------------------------------------------
# Input


def ensure_residual_entries(state) -> None:
    if len(state.residuals) != len(RESIDUAL_KINDS):
        state.residuals.clear()
        for kind in RESIDUAL_KINDS:
            entry = state.residuals.add()
            entry.kind = kind


def read_scene_keypoints(scene, photo_size: tuple[int, int] | None) -> KeypointsFile:
    state = scene.resihmr
    if not state.keypoints_path:
        raise UserError("no keypoints file: load one in the Input panel (or File > Import > ResiHMR keypoints)")
    return read_keypoints(bpy.path.abspath(state.keypoints_path), image_size=photo_size)


def load_keypoints(scene, path: str) -> KeypointsFile:
    """Read and validate the file (errors name file, person, field, index) and decide its camera; only then
    show it in the scene."""
    from .core.photo import photo_path
    from .core.pipeline import camera_for

    state = scene.resihmr
    size = _photo_size(scene)
    kfile = read_keypoints(path, image_size=size)
    if not kfile.people:
        raise UserError(f"{path}: no people in the file")
    person_index = min(state.person_index, len(kfile.people) - 1)
    photo = bpy.path.abspath(state.photo_path) if state.photo_path else None
    if photo is None and photo_path(kfile) is not None:
        photo = str(photo_path(kfile))
    if photo and size is None:
        size = _photo_size(scene, photo)
    camera = camera_for(kfile, settings_from_preferences(image_size=size))
    # -- everything is known: change the scene
    state.keypoints_path, state.person_index = path, person_index
    if photo and not state.photo_path:
        state.photo_path = photo
    ensure_residual_entries(state)
    for k, entry in enumerate(state.residuals):
        x, y, conf = kfile.people[person_index].residual[k]
        entry.enabled, entry.endpoint, entry.confidence = bool(conf > 0), (float(x), float(y)), float(max(conf, 0))
        entry.suggested = False
    show_photo_camera(scene, camera, photo)
    show_keypoints(scene, kfile, camera)
    return kfile


def load_photo(scene, path: str) -> None:
    """Load the photo (refused without a trace when Blender cannot read it); re-place the camera for it."""
    from .core.pipeline import camera_for

    image = _load_image(path)
    size = tuple(int(v) for v in image.size)
    kfile = camera = None
    if scene.resihmr.keypoints_path:
        kfile = read_scene_keypoints(scene, size)
        camera = camera_for(kfile, settings_from_preferences(image_size=size))
    else:
        from .core.camera import Camera

        camera = Camera.for_image(*size)
    scene.resihmr.photo_path = path
    show_photo_camera(scene, camera, path)
    if kfile is not None:
        show_keypoints(scene, kfile, camera)


def show_keypoints(scene, kfile: KeypointsFile, camera) -> None:
    """The person's keypoints as vertices on a plane in front of the camera, so they sit on the photo."""
    from .mesh.frames import camera_to_world

    person = kfile.people[scene.resihmr.person_index]
    points = [p for p in person.body25 if p[2] > 0] + [p for p in person.residual if p[2] > 0]
    pixels = np.array([p[:2] for p in points]).reshape(-1, 2)
    rays = np.c_[(pixels - camera.principal_point) / camera.focal_length, np.ones(len(pixels))] * DISPLAY_DEPTH
    mesh = bpy.data.meshes.new(KEYPOINTS_OBJECT)
    mesh.from_pydata(camera_to_world(rays).tolist(), [], [])
    _remove_object(KEYPOINTS_OBJECT, bpy.data.meshes)
    obj = bpy.data.objects.new(KEYPOINTS_OBJECT, mesh)
    obj.display_type = "WIRE"
    obj.show_in_front = True
    obj.hide_render = True
    scene.collection.objects.link(obj)


def scene_request(scene):
    """(keypoints file with the panel's residual limbs for the chosen person, person index, settings), all
    validated: the residual limbs edited in the panel override the file's."""
    from .core.pipeline import camera_for, with_person

    size = _photo_size(scene)
    kfile = read_scene_keypoints(scene, size)
    state = scene.resihmr
    if state.person_index >= len(kfile.people):
        raise UserError(f"person {state.person_index} does not exist in {state.keypoints_path} "
                        f"(it holds {len(kfile.people)})")
    ensure_residual_entries(state)
    enabled = [e.kind for e in state.residuals if e.enabled]
    conflict = limb_conflict(enabled)
    if conflict:
        raise UserError(f"two residual kinds on the {limb_label(conflict[0])}: {conflict[0]} and {conflict[1]}; "
                        "keep one")
    person = kfile.people[state.person_index]
    residual = np.zeros((8, 3))
    for k, entry in enumerate(state.residuals):
        if entry.enabled:
            residual[k] = [entry.endpoint[0], entry.endpoint[1], max(entry.confidence, 1e-3)]
            # the panel holds float32 copies: where they are the file's values, use the file's exact numbers
            if np.array_equal(residual[k].astype(np.float32), person.residual[k].astype(np.float32)):
                residual[k] = person.residual[k]
    person.residual = residual
    settings = settings_from_preferences(image_size=size)
    camera_for(kfile, settings)  # refuse an unknown image size now, not in the worker
    return with_person(kfile, state.person_index, person), state.person_index, settings


def scene_mask(scene, kfile: KeypointsFile):
    """The photo's person mask for the fit (core/silhouette.py), or None: off when "Use photo silhouette" is
    unticked; else the Mask file, else `<stem>_mask.png` beside the keypoints file (Detect keypoints writes
    MediaPipe's segmentation there) or beside the photo. A mask file that cannot be used is a UserError naming it."""
    from .core.silhouette import MaskError, mask_beside, read_mask

    state = scene.resihmr
    if not state.use_silhouette:
        return None
    photo = bpy.path.abspath(state.photo_path) if state.photo_path else None
    named = bpy.path.abspath(state.mask_path) if state.mask_path else None
    path = named or mask_beside(kfile.path) or (mask_beside(str(Path(photo).with_suffix(".json"))) if photo else None)
    if not path:
        return None
    try:
        mask = read_mask(path, kfile.image_width, kfile.image_height)
    except MaskError as exc:
        raise UserError(str(exc)) from None
    if Path(path).name.endswith(DETECTED_MASK_SUFFIX):
        mask.source = "mediapipe"
    return mask


def validate_residual_toggle(state, index: int) -> None:
    """Refuse enabling a second kind on a limb that already has one."""
    entry = state.residuals[index]
    others = [o.kind for o in state.residuals if o != entry and o.enabled]
    conflict = limb_conflict([*others, entry.kind])
    if conflict:
        raise UserError(f"the {limb_label(entry.kind)} already has {conflict[0]}; disable it first")


# ---------------------------------------------------------------------------------------------------------------
# Avatar


def avatars(scene):
    return [o for o in scene.objects if o.type == "MESH" and o.get("resihmr_avatar")]


def apply(reconstruction, scene, person: int = 0, name: str = "ResiHMR"):
    """Build person `person` of the reconstruction as a live rigged avatar in `scene`, cut and seal its accepted
    residual limbs, mark them, and store its result document on the object; returns (armature, mesh object).

    A previous avatar called `name` is replaced only when the new one is complete: if building or cutting
    fails, the scene is as it was.
    """
    from .core.pipeline import PersonFailure
    from .core.result_json import cut_list
    from .mesh.build import build_avatar, remove_avatar
    from .mesh.cut import recut

    result = reconstruction.people[person]
    if isinstance(result, PersonFailure):
        raise UserError(f"cannot fit this person: {result.reason}")
    document = reconstruction.single_person_document(person)
    arm, obj = build_avatar(reconstruction.model, result.params(), name=f"{name}.building",
                            collection=scene.collection)
    try:
        # the same cuts as the core's meshes: the document keeps the core's (float64) measurements
        recut(obj, cut_list(document["people"][0]), measure=False)
        _store_document(obj, document)
        obj.resihmr.fit_error_px = result.fit.fit_error_px
        obj.resihmr.model_sha256 = reconstruction.model_info.get("sha256") or ""
        silhouette = document["people"][0].get("silhouette", {})
        obj.resihmr.silhouette_source = silhouette.get("source", "") if silhouette.get("used") else ""
    except BaseException:
        remove_avatar(obj)
        raise
    for old in [o for o in avatars(scene) if o.name == name]:
        remove_avatar(old)
    obj.name, arm.name = name, f"{name}_rig"
    obj.data.name, arm.data.name = f"{name}_body", f"{name}_rig"
    uncut = obj.get("resihmr_uncut")
    if uncut is not None:
        uncut.name = f"{name}_body_uncut"
    return arm, obj


def avatar_document(obj) -> dict:
    if not obj.resihmr.result_json:
        raise UserError(f"{obj.name}: no fit stored on this avatar (run Fit)")
    return json.loads(obj.resihmr.result_json)


def export_avatar_file(obj, path, fmt: str | None = None, **options):
    """Export an avatar (GLB/FBX, mesh/export.py) in the chosen pose convention, its photo pose from its result."""
    from .core.result_json import photo_params
    from .mesh.export import export_avatar

    person = avatar_document(obj)["people"][0]
    return export_avatar(obj.parent, obj, path, fmt=fmt, photo_params=photo_params(person), **options)


def load_motion(obj, path: str, first: int = 0, last: int = -1) -> int:
    """Play frames first..last (-1: to the end) of an AMASS-layout motion on the avatar as a new action from frame
    0; the scene's frame range follows it (the timeline previews it). Checked before anything changes."""
    from .mesh.animation import apply_motion, read_motion

    poses, trans, rate = read_motion(path)
    end = len(poses) - 1 if last < 0 else last
    if not 0 <= first <= end < len(poses):
        raise UserError(f"{path}: frames {first}..{last} not in the file's 0..{len(poses) - 1}")
    apply_motion(obj.parent, poses[first:end + 1], trans[first:end + 1], rate)
    scene = bpy.context.scene
    scene.frame_set(0)
    return end - first + 1


def _store_document(obj, document: dict) -> None:
    """The document on the object, and one λ slider per residual limb mirroring it (without re-cutting)."""
    obj.resihmr.result_json = json.dumps(document, allow_nan=False)
    residuals = document["people"][0].get("residuals", [])
    with syncing():
        # in place when the limbs are the same: this runs inside a slider's own update callback
        if [limb.kind for limb in obj.resihmr.limbs] != [r["kind"] for r in residuals]:
            obj.resihmr.limbs.clear()
            for entry in residuals:
                obj.resihmr.limbs.add().kind = entry["kind"]
        for limb, entry in zip(obj.resihmr.limbs, residuals):
            limb.lam, limb.accepted, limb.reproj_error_px = entry["lambda"], entry["accepted"], entry["reproj_error_px"]
            limb.by_hand = entry.get("lambda_source") == "hand"
            limb.lam_interval = entry.get("lambda_interval", (-1.0, -1.0))
            tilted = sorted(entry.get("lambda_hypotheses", []), key=lambda h: h["sin_tilt"])
            limb.lam_hypotheses = [h["lambda"] for h in tilted] if len(tilted) == 2 else (-1.0, -1.0)
            limb.length_m, limb.volume_l = entry["residual_length_m"], entry.get("stump_volume_l", -1.0)
            limb.circumferences_m = (list(entry.get("circumferences_m", [])) + [0.0, 0.0, 0.0])[:3]


def set_limb_lambda(obj, kind: str, lam: float) -> dict:
    """The live λ: re-cut the avatar with this λ for `kind` (the previous cut undone, not stacked), update its
    document (λ marked as set by hand, endpoint, length and measurements follow). All or nothing."""
    from .core.result_json import cut_list, set_residual_lambda
    from .mesh.cut import recut

    document = avatar_document(obj)
    threshold = settings_from_preferences().rafo.accept_threshold_px
    entry = set_residual_lambda(document, 0, kind, lam, accept_threshold_px=threshold)
    measurements = recut(obj, cut_list(document["people"][0]))  # raises before changing anything
    if kind in measurements:
        entry.update(measurements[kind].to_json())
    _store_document(obj, document)
    return entry


def set_limb_endpoint(obj, kind: str, pixel, context=None) -> dict:
    """The endpoint tool on an avatar: RAFO for this limb again with the new 2D endpoint (from the stored fit:
    the initial anchor, the upstream joint, the camera, the fit error), the pose follows the new anchor, the
    stump is re-cut (not stacked). All or nothing. The entry is marked `"endpoint_source": "hand"`."""
    from .core.pipeline import pose_feedback
    from .core.rafo import LimbProblem, solve
    from .core.residuals import residual_by_name
    from .core.result_json import camera_of, cut_list, fit_params, residual_json, residual_result
    from .mesh.build import apply_pose
    from .mesh.cut import recut
    from .preferences import resolve_body_model

    document = avatar_document(obj)
    person = document["people"][0]
    index = next((i for i, r in enumerate(person["residuals"]) if r["kind"] == kind), None)
    if index is None:
        raise UserError(f"{obj.name} has no {kind.replace('_', ' ')} residual limb: enable it and run Fit")
    model = resolve_body_model(context)
    if (model.sha256 or "") != obj.resihmr.model_sha256:
        raise UserError(f"{obj.name} was fitted with another body model than the one in the preferences; "
                        "run Fit again")
    settings = settings_from_preferences(context)
    camera, entry = camera_of(document), person["residuals"][index]
    problem = LimbProblem(residual_by_name(kind), np.array(entry["anchor_init_3d"]), np.array(entry["upstream_3d"]),
                          np.asarray(pixel, dtype=np.float64), camera, float(person["fit_error_px"]))
    solved = solve([problem], settings.rafo)[0]
    new_entry = dict(residual_json(solved), endpoint_source="hand")
    residuals = [solved if i == index else residual_result(r) for i, r in enumerate(person["residuals"])]
    params = fit_params(person)
    body_pose, joints, body25_2d = pose_feedback(model, params, residuals, camera)
    person["residuals"][index] = new_entry
    measurements = recut(obj, cut_list(person))  # raises before changing anything
    apply_pose(obj.parent, dict(params, body_pose=body_pose))
    for e in person["residuals"]:
        if e["kind"] in measurements:
            e.update(measurements[e["kind"]].to_json())
    person.update(body_pose=np.round(body_pose, 6).tolist(), joints_3d=np.round(joints, 6).tolist(),
                  joints_2d_body25=np.round(body25_2d, 6).tolist())
    _store_document(obj, document)
    return new_entry


def restore_avatar_state(obj, document: dict) -> None:
    """Put an avatar back to a stored document (its cuts, pose and result): the endpoint tool's Esc."""
    from .core.result_json import cut_list, photo_params
    from .mesh.build import apply_pose
    from .mesh.cut import recut

    person = document["people"][0]
    recut(obj, cut_list(person))
    apply_pose(obj.parent, photo_params(person))
    _store_document(obj, document)


def cut_avatar(obj) -> list[str]:
    """Cut and seal the avatar as its result says (accepted limbs and λ set by hand); all limbs or none."""
    from .core.result_json import cut_list
    from .mesh.cut import recut

    if obj is None or not obj.get("resihmr_avatar") or obj.type != "MESH":
        raise UserError("select an avatar built by ResiHMR (run Fit first)")
    document = avatar_document(obj)
    cuts = cut_list(document["people"][0])
    if not cuts:
        raise UserError(f"{obj.name}: nothing to cut (no accepted residual limb)")
    measurements = recut(obj, cuts)
    for entry in document["people"][0]["residuals"]:
        if entry["kind"] in measurements:
            entry.update(measurements[entry["kind"]].to_json())
    _store_document(obj, document)
    return [k for k, _ in cuts]


def restore_limbs(obj) -> None:
    """The uncut body again (the result and its λ are kept; Cut and seal brings the stumps back)."""
    from .mesh.cut import recut

    recut(obj, [])


def measurements_text(obj, csv: bool = False) -> str:
    document = avatar_document(obj)
    rows = [("kind", "lambda", "lambda_source", "accepted", "residual_length_m", "stump_volume_l",
             "circumferences_m")]
    for r in document["people"][0].get("residuals", []):
        rows.append((r["kind"], f"{r['lambda']:.4f}", r.get("lambda_source", "rafo"), str(r["accepted"]),
                     f"{r.get('residual_length_m', 0):.4f}", f"{r.get('stump_volume_l', float('nan')):.4f}",
                     " ".join(f"{c:.4f}" for c in r.get("circumferences_m", []))))
    sep = "," if csv else "\t"
    return "\n".join(sep.join(row) for row in rows)


def set_residual_highlight(shown: bool) -> None:
    """The red residual-limb material shown in red, or in skin colour (the mask attribute is kept)."""
    from .core.colours import RESIDUAL_RGBA, SKIN_RGBA
    from .mesh.cut import RED_MATERIAL

    material = bpy.data.materials.get(RED_MATERIAL)
    if material is not None:
        material.diffuse_color = RESIDUAL_RGBA if shown else SKIN_RGBA


# ---------------------------------------------------------------------------------------------------------------
# Detection (optional extra)


def detect_photo(scene, out_folder: str):
    """Detect keypoints on the scene's photo, write them as a keypoints file in `out_folder` (never beside the
    photo, so no user file is overwritten), load it, and mark the limb-loss suggestions (not enabled)."""
    from pathlib import Path

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
    found.write_mask(target.parent / (Path(photo).stem + DETECTED_MASK_SUFFIX))  # the photo silhouette's mask
    load_keypoints(scene, str(target))
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
