"""THE core entry: a keypoints file + settings -> a Reconstruction (fit, RAFO, pose feedback, cut and sealed
meshes, measurements, the result document). The command line, the demo, the batch executors and the Blender
sidebar all call `run` (one file) or `run_many` (many files, people fitted in shared batches); the Blender side
then only turns a Reconstruction into live objects (workflow.apply).

No bpy here.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import plausibility
from .avatar_mesh import AvatarMesh, build_mesh
from .body_model import BodyModel
from .camera import Camera
from .fit import FitConfig, FitError, PersonFit, fit_people
from .keypoints import KeypointsFile, Person
from .rafo import RafoConfig, ResidualError, ResidualResult, limb_problems, pose_following_anchors, solve
from .result_json import person_json, result_document
from .settings import Settings
from .silhouette import (
    MaskError,
    PersonMask,
    SilhouetteConfig,
    SilhouetteReport,
    limb_cue,
    limb_radius_m,
    refine_fits,
    tilt_weight,
)

# (stage, fraction of the whole run done) — stages: "fit", "rafo", "mesh", "done". A callback may raise
# Cancelled to stop the run between stages.
Progress = Callable[[str, float], None]


class Cancelled(Exception):
    """The user stopped the run; nothing was produced."""


@dataclass
class PersonResult:
    """Everything known about one reconstructed person (before any mesh editing)."""

    fit: PersonFit
    residuals: list[ResidualResult]
    body_pose: np.ndarray  # after the anchors drove the pose
    joints_3d: np.ndarray  # (55, 3) final, camera frame
    body25_2d: np.ndarray  # (25, 2) final
    measurements: dict[str, dict] = field(default_factory=dict)  # per residual kind, from measure.py
    timings_s: dict = field(default_factory=dict)
    plausibility: dict = field(default_factory=dict)  # plausibility.check: flags, never a refusal
    silhouette: SilhouetteReport | None = None  # what the photo's mask did (None: no mask used)

    def params(self) -> dict[str, np.ndarray]:
        return dict(self.fit.params(), body_pose=self.body_pose)


@dataclass
class PersonFailure:
    reason: str


@dataclass
class Reconstruction:
    """One keypoints file's people, reconstructed; `document()` is its result.json."""

    keypoints: KeypointsFile
    camera: Camera
    people: list[PersonResult | PersonFailure]
    meshes: list[AvatarMesh | None]
    model_info: dict
    settings: Settings
    person_indices: list[int]  # which people of the file these are (all of them, or the one the sidebar fits)
    model: BodyModel = field(repr=False)  # what Blender builds the avatar from
    mask: PersonMask | None = field(default=None, repr=False)  # the photo's person mask the fit used, if any

    @property
    def source(self) -> str | None:
        return str(Path(self.keypoints.path).resolve()) if self.keypoints.path else None

    def _person(self, k: int) -> dict:
        """People's entries say which person of the input file they are (`--person N` fits only one)."""
        return {"index": self.person_indices[k], **person_json(self.people[k])}

    def document(self) -> dict:
        return result_document(self.model_info, self.camera, [self._person(k) for k in range(len(self.people))],
                               self.source, self.settings.rafo.to_json())

    def single_person_document(self, index: int) -> dict:
        """The document of one of these people alone (what an avatar in Blender carries)."""
        return result_document(self.model_info, self.camera, [self._person(index)], self.source,
                               self.settings.rafo.to_json())

    def failures(self) -> list[tuple[int, str]]:
        return [(i, p.reason) for i, p in zip(self.person_indices, self.people) if isinstance(p, PersonFailure)]


def camera_for(kfile: KeypointsFile, settings: Settings | None = None) -> Camera:
    """THE camera decider: image size from the settings (a loaded photo, --image-size) else the file; focal
    length from the settings (--focal), else the file, else the documented guess (camera.guess_focal_length)."""
    settings = settings or Settings()
    width, height = settings.image_size or (kfile.image_width, kfile.image_height)
    if not width or not height:
        raise FitError(f"{kfile.path}: image size unknown: give 'image': {{'width', 'height'}} in the file, "
                       "load the photo, or pass --image-size WIDTHxHEIGHT")
    return Camera.for_image(int(width), int(height), settings.focal_length_px or kfile.focal_length_px)


def model_info(model: BodyModel) -> dict:
    return {"path": model.source_path, "sha256": model.sha256, "embedded_default": model.is_default}


