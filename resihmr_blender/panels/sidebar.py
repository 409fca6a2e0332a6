"""The ResiHMR tab in the 3D viewport sidebar, in the order of the work. Drawing only: what it shows comes from
properties (scene input, the active avatar's limbs), never from parsing or computing."""
from __future__ import annotations

import bpy

from ..selection import active_avatar


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
        col.operator("resihmr.load_sequence", text="Load sequence", icon="SEQUENCE")
        if state.keypoints_path:
            col.label(text=bpy.path.basename(state.keypoints_path), icon="CHECKMARK")
            col.prop(state, "person_index")
        col.separator()
        col.prop(state, "use_silhouette")
        if state.use_silhouette:
            col.prop(state, "mask_path")


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
                row.operator("resihmr.place_endpoint", text="", icon="RESTRICT_SELECT_OFF").index = i
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
        obj = active_avatar(context)
        if obj is not None and obj.resihmr.fit_error_px >= 0:
            layout.label(text=f"{obj.name}: fit error {obj.resihmr.fit_error_px:.1f} px")
            source = obj.resihmr.silhouette_source
            layout.label(text=f"photo silhouette: {bpy.path.basename(source) if source else 'not used'}",
                         icon="CHECKMARK" if source else "BLANK1")


class RESIHMR_PT_Reconstruct(_Panel, bpy.types.Panel):
    bl_label = "Reconstruct"
    bl_order = 3

    def draw(self, context):
        layout = self.layout
        obj = active_avatar(context)
        if obj is None:
            layout.label(text="Select an avatar (run Fit)", icon="INFO")
            return
        for limb in obj.resihmr.limbs:
            box = layout.box()
            state = "set by hand" if limb.by_hand else ("accepted" if limb.accepted else "REJECTED")
            box.label(text=f"{limb.kind.replace('_', ' ')}: {limb.reproj_error_px:.1f} px, {state}",
                      icon="CHECKMARK" if limb.accepted or limb.by_hand else "ERROR")
            box.prop(limb, "lam", slider=True)  # live: dragging re-cuts the stump
            if limb.lam_interval[0] >= 0:  # a wide interval: the photo hardly settles λ, check it by hand
                box.label(text=f"λ interval {limb.lam_interval[0]:.2f}–{limb.lam_interval[1]:.2f}",
                          icon="ERROR" if limb.lam_interval[1] - limb.lam_interval[0] > 0.3 else "NONE")
            if limb.lam_hypotheses[0] >= 0:  # what the photo cannot tell: how far the stump tilts towards the camera
                box.label(text=f"λ if tilted low {limb.lam_hypotheses[0]:.2f}, steep {limb.lam_hypotheses[1]:.2f}")
        if obj.resihmr.last_error:
            layout.label(text=obj.resihmr.last_error, icon="ERROR")
        row = layout.row(align=True)
        row.operator("resihmr.cut_residual", icon="MOD_BOOLEAN")
        row.operator("resihmr.restore_limbs", icon="LOOP_BACK")
        layout.prop(context.scene.resihmr, "show_residual_highlight", icon="COLOR")
        layout.operator("resihmr.toggle_pose", icon="ARMATURE_DATA")


class RESIHMR_PT_Measurements(_Panel, bpy.types.Panel):
    bl_label = "Measurements"
    bl_order = 4

    def draw(self, context):
        obj = active_avatar(context)
        if obj is None:
            self.layout.label(text="No avatar selected", icon="INFO")
            return
        for limb in obj.resihmr.limbs:
            box = self.layout.box()
            box.label(text=limb.kind.replace("_", " "))
            box.label(text=f"length {limb.length_m * 100:.1f} cm")
            if limb.volume_l >= 0:
                box.label(text=f"stump volume {limb.volume_l:.2f} l")
                box.label(text="circumferences " + ", ".join(f"{c * 100:.1f}" for c in limb.circumferences_m) + " cm")
        row = self.layout.row(align=True)
        row.operator("resihmr.copy_measurements", text="Copy text").csv = False
        row.operator("resihmr.copy_measurements", text="Copy CSV").csv = True


class RESIHMR_PT_Prosthesis(_Panel, bpy.types.Panel):
    bl_label = "Prosthesis"
    bl_order = 5

    def draw(self, context):
        obj = active_avatar(context)
        if obj is None or not len(obj.resihmr.limbs):
            self.layout.label(text="No residual limb on the selected avatar", icon="INFO")
            return
        for limb in obj.resihmr.limbs:
            box = self.layout.box()
            row = box.row(align=True)
            row.operator("resihmr.toggle_prosthesis", text="", depress=limb.prosthesis,
                         icon="CHECKBOX_HLT" if limb.prosthesis else "CHECKBOX_DEHLT").kind = limb.kind
            row.label(text=limb.kind.replace("_", " "))
            if limb.kind.endswith(("transradial", "transhumeral")):
                row = box.row(align=True)
                for terminal, text in (("hand", "Hand"), ("hook", "Split hook")):
                    op = row.operator("resihmr.set_terminal", text=text, depress=limb.terminal == terminal)
                    op.kind, op.terminal = limb.kind, terminal
            box.operator("resihmr.toggle_cover", depress=limb.cover,
                         icon="CHECKBOX_HLT" if limb.cover else "CHECKBOX_DEHLT").kind = limb.kind
            row = box.row(align=True)
            row.prop(limb, "socket_colour", text="")
            row.prop(limb, "socket_finish", text="")


class RESIHMR_PT_Export(_Panel, bpy.types.Panel):
    bl_label = "Export"
    bl_order = 6

    def draw(self, context):
        col = self.layout.column(align=True)
        for preset, text in (("unity", "Unity (FBX)"), ("unreal", "Unreal (FBX)"), ("web", "Web (GLB)")):
            col.operator("resihmr.export", text=text).preset = preset
        col.operator("resihmr.export_result", icon="TEXT")
        col.separator()
        col.operator("resihmr.load_motion", icon="ARMATURE_DATA")


classes = (RESIHMR_PT_Input, RESIHMR_PT_Residuals, RESIHMR_PT_Fit, RESIHMR_PT_Reconstruct,
           RESIHMR_PT_Measurements, RESIHMR_PT_Prosthesis, RESIHMR_PT_Export)
