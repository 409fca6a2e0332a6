"""State stored on the scene (the current input) and on each avatar object (its own fit and cuts)."""
from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .core.residuals import RESIDUAL_KINDS


class RESIHMR_PG_Residual(bpy.types.PropertyGroup):
    kind: EnumProperty(name="Kind", items=[(k, k.replace("_", " "), "") for k in RESIDUAL_KINDS])
    enabled: BoolProperty(name="Residual limb", default=False)
    endpoint: FloatVectorProperty(name="Endpoint (px)", size=2, description="Residual endpoint in image pixels")
    confidence: FloatProperty(name="Confidence", default=1.0, min=0.0, max=1.0)
    lam: FloatProperty(name="λ", default=0.5, min=0.0, max=1.0, description="Residual factor (RAFO's result)")
    reproj_error_px: FloatProperty(name="Reprojection error", default=-1.0, subtype="PIXEL")
    accepted: BoolProperty(name="Accepted", default=False)
    suggested: BoolProperty(name="Suggested", default=False, description="The detector thinks this limb is absent")
    suggested_endpoint: FloatVectorProperty(name="Suggested endpoint (px)", size=2)
    suggestion_score: FloatProperty(name="Suggestion score", default=0.0, min=0.0, max=1.0)


class RESIHMR_PG_Scene(bpy.types.PropertyGroup):
    photo_path: StringProperty(name="Photo", subtype="FILE_PATH")
    keypoints_path: StringProperty(name="Keypoints", subtype="FILE_PATH")
    person_index: IntProperty(name="Person", default=0, min=0)
    residuals: CollectionProperty(type=RESIHMR_PG_Residual)
    residual_index: IntProperty(default=0)


class RESIHMR_PG_Avatar(bpy.types.PropertyGroup):
    model_sha256: StringProperty(name="Body model SHA-256")
    fit_error_px: FloatProperty(name="Fit error", default=-1.0, subtype="PIXEL")
    result_json: StringProperty(name="Result (JSON)", description="This avatar's entry of result.json")


classes = (RESIHMR_PG_Residual, RESIHMR_PG_Scene, RESIHMR_PG_Avatar)


def attach() -> None:
    bpy.types.Scene.resihmr = PointerProperty(type=RESIHMR_PG_Scene)
    bpy.types.Object.resihmr = PointerProperty(type=RESIHMR_PG_Avatar)


def detach() -> None:
    for owner in (bpy.types.Scene, bpy.types.Object):
        if hasattr(owner, "resihmr"):
            del owner.resihmr
