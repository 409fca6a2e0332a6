"""Reconstruct: cut and seal the accepted residual limbs; show rest/fitted pose; toggle the red highlight."""
from __future__ import annotations

import bpy

from .. import workflow
from .base import ResihmrOperator, UserError


def active_avatar(context):
    obj = context.active_object
    if obj is not None and obj.type == "ARMATURE":
        obj = next((c for c in obj.children if c.get("resihmr_avatar")), None)
    if obj is not None and obj.get("resihmr_avatar") and obj.type == "MESH":
        return obj
    found = workflow.avatars(context.scene)
    return found[0] if len(found) == 1 else None


class RESIHMR_OT_CutResiduals(ResihmrOperator, bpy.types.Operator):
    """Cut the avatar at each accepted residual limb's end and seal it with a smooth watertight stump"""

    bl_idname = "resihmr.cut_residual"
    bl_label = "Cut and seal"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and active_avatar(context) is not None

    def run(self, context):
        kinds = workflow.cut_avatar(active_avatar(context))
        self.report({"INFO"}, f"cut and sealed: {', '.join(kinds)}")
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


class RESIHMR_OT_ToggleHighlight(ResihmrOperator, bpy.types.Operator):
    """Show or hide the red residual-limb highlight"""

    bl_idname = "resihmr.toggle_highlight"
    bl_label = "Residual highlight"

    @classmethod
    def poll(cls, context):
        return active_avatar(context) is not None

    def run(self, context):
        from ..mesh.cut import RED_MATERIAL

        material = bpy.data.materials.get(RED_MATERIAL)
        if material is None:
            raise UserError("no residual limb is cut yet")
        shown = tuple(material.diffuse_color)[:3] != (0.8, 0.8, 0.82)
        material.diffuse_color = (0.8, 0.8, 0.82, 1.0) if shown else (0.85, 0.08, 0.08, 1.0)
        return {"FINISHED"}


classes = (RESIHMR_OT_CutResiduals, RESIHMR_OT_TogglePose, RESIHMR_OT_ToggleHighlight)
