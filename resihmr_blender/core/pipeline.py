"""Fit -> RAFO -> pose feedback for the people of one or many keypoint files, and the result.json writer.

No bpy here: the command line with `--formats json`, notebooks and the Blender operators all call this.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .atomic import write_text_atomic
from .body_model import BodyModel
from .camera import Camera
from .fit import FitConfig, FitError, PersonFit, fit_people
from .keypoints import KeypointsFile, Person
from .rafo import RafoConfig, ResidualError, ResidualResult, limb_problems, pose_following_anchors, solve

RESULT_FORMAT = "resihmr-result/1"


@dataclass
class PersonResult:
    """Everything known about one reconstructed person (before any mesh editing)."""

    fit: PersonFit
    residuals: list[ResidualResult]
    body_pose: np.ndarray  # after the anchors drove the pose
    joints_3d: np.ndarray  # (55, 3) final, camera frame
    body25_2d: np.ndarray  # (25, 2) final
    measurements: dict[str, dict] = field(default_factory=dict)  # per residual kind, filled by measure.py
    timings_s: dict = field(default_factory=dict)

    def params(self) -> dict[str, np.ndarray]:
        return dict(self.fit.params(), body_pose=self.body_pose)


@dataclass
class PersonFailure:
    reason: str


def camera_for(kfile: KeypointsFile, focal_length: float | None = None,
               image_size: tuple[int, int] | None = None) -> Camera:
    """Camera from (in order) the arguments, the keypoints file, a documented guess."""
    width, height = image_size or (kfile.image_width, kfile.image_height)
    if not width or not height:
        raise FitError(f"{kfile.path}: image size unknown: give 'image': {{'width', 'height'}} in the file "
                       "or --image-size WIDTHxHEIGHT")
    return Camera.for_image(int(width), int(height), focal_length or kfile.focal_length_px)


def reconstruct(model: BodyModel, people: list[Person], cameras: list[Camera], fit_config: FitConfig | None = None,
                rafo_config: RafoConfig | None = None) -> list[PersonResult | PersonFailure]:
    """Fit every person in one batch, then RAFO over every residual limb of every person in one batch."""
    fit_config, rafo_config = fit_config or FitConfig(), rafo_config or RafoConfig()
    fits = fit_people(model, people, cameras, fit_config)
    out: list[PersonResult | PersonFailure | None] = [None] * len(people)
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
        body_pose = pose_following_anchors(model, fit.params(), residuals) if residuals else fit.body_pose
        with torch.no_grad():
            final = model.joints_only(
                betas=torch.tensor(fit.betas, dtype=model.dtype)[None],
                global_orient=torch.tensor(fit.global_orient, dtype=model.dtype)[None],
                body_pose=torch.tensor(body_pose, dtype=model.dtype)[None],
                transl=torch.tensor(fit.transl, dtype=model.dtype)[None])
        joints = final.joints[0].numpy().astype(np.float64)
        body25_2d = fit.camera.project_np(final.body25[0].numpy())
        timings = dict(fit.timings_s, rafo=sum(r.timings_s["rafo"] for r in residuals),
                       pose_feedback=time.perf_counter() - t0)
        out[i] = PersonResult(fit=fit, residuals=residuals, body_pose=body_pose, joints_3d=joints,
                              body25_2d=body25_2d, timings_s=timings)
    return out  # type: ignore[return-value]


def accepted_cuts(result: PersonResult) -> list[tuple[str, float]]:
    return [(r.kind, r.lam) for r in result.residuals if r.accepted]


def measure_people(model: BodyModel, results: list, pose: bool = False) -> list:
    """Cut and seal every accepted residual limb (core geometry, no Blender) and store the measurements;
    returns each person's AvatarMesh (None for failures)."""
    from .avatar_mesh import build_mesh
    from .stump import StumpError

    meshes = []
    for result in results:
        if isinstance(result, PersonFailure):
            meshes.append(None)
            continue
        t0 = time.perf_counter()
        try:
            mesh = build_mesh(model, result.params(), accepted_cuts(result), pose=pose)
        except StumpError as exc:
            for kind, _ in accepted_cuts(result):
                result.measurements[kind] = {"measurement_error": str(exc)}
            meshes.append(None)
            continue
        for kind, m in mesh.measurements.items():
            result.measurements[kind] = m.to_json()
        result.timings_s["reconstruct"] = time.perf_counter() - t0
        meshes.append(mesh)
    return meshes


# ---------------------------------------------------------------------------------------------------------------
# result.json


def _finite(value) -> list:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("refusing to write a non-finite number to result.json")
    return np.round(arr, 6).tolist()


def person_json(result: PersonResult | PersonFailure) -> dict:
    if isinstance(result, PersonFailure):
        return {"error": result.reason}
    fit = result.fit
    residuals = []
    for r in result.residuals:
        entry = {"kind": r.kind, "lambda": round(r.lam, 6), "anchor_3d": _finite(r.anchor_3d),
                 "anchor_init_3d": _finite(r.anchor_init_3d), "upstream_3d": _finite(r.upstream_3d),
                 "endpoint_3d": _finite(r.endpoint_3d), "endpoint_2d": _finite(r.endpoint_2d),
                 "target_2d": _finite(r.target_2d), "reproj_error_px": round(r.reproj_error_px, 4),
                 "accepted": r.accepted, "residual_length_m": round(r.residual_length_m, 6)}
        entry.update(result.measurements.get(r.kind, {}))
        residuals.append(entry)
    return {"betas": _finite(fit.betas), "expression": _finite(fit.expression),
            "global_orient": _finite(fit.global_orient), "body_pose": _finite(result.body_pose),
            "body_pose_before_rafo": _finite(fit.body_pose), "transl": _finite(fit.transl),
            "joints_2d_body25": _finite(result.body25_2d), "joints_3d": _finite(result.joints_3d),
            "fit_error_px": round(fit.fit_error_px, 4), "keypoints_used": [bool(u) for u in fit.used],
            "residuals": residuals, "timings_s": {k: round(v, 6) for k, v in result.timings_s.items()}}


def result_document(model: BodyModel, camera: Camera, results: list, source: str | None = None) -> dict:
    return {"format": RESULT_FORMAT, "source": source,
            "body_model": {"path": model.source_path, "sha256": model.sha256, "embedded_default": model.is_default},
            "image": {"width": camera.width, "height": camera.height}, "camera": camera.to_json(),
            "coordinates": "camera frame, OpenCV convention (x right, y down, z forward), metres",
            "people": [person_json(r) for r in results]}


def write_json_atomic(path: str | os.PathLike, document: dict) -> None:
    """Temp file in the same folder + rename: readers never see half a file. NaN/inf are refused."""
    write_text_atomic(path, json.dumps(document, indent=1, allow_nan=False) + "\n")


def is_finite_document(document) -> bool:
    """True when no number anywhere in the document is NaN or infinite."""
    if isinstance(document, dict):
        return all(is_finite_document(v) for v in document.values())
    if isinstance(document, list):
        return all(is_finite_document(v) for v in document)
    if isinstance(document, float):
        return math.isfinite(document)
    return True
