"""Prostheses on the active avatar's residual limbs: on/off, the terminal device and the pylon cover, one undo
step each (the work is in mesh/prosthesis.py; the socket colour is a plain property of the limb)."""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from ..mesh.prosthesis import set_device
from ..selection import active_avatar
from .base import ResihmrOperator, UserError


def _limb(context, kind: str):
    obj = active_avatar(context)
    limb = next((x for x in obj.resihmr.limbs if x.kind == kind), None) if obj is not None else None
    if limb is None:
        raise UserError(f"the active avatar has no residual limb {kind!r}")
    return obj, limb


class _LimbOperator(ResihmrOperator):
    """A prosthesis setting of one residual limb of the active avatar (errors reach the user as one line)."""

    kind: StringProperty()

    @classmethod
    def poll(cls, context):
        return active_avatar(context) is not None


class RESIHMR_OT_ToggleProsthesis(_LimbOperator, bpy.types.Operator):
    """Put a prosthesis (socket fitted to the stump, pylon, foot / hand or hook, rigged) on this limb, or take
    it off"""

    bl_idname = "resihmr.toggle_prosthesis"
    bl_label = "Prosthesis"

    def run(self, context):
        obj, limb = _limb(context, self.kind)
        set_device(obj, self.kind, not limb.prosthesis)
        return {"FINISHED"}


class RESIHMR_OT_SetTerminal(_LimbOperator, bpy.types.Operator):
    """Choose the arm prosthesis's terminal device (refits the device when it is on)"""

    bl_idname = "resihmr.set_terminal"
    bl_label = "Terminal device"
    terminal: EnumProperty(items=[("hand", "Hand", ""), ("hook", "Split hook", "")])

    def run(self, context):
        obj, limb = _limb(context, self.kind)
        limb.terminal = self.terminal
        if limb.prosthesis:
            set_device(obj, self.kind, True, self.terminal)
        return {"FINISHED"}


class RESIHMR_OT_ToggleCover(_LimbOperator, bpy.types.Operator):
    """A cosmetic cover shaped like the other limb over the pylon, or none (refits the device when it is on)"""

    bl_idname = "resihmr.toggle_cover"
    bl_label = "Pylon cover"

    def run(self, context):
        obj, limb = _limb(context, self.kind)
        limb.cover = not limb.cover
        if limb.prosthesis:
            set_device(obj, self.kind, True, cover=limb.cover)
        return {"FINISHED"}


classes = (RESIHMR_OT_ToggleProsthesis, RESIHMR_OT_SetTerminal, RESIHMR_OT_ToggleCover)
