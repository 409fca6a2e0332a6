"""Residual limbs: enable a kind (one per limb), set its endpoint by clicking on the photo in camera view."""
from __future__ import annotations

import bpy
from bpy.props import FloatVectorProperty, IntProperty

from .. import workflow
from .base import ResihmrOperator, UserError


class RESIHMR_OT_ToggleResidual(ResihmrOperator, bpy.types.Operator):
    """Enable or disable a residual limb kind (a limb takes one kind)"""

    bl_idname = "resihmr.toggle_residual"
    bl_label = "Toggle residual limb"
    index: IntProperty(min=0, max=7)

    @classmethod
    def poll(cls, context):
        return context.scene is not None and len(context.scene.resihmr.residuals) == 8

    def run(self, context):
        state = context.scene.resihmr
        entry = state.residuals[self.index]
        if not entry.enabled:
            workflow.validate_residual_toggle(state, self.index)
        entry.enabled = not entry.enabled
        return {"FINISHED"}


def image_pixel_from_view(context, region_xy) -> tuple[float, float]:
    """Pixel of the photo under a mouse position in camera view (the camera's frame border maps to the image)."""
    from bpy_extras.view3d_utils import location_3d_to_region_2d

    scene, region, rv3d = context.scene, context.region, context.region_data
    camera = scene.camera
    if camera is None or rv3d is None or rv3d.view_perspective != "CAMERA":
        raise UserError("switch to the camera view (Numpad 0) to place the endpoint on the photo")
    frame = [camera.matrix_world @ v for v in camera.data.view_frame(scene=scene)]  # tr, br, bl, tl
    corners = [location_3d_to_region_2d(region, rv3d, v) for v in frame]
    (trx, tr_y), (_, bry), (blx, _), _ = corners
    u = (region_xy[0] - blx) / (trx - blx) * scene.render.resolution_x
    v = (tr_y - region_xy[1]) / (tr_y - bry) * scene.render.resolution_y
    return float(u), float(v)


def _status(context, text) -> None:
    if getattr(context, "workspace", None) is not None:
        context.workspace.status_text_set(text)


class RESIHMR_OT_PlaceEndpoint(ResihmrOperator, bpy.types.Operator):
    """Click (or press and drag) on the photo in camera view where the residual limb ends. On a fitted avatar
    with this limb, dragging re-solves the limb and re-cuts its stump live; Esc or right click cancels"""

    bl_idname = "resihmr.place_endpoint"
    bl_label = "Place endpoint"
    index: IntProperty(min=0, max=7)
    pixel: FloatVectorProperty(size=2, options={"SKIP_SAVE"})

    _avatar = None
    _before = None  # the avatar's document before the drag (Esc puts it back)
    _dragging = False
    _started = False  # invoked (modal): the avatar to follow was decided at the start

    @classmethod
    def poll(cls, context):
        return context.scene is not None and len(context.scene.resihmr.residuals) == 8

    def _live_avatar(self, context):
        """The active avatar when it has this residual limb (its stump follows the mouse), else None."""
        from ..selection import active_avatar

        obj = active_avatar(context)
        kind = context.scene.resihmr.residuals[self.index].kind
        return obj if obj is not None and any(limb.kind == kind for limb in obj.resihmr.limbs) else None

    def run(self, context):  # EXEC: the pixel is given (scripts, tests, redo panel)
        state = context.scene.resihmr
        entry = state.residuals[self.index]
        if not entry.enabled:
            workflow.validate_residual_toggle(state, self.index)
        avatar = self._avatar if self._started else self._live_avatar(context)
        if avatar is not None:
            workflow.set_limb_endpoint(avatar, entry.kind, tuple(self.pixel), context)
        entry.endpoint, entry.enabled = tuple(self.pixel), True
        entry.confidence = max(entry.confidence, 1.0)
        self.report({"INFO"}, f"{entry.kind}: endpoint at ({self.pixel[0]:.0f}, {self.pixel[1]:.0f}) px"
                              + (f"; {avatar.name} re-cut" if avatar is not None else ""))
        return {"FINISHED"}

    def start(self, context, event):
        if context.area is None or context.area.type != "VIEW_3D":
            raise UserError("use this from the 3D viewport, in camera view")
        self._avatar = self._live_avatar(context)
        self._before = workflow.avatar_document(self._avatar) if self._avatar is not None else None
        self._dragging, self._started = False, True
        context.window_manager.modal_handler_add(self)
        _status(context, "Click or drag where the residual limb ends on the photo · Esc: cancel")
        return {"RUNNING_MODAL"}

    def cleanup(self, context):
        _status(context, None)

    def _cancel(self, context):
        self.cleanup(context)
        if self._avatar is not None and self._dragging:
            workflow.restore_avatar_state(self._avatar, self._before)
        return {"CANCELLED"}

    def step(self, context, event):
        if event.type in {"ESC", "RIGHTMOUSE"}:
            return self._cancel(context)
        if event.type == "LEFTMOUSE" and event.value == "PRESS":
            self._dragging = True
        if self._dragging and event.type in {"LEFTMOUSE", "MOUSEMOVE"}:
            self.pixel = image_pixel_from_view(context, (event.mouse_region_x, event.mouse_region_y))
            if event.type == "LEFTMOUSE" and event.value == "RELEASE" or self._avatar is None:
                self.cleanup(context)
                return self.run(context)
            kind = context.scene.resihmr.residuals[self.index].kind
            workflow.set_limb_endpoint(self._avatar, kind, tuple(self.pixel), context)  # live, as the mouse moves
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"} if event.type in {"MIDDLEMOUSE", "WHEELUPMOUSE", "WHEELDOWNMOUSE"} \
            else {"RUNNING_MODAL"}


classes = (RESIHMR_OT_ToggleResidual, RESIHMR_OT_PlaceEndpoint)
