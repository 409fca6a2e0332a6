"""The result document `resihmr-result/1` (DESIGN §3.5): built from a reconstruction, written atomically, and
edited in place when a user sets a residual limb's λ by hand (the live λ in the sidebar).

The command line's result.json and the sidebar's "Export result JSON" are both this document.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from .atomic import write_text_atomic
from .camera import Camera

RESULT_FORMAT = "resihmr-result/1"
COORDINATES = "camera frame, OpenCV convention (x right, y down, z forward), metres"
LAMBDA_BY_RAFO, LAMBDA_BY_HAND = "rafo", "hand"


def _finite(value) -> list:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("refusing to write a non-finite number to result.json")
    return np.round(arr, 6).tolist()


def residual_json(r, measurements: dict | None = None) -> dict:
    """One residual limb's entry (r: rafo.ResidualResult)."""
    entry = {"kind": r.kind, "lambda": round(r.lam, 6), "lambda_source": LAMBDA_BY_RAFO,
             "anchor_3d": _finite(r.anchor_3d), "anchor_init_3d": _finite(r.anchor_init_3d),
             "upstream_3d": _finite(r.upstream_3d), "endpoint_3d": _finite(r.endpoint_3d),
             "endpoint_2d": _finite(r.endpoint_2d), "target_2d": _finite(r.target_2d),
             "reproj_error_px": round(r.reproj_error_px, 4), "accepted": r.accepted,
             "residual_length_m": round(r.residual_length_m, 6)}
    if r.lam_interval is not None:  # RAFO's evidence (rafo.lambda_intervals); a λ set by hand keeps it
        entry["lambda_interval"] = _finite(r.lam_interval)
    if r.lam_hypotheses:  # λ were the segment tilted low or steep (rafo.RafoConfig.tilt_hypotheses)
        entry["lambda_hypotheses"] = [{"sin_tilt": float(sin), "lambda": round(float(lam), 6)}
                                      for sin, lam in r.lam_hypotheses.items()]
    entry.update(measurements or {})
    return entry


def residual_result(entry: dict):
    """A document's residual entry back as rafo.ResidualResult (what pose feedback reads)."""
    from .rafo import ResidualResult

    arr = {k: np.asarray(entry[k], dtype=np.float64) for k in ("anchor_3d", "anchor_init_3d", "upstream_3d",
                                                                "endpoint_3d", "endpoint_2d", "target_2d")}
    return ResidualResult(kind=entry["kind"], lam=float(entry["lambda"]),
                          reproj_error_px=float(entry["reproj_error_px"]), accepted=bool(entry["accepted"]),
                          alpha=float("nan"), mu=float("nan"), **arr,
                          lam_interval=tuple(entry["lambda_interval"]) if "lambda_interval" in entry else None,
                          lam_hypotheses={f"{h['sin_tilt']:g}": float(h["lambda"])
                                          for h in entry.get("lambda_hypotheses", [])})


def fit_params(person: dict) -> dict[str, np.ndarray]:
    """The initial fit's parameters of a person's entry (before RAFO turned the residual segments)."""
    return {"betas": np.asarray(person["betas"]), "expression": np.asarray(person["expression"]),
            "global_orient": np.asarray(person["global_orient"]),
            "body_pose": np.asarray(person["body_pose_before_rafo"]), "transl": np.asarray(person["transl"])}


def photo_params(person: dict) -> dict[str, np.ndarray]:
    """The parameters of the pose a person's avatar shows for the photo (after RAFO turned the residual segments)."""
    return dict(fit_params(person), body_pose=np.asarray(person["body_pose"]))


def person_json(result) -> dict:
    """One person's entry (result: pipeline.PersonResult or PersonFailure)."""
    if not hasattr(result, "fit"):
        return {"error": result.reason}
    fit = result.fit
    return {"betas": _finite(fit.betas), "expression": _finite(fit.expression),
            "global_orient": _finite(fit.global_orient), "body_pose": _finite(result.body_pose),
            "body_pose_before_rafo": _finite(fit.body_pose), "transl": _finite(fit.transl),
            "joints_2d_body25": _finite(result.body25_2d), "joints_3d": _finite(result.joints_3d),
            "fit_error_px": round(fit.fit_error_px, 4), "keypoints_used": [bool(u) for u in fit.used],
            # BODY_25 joints the photo showed and the fit followed; the others sit in the prior's neutral pose
            "observed_body25": [bool(u) for u in fit.used], **result.plausibility,
            "residuals": [residual_json(r, result.measurements.get(r.kind)) for r in result.residuals],
            # the photo's person mask: whether it was used, where it came from, what it said per residual limb
            "silhouette": result.silhouette.to_json() if getattr(result, "silhouette", None) else {"used": False},
            "timings_s": {k: round(v, 6) for k, v in result.timings_s.items()}}


def result_document(model_info: dict, camera: Camera, people: list[dict], source: str | None,
                    rafo: dict | None = None) -> dict:
    """`rafo`: how λ was found (RafoConfig.to_json), when known."""
    return {"format": RESULT_FORMAT, "source": source, "body_model": model_info,
            "image": {"width": camera.width, "height": camera.height}, "camera": camera.to_json(),
            "coordinates": COORDINATES, **({"rafo": rafo} if rafo is not None else {}), "people": people}


def camera_of(document: dict) -> Camera:
    image, camera = document["image"], document["camera"]
    return Camera(int(image["width"]), int(image["height"]), float(camera["focal_length_px"]),
                  tuple(camera["principal_point"]), bool(camera.get("focal_length_guessed", False)))


def cut_list(person: dict) -> list[tuple[str, float]]:
    """The (kind, λ) a person's avatar is cut at: limbs RAFO accepted, and limbs whose λ a user set by hand."""
    return [(r["kind"], float(r["lambda"])) for r in person.get("residuals", [])
            if r["accepted"] or r.get("lambda_source") == LAMBDA_BY_HAND]


def set_residual_lambda(document: dict, person: int, kind: str, lam: float, measurements: dict | None = None,
                        accept_threshold_px: float = 15.0) -> dict:
    """A user's λ for one residual limb: eq. 3's endpoint, its reprojection and length follow it; the entry is
    marked `"lambda_source": "hand"`; `measurements` (measure.LimbMeasurements.to_json()) replace the old ones.
    Returns the edited entry. The anchor (and so the pose) stays RAFO's."""
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and 0.0 <= lam <= 1.0):
        raise ValueError(f"λ must be a number in [0, 1], got {lam!r}")
    entry = next((r for r in document["people"][person].get("residuals", []) if r["kind"] == kind), None)
    if entry is None:
        raise KeyError(f"person {person} has no residual limb {kind!r}")
    anchor, upstream = np.array(entry["anchor_3d"]), np.array(entry["upstream_3d"])
    end3d = anchor + lam * (upstream - anchor)
    end2d = camera_of(document).project_np(end3d)
    error = float(np.linalg.norm(end2d - np.array(entry["target_2d"])))
    entry.update({"lambda": round(float(lam), 6), "lambda_source": LAMBDA_BY_HAND, "endpoint_3d": _finite(end3d),
                  "endpoint_2d": _finite(end2d), "reproj_error_px": round(error, 4),
                  "accepted": bool(error < accept_threshold_px),
                  "residual_length_m": round(float(np.linalg.norm(upstream - end3d)), 6)})
    if measurements is not None:
        for key in ("residual_length_mesh_m", "stump_volume_l", "circumference_levels", "circumferences_m",
                    "measurement_error"):
            entry.pop(key, None)
        entry.update(measurements)
    return entry


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