def reconstruct(model: BodyModel, people: list[Person], cameras: list[Camera], fit_config: FitConfig | None = None,
                rafo_config: RafoConfig | None = None, progress: Progress | None = None,
                masks: list[PersonMask | None] | None = None,
                silhouette: SilhouetteConfig | None = None) -> list[PersonResult | PersonFailure]:
    """Fit every person in one batch, (with a mask: the silhouette stage), RAFO on every residual limb (each limb
    its own problem, with the outline's tilt cue when the mask gives one), pose feedback. `masks`: one per
    person or None (the same photo's mask for all its people)."""
    fit_config, rafo_config = fit_config or FitConfig(), rafo_config or RafoConfig()
    silhouette = silhouette or SilhouetteConfig()
    masks = list(masks) if masks is not None and silhouette.enabled else [None] * len(people)
    if len(masks) != len(people):
        raise ValueError(f"{len(masks)} masks for {len(people)} people")
    report = progress or (lambda stage, fraction: None)
    report("fit", 0.0)
    fits = fit_people(model, people, cameras, fit_config)
    if any(m is not None for m in masks):
        report("silhouette", 0.4)
        fits = refine_fits(model, people, fits, masks, silhouette, fit_config)
    report("rafo", 0.6)
    out: list[PersonResult | PersonFailure | None] = [None] * len(people)
    sil_reports: dict[int, SilhouetteReport] = {}
    problems, owner = [], []
    for i, (person, fit) in enumerate(zip(people, fits)):
        if isinstance(fit, FitError):
            out[i] = PersonFailure(str(fit))
            continue
        try:
            mine = limb_problems(person, fit.joints_3d, fit.camera, fit.fit_error_px, rafo_config)
        except ResidualError as exc:
            out[i] = PersonFailure(str(exc))
            continue
        if masks[i] is not None:
            sil_reports[i] = SilhouetteReport(masks[i].source, silhouette.fit_body)
            if silhouette.limb_cues:
                for p in mine:
                    sil_reports[i].cues[p.kind.name] = _apply_cue(model, fit, p, masks[i], silhouette)
        problems += mine
        owner += [i] * len(mine)
    solved = solve(problems, rafo_config)
    per_person: dict[int, list[ResidualResult]] = {}
    for i, res in zip(owner, solved):
        per_person.setdefault(i, []).append(res)
    for i, fit in enumerate(fits):
        if out[i] is not None:
            continue
        t0 = time.perf_counter()
        residuals = per_person.get(i, [])
        body_pose, joints, body25_2d = pose_feedback(model, fit.params(), residuals, fit.camera)
        timings = dict(fit.timings_s, rafo=sum(r.timings_s["rafo"] for r in residuals),
                       pose_feedback=time.perf_counter() - t0)
        out[i] = PersonResult(fit=fit, residuals=residuals, body_pose=body_pose, joints_3d=joints,
                              body25_2d=body25_2d, timings_s=timings,
                              plausibility=plausibility.check(model, fit.betas, joints, fit.fit_error_px,
                                                              fit.reference_length_px),
                              silhouette=sil_reports.get(i))
    return out  # type: ignore[return-value]


def _apply_cue(model: BodyModel, fit, problem, mask: PersonMask, config: SilhouetteConfig):
    """The outline's word on one residual limb, written into its RAFO problem: the tilt term, or a moved target."""
    cam = problem.camera
    mid = 0.5 * (problem.anchor_init + problem.upstream)
    radius_px = limb_radius_m(model, fit.betas, problem.kind.name) * cam.focal_length / max(float(mid[2]), 1e-3)
    cue = limb_cue(mask, cam, problem.kind.name, cam.project_np(problem.upstream),
                   cam.project_np(problem.anchor_init), problem.target, radius_px, config)
    if cue.target_2d is not None:
        problem.target = cue.target_2d
    elif cue.sin_tilt is not None:
        problem.sin_tilt, problem.radius_px, problem.tilt_weight = cue.sin_tilt, cue.radius_px, tilt_weight(cue, config)
    return cue


def pose_feedback(model: BodyModel, fit_params: dict, residuals: list[ResidualResult], camera: Camera):
    """The optimised anchors drive the pose (paper §3.3): (body_pose, joints_3d (55, 3), BODY_25 pixels (25, 2))
    from the initial fit's parameters and the limbs' RAFO results (only accepted limbs turn their segment)."""
    body_pose = pose_following_anchors(model, fit_params, residuals)  # no residual limb: the fit's pose
    as_tensor = {k: torch.tensor(np.asarray(v, dtype=np.float64), dtype=model.dtype)[None]
                 for k, v in (("betas", fit_params["betas"]), ("global_orient", fit_params["global_orient"]),
                              ("body_pose", body_pose), ("transl", fit_params["transl"]))}
    with torch.no_grad():
        final = model.joints_only(**as_tensor)
    return body_pose, final.joints[0].numpy().astype(np.float64), camera.project_np(final.body25[0].numpy())


def cuts_of(result: PersonResult) -> list[tuple[str, float]]:
    """Where the avatar is cut: the residual limbs RAFO accepted (result_json.cut_list reads the same rule
    back from a document, where a λ set by hand also counts)."""
    return [(r.kind, r.lam) for r in result.residuals if r.accepted]


