"""Export: FBX/GLB with presets for Unity, Unreal and the web; the result JSON; measurements as text/CSV."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from .. import workflow
from .base import ResihmrOperator
from .reconstruct import active_avatar

PRESETS = [("web", "Web (GLB)", "three.js, Babylon, model viewers"), ("unity", "Unity (FBX)", "Y up, -Z forward"),
           ("unreal", "Unreal (FBX)", "Z up, centimetre-free scale"), ("glb", "GLB", "plain glTF binary"),
           ("fbx", "FBX", "plain FBX")]


class RESIHMR_OT_Export(ResihmrOperator, bpy.types.Operator, ExportHelper):
    """Export the avatar (skin, all bones, residual mask) without changing the scene"""

    bl_idname = "resihmr.export"
    bl_label = "Export avatar"
    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb;*.fbx", options={"HIDDEN"})
    preset: EnumProperty(name="Preset", items=PRESETS, default="web")
    animation: BoolProperty(name="Animation", default=False, description="Include the armature's action")

    @classmethod
    def poll(cls, context):
        return active_avatar(context) is not None

    def check(self, context):
        fmt = "fbx" if self.preset in ("unity", "unreal", "fbx") else "glb"
        self.filename_ext = "." + fmt
        return super().check(context)

    def run(self, context):
        from ..mesh.export import export_avatar

        obj = active_avatar(context)
        fmt = "fbx" if self.preset in ("unity", "unreal", "fbx") else "glb"
        path = bpy.path.ensure_ext(self.filepath, "." + fmt)
        preset = self.preset if self.preset in ("unity", "unreal", "web") else None
        export_avatar(obj.parent, obj, path, fmt=fmt, animation=self.animation, preset=preset)
        self.report({"INFO"}, f"exported {path}")
        return {"FINISHED"}


class RESIHMR_OT_ExportResult(ResihmrOperator, bpy.types.Operator, ExportHelper):
    """Write this avatar's fit, residual limbs and measurements as result JSON"""

    bl_idname = "resihmr.export_result"
    bl_label = "Export result JSON"
    bl_options = {"REGISTER"}
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return active_avatar(context) is not None

    def run(self, context):
        from ..core.result_json import write_json_atomic

        path = bpy.path.ensure_ext(self.filepath, ".json")
        write_json_atomic(path, workflow.avatar_document(active_avatar(context)))
        self.report({"INFO"}, f"wrote {path}")
        return {"FINISHED"}


class RESIHMR_OT_CopyMeasurements(ResihmrOperator, bpy.types.Operator):
    """Copy the residual-limb measurements to the clipboard"""

    bl_idname = "resihmr.copy_measurements"
    bl_label = "Copy measurements"
    bl_options = {"REGISTER"}
    csv: BoolProperty(name="CSV", default=False)

    @classmethod
    def poll(cls, context):
        return active_avatar(context) is not None

    def run(self, context):
        context.window_manager.clipboard = workflow.measurements_text(active_avatar(context), csv=self.csv)
        self.report({"INFO"}, "measurements copied")
        return {"FINISHED"}


classes = (RESIHMR_OT_Export, RESIHMR_OT_ExportResult, RESIHMR_OT_CopyMeasurements)
