"""Input: a video's OpenPose frames, or its frame images -> one avatar playing the person's motion (issue 16)."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from .base import ResihmrOperator
from .detect import detections_folder


class RESIHMR_OT_LoadSequence(ResihmrOperator, bpy.types.Operator):
    """Load a folder of OpenPose per-frame files (<video>_<frame>_keypoints.json) or of a video's frame images
    (detected with MediaPipe): one avatar with one shape and λ for the clip, playing the motion"""

    bl_idname = "resihmr.load_sequence"
    bl_label = "Load sequence"
    bl_options = {"REGISTER", "UNDO"}
    directory: StringProperty(subtype="DIR_PATH")
    fps: FloatProperty(name="Frame rate", default=30.0, min=1.0, max=1000.0)
    person: IntProperty(name="Person", default=0, min=0, description="Person of the first frame to follow")
    image_width: IntProperty(name="Image width", default=0, min=0, description="0: the loaded photo's")
    image_height: IntProperty(name="Image height", default=0, min=0, description="0: the loaded photo's")
    accept_suggestions: BoolProperty(
        name="Use suggested limbs", default=False,
        description="Frame images: a limb the detector finds missing on most frames becomes a residual limb")

    def start(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def run(self, context):
        from ..sequence_outputs import load_sequence

        size = (self.image_width, self.image_height) if self.image_width and self.image_height else None
        from ..sequence_outputs import suggestion_lines

        _, fit, found = load_sequence(context, self.directory, self.fps, self.person, size, self.accept_suggestions,
                                      detections_folder())
        limbs = ", ".join(f"{r.kind} λ={r.lam:.2f}{'' if r.accepted else ' (rejected)'}" for r in fit.residuals)
        detected = "" if found is None else "; " + ("; ".join(suggestion_lines(found)) or "no limb-loss suggestion")
        self.report({"INFO"}, f"{len(fit.fitted)} of {len(fit.sequence.frames)} frames fitted"
                              + (f"; {limbs}" if limbs else "") + detected + "; play the timeline")
        return {"FINISHED"}


classes = (RESIHMR_OT_LoadSequence,)
