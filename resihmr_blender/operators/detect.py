"""Detect keypoints on the photo (optional extra) and accept the limb-loss suggestions one by one."""
from __future__ import annotations

import tempfile

import bpy
from bpy.props import IntProperty

from .. import workflow
from .base import ResihmrOperator


def detections_folder() -> str:
    """Where detected keypoint files go: the extension's user folder, else a temporary one (scripts)."""
    from ..preferences import ADDON_ID

    try:
        return bpy.utils.extension_path_user(ADDON_ID, path="detections", create=True)
    except (ValueError, RuntimeError):
        return tempfile.mkdtemp(prefix="resihmr-detections-")


class RESIHMR_OT_Detect(ResihmrOperator, bpy.types.Operator):
    """Detect the person's keypoints on the photo and suggest which limbs look absent (you confirm them)"""

    bl_idname = "resihmr.detect"
    bl_label = "Detect keypoints"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and bool(context.scene.resihmr.photo_path)

    def run(self, context):
        found = workflow.detect_photo(context.scene, detections_folder())
        # each suggestion with its probability and the first thing the picture shows; each limb left unjudged
        # with its reason (cut by the frame, hidden, foreshortened)
        listed = "; ".join(f"{s.kind} (p {s.score:.2f}: {s.reasons[1]})" for s in found.suggestions) or "none"
        unjudged = [f"{j.limb.replace('_', ' ')}: {j.reason}" for j in found.limbs if not j.judged]
        not_judged = f"; not judged: {'; '.join(unjudged)}" if unjudged else ""
        others = f"; {found.others} other person(s) ignored (the most central, largest is used)" if found.others \
            else ""
        self.report({"INFO"}, f"keypoints detected; suggested residual limbs: {listed} (confirm them)"
                              f"{not_judged}{others}")
        return {"FINISHED"}


class RESIHMR_OT_AcceptSuggestion(ResihmrOperator, bpy.types.Operator):
    """Use the detector's suggestion for this residual limb"""

    bl_idname = "resihmr.accept_suggestion"
    bl_label = "Accept suggestion"
    index: IntProperty(min=0, max=7)

    @classmethod
    def poll(cls, context):
        return context.scene is not None and len(context.scene.resihmr.residuals) == 8

    def run(self, context):
        workflow.accept_suggestion(context.scene.resihmr, self.index)
        return {"FINISHED"}


classes = (RESIHMR_OT_Detect, RESIHMR_OT_AcceptSuggestion)
