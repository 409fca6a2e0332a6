"""The ResiHMR tab in the 3D viewport sidebar, in the order of the work. Drawing only."""
from __future__ import annotations

import json

import bpy


def _avatar(context):
    from ..operators.reconstruct import active_avatar

    return active_avatar(context)


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ResiHMR"


class RESIHMR_PT_Input(_Panel, bpy.types.Panel):
    bl_label = "Input"
    bl_order = 0

    def draw(self, context):
        state = context.scene.resihmr
        col = self.layout.column(align=True)
        col.operator("resihmr.load_photo", icon="IMAGE_DATA")
        if state.photo_path:
            col.label(text=bpy.path.basename(state.photo_path), icon="CHECKMARK")
        col.operator("resihmr.load_keypoints", text="Load keypoints", icon="FILE")
        col.operator("resihmr.detect", text="Detect keypoints", icon="VIEWZOOM")
        if state.keypoints_path:
            col.label(text=bpy.path.basename(state.keypoints_path), icon="CHECKMARK")
            col.prop(state, "person_index")


class RESIHMR_PT_Residuals(_Panel, bpy.types.Panel):
    bl_label = "Residual limbs"
    bl_order = 1

    def draw(self, context):
        state = context.scene.resihmr
        if len(state.residuals) != 8:
            self.layout.label(text="Load keypoints first", icon="INFO")
            return
        for i, entry in enumerate(state.residuals):
            row = self.layout.row(align=True)
            op = row.operator("resihmr.toggle_residual", text="", depress=entry.enabled,
                              icon="CHECKBOX_HLT" if entry.enabled else "CHECKBOX_DEHLT")
            op.index = i
            row.label(text=entry.kind.replace("_", " "))
            if entry.enabled:
                place = row.operator("resihmr.place_endpoint", text="", icon="RESTRICT_SELECT_OFF")
                place.index = i
                row.prop(entry, "lam", text="λ")
            elif entry.suggested:
                accept = row.operator("resihmr.accept_suggestion", text=f"suggested ({entry.suggestion_score:.0%})",
                                      icon="QUESTION")
                accept.index = i


class RESIHMR_PT_Fit(_Panel, bpy.types.Panel):
    bl_label = "Fit"
    bl_order = 2

    def draw(self, context):
        layout = self.layout
        layout.operator("resihmr.fit", icon="PLAY")
        for entry in context.scene.resihmr.residuals:
            if entry.enabled and entry.reproj_error_px >= 0:
                state = "accepted" if entry.accepted else "REJECTED"
                layout.label(text=f"{entry.kind}: λ {entry.lam:.2f}, {entry.reproj_error_px:.1f} px, {state}",
                             icon="CHECKMARK" if entry.accepted else "ERROR")


class RESIHMR_PT_Reconstruct(_Panel, bpy.types.Panel):
    bl_label = "Reconstruct"
    bl_order = 3

    def draw(self, context):
        col = self.layout.column(align=True)
        col.operator("resihmr.cut_residual", icon="MOD_BOOLEAN")
        col.operator("resihmr.toggle_highlight", icon="COLOR")
        col.operator("resihmr.toggle_pose", icon="ARMATURE_DATA")


class RESIHMR_PT_Measurements(_Panel, bpy.types.Panel):
    bl_label = "Measurements"
    bl_order = 4

    def draw(self, context):
        obj = _avatar(context)
        if obj is None:
            self.layout.label(text="No avatar yet", icon="INFO")
            return
        for r in json.loads(obj.get("resihmr_result", "{}")).get("residuals", []):
            box = self.layout.box()
            box.label(text=r["kind"].replace("_", " "))
            box.label(text=f"length {r.get('residual_length_m', 0) * 100:.1f} cm")
            if "stump_volume_l" in r:
                box.label(text=f"stump volume {r['stump_volume_l']:.2f} l")
                circ = ", ".join(f"{c * 100:.1f}" for c in r.get("circumferences_m", []))
                box.label(text=f"circumferences {circ} cm")
        row = self.layout.row(align=True)
        row.operator("resihmr.copy_measurements", text="Copy text").csv = False
        row.operator("resihmr.copy_measurements", text="Copy CSV").csv = True


class RESIHMR_PT_Export(_Panel, bpy.types.Panel):
    bl_label = "Export"
    bl_order = 5

    def draw(self, context):
        col = self.layout.column(align=True)
        for preset, text in (("unity", "Unity (FBX)"), ("unreal", "Unreal (FBX)"), ("web", "Web (GLB)")):
            col.operator("resihmr.export", text=text).preset = preset
        col.operator("resihmr.export_result", icon="TEXT")


classes = (RESIHMR_PT_Input, RESIHMR_PT_Residuals, RESIHMR_PT_Fit, RESIHMR_PT_Reconstruct,
           RESIHMR_PT_Measurements, RESIHMR_PT_Export)