def build_meshes(model: BodyModel, results: list, pose: bool = True) -> list[AvatarMesh | None]:
    """Cut and seal every accepted residual limb (core geometry) and store the measurements in each result;
    a limb that cannot be cut is reported in its measurements, never stops the others."""
    from .stump import StumpError

    meshes: list[AvatarMesh | None] = []
    for result in results:
        if isinstance(result, PersonFailure):
            meshes.append(None)
            continue
        t0 = time.perf_counter()
        cuts = cuts_of(result)
        try:
            mesh = build_mesh(model, result.params(), cuts, pose=pose)
        except (StumpError, ValueError) as exc:
            for kind, _ in cuts:
                result.measurements[kind] = {"measurement_error": str(exc)}
            meshes.append(None)
            continue
        for kind, m in mesh.measurements.items():
            result.measurements[kind] = m.to_json()
        result.timings_s["reconstruct"] = time.perf_counter() - t0
        meshes.append(mesh)
    return meshes


def run(model: BodyModel, kfile: KeypointsFile, settings: Settings | None = None, people: list[int] | None = None,
        progress: Progress | None = None, mask: PersonMask | None = None) -> Reconstruction:
    """Reconstruct the people of one keypoints file (all, or those listed in `people`); `mask` is the photo's
    person mask (silhouette.PersonMask), used when settings.silhouette.enabled."""
    settings = settings or Settings()
    mask = mask if settings.silhouette.enabled else None
    indices = list(range(len(kfile.people))) if people is None else list(people)
    for i in indices:
        if not 0 <= i < len(kfile.people):
            raise FitError(f"{kfile.path}: person {i} does not exist (the file holds {len(kfile.people)})")
    camera = camera_for(kfile, settings)
    if mask is not None:
        mask.scale_for(camera)  # a mask of another picture's shape is refused before any fitting
    results = reconstruct(model, [kfile.people[i] for i in indices], [camera] * len(indices), settings.fit,
                          settings.rafo, progress, [mask] * len(indices), settings.silhouette)
    return _finish(model, kfile, camera, results, settings, indices, progress, mask)


def run_many(model: BodyModel, kfiles: list[KeypointsFile], settings: Settings | None = None,
             batch_size: int = 64, progress: Progress | None = None,
             masks: list[PersonMask | None] | None = None) -> list[Reconstruction | FitError | MaskError]:
    """`run` for many files, their people fitted together in batches of `batch_size` (each person and each
    residual limb is still its own problem). A file whose camera cannot be decided gives its FitError, one whose
    mask is not the picture's shape its MaskError; `masks` holds one photo mask (or None) per file."""
    settings = settings or Settings()
    masks = list(masks) if masks is not None and settings.silhouette.enabled else [None] * len(kfiles)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    cameras: list[Camera | FitError | MaskError] = []
    for kfile, mask in zip(kfiles, masks):
        try:
            camera = camera_for(kfile, settings)
            if mask is not None:
                mask.scale_for(camera)  # a mask of another picture's shape is this file's error, not the batch's
            cameras.append(camera)
        except (FitError, MaskError) as exc:
            cameras.append(exc)
    flat = [(f, p) for f, kfile in enumerate(kfiles) if isinstance(cameras[f], Camera)
            for p in range(len(kfile.people))]
    results: dict[tuple[int, int], PersonResult | PersonFailure] = {}
    for start in range(0, len(flat), batch_size):
        chunk = flat[start:start + batch_size]
        done = reconstruct(model, [kfiles[f].people[p] for f, p in chunk], [cameras[f] for f, _ in chunk],
                           settings.fit, settings.rafo, None, [masks[f] for f, _ in chunk], settings.silhouette)
        results.update(zip(chunk, done))
        if progress is not None:
            progress("fit", min(start + batch_size, len(flat)) / max(len(flat), 1))
    out: list[Reconstruction | FitError] = []
    for f, kfile in enumerate(kfiles):
        camera = cameras[f]
        if not isinstance(camera, Camera):
            out.append(camera)
            continue
        indices = list(range(len(kfile.people)))
        out.append(_finish(model, kfile, camera, [results[(f, p)] for p in indices], settings, indices, None,
                           masks[f]))
    return out


def _finish(model, kfile, camera, results, settings: Settings, indices, progress, mask=None) -> Reconstruction:
    if progress is not None:
        progress("mesh", 0.8)
    meshes = build_meshes(model, results, pose=settings.pose_meshes)
    if progress is not None:
        progress("done", 1.0)
    return Reconstruction(keypoints=kfile, camera=camera, people=results, meshes=meshes,
                          model_info=model_info(model), settings=settings, person_indices=indices, model=model,
                          mask=mask)


def with_person(kfile: KeypointsFile, index: int, person: Person) -> KeypointsFile:
    """A copy of the file whose person `index` is replaced (the sidebar's residual limbs override the file's)."""
    people = list(kfile.people)
    people[index] = person
    return replace(kfile, people=people)
