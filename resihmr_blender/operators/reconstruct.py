"""Reconstruct: cut and seal the active avatar's residual limbs (or restore them); show rest/fitted pose."""
from __future__ import annotations

import bpy

from .. import workflow
from ..mesh.prosthesis import refit_prostheses
from ..selection import active_avatar
from .base import ResihmrOperator, UserError


class RESIHMR_OT_CutResiduals(ResihmrOperator, bpy.types.Operator):
    """Cut the avatar at each accepted residual limb's end and seal it with a smooth watertight stump"""

    bl_idname = "resihmr.cut_residual"
    bl_label = "Cut and seal"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and active_avatar(context) is not None

    def run(self, context):
        obj = active_avatar(context)
        kinds = workflow.cut_avatar(obj)
        refit_prostheses(obj)  # a prosthesis follows its re-made stump
        self.report({"INFO"}, f"cut and sealed: {', '.join(kinds)}")
        return {"FINISHED"}


class RESIHMR_OT_RestoreLimbs(ResihmrOperator, bpy.types.Operator):
    """Show the avatar's uncut body (the fit and every λ are kept; Cut and seal brings the stumps back)"""

    bl_idname = "resihmr.restore_limbs"
    bl_label = "Restore limbs"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and active_avatar(context) is not None

    def run(self, context):
        obj = active_avatar(context)
        workflow.restore_limbs(obj)
        refit_prostheses(obj)  # no stump, no prosthesis
        return {"FINISHED"}


class RESIHMR_OT_TogglePose(ResihmrOperator, bpy.types.Operator):
    """Switch the avatar between its fitted pose and the T-pose rest position"""

    bl_idname = "resihmr.toggle_pose"
    bl_label = "Rest / fitted pose"

    @classmethod
    def poll(cls, context):
        return active_avatar(context) is not None

    def run(self, context):
        arm = active_avatar(context).parent
        if arm is None or arm.type != "ARMATURE":
            raise UserError("the avatar has no armature")
        arm.data.pose_position = "REST" if arm.data.pose_position == "POSE" else "POSE"
        return {"FINISHED"}


classes = (RESIHMR_OT_CutResiduals, RESIHMR_OT_RestoreLimbs, RESIHMR_OT_TogglePose)
