"""Export: FBX/GLB with presets for Unity, Unreal and the web; the result JSON; measurements as text/CSV."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .. import workflow
from ..selection import active_avatar
from .base import ResihmrOperator

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
    animation: BoolProperty(name="Animation", default=False, description="Include the armature's action (a motion)")
    pose: EnumProperty(name="Pose", items=[("rest", "Rest (T-pose)", "T-pose on the ground at the origin"),
                                           ("photo", "Photo", "the photo's pose on the ground at the origin")],
                       default="rest", description="Static pose of the file; the photo's pose is always included "
                                                   "as the clip 'photo_pose'")
    influences: EnumProperty(name="Influences", items=[("4", "4", "every client (three.js reads 4)"),
                                                       ("8", "8", "GLB JOINTS_1/WEIGHTS_1: the exact skinning")],
                             default="4", description="Skin weights per vertex in GLB")

    @classmethod
    def poll(cls, context):
        return active_avatar(context) is not None

    def check(self, context):
        fmt = "fbx" if self.preset in ("unity", "unreal", "fbx") else "glb"
        self.filename_ext = "." + fmt
        return super().check(context)

    def run(self, context):
        obj = active_avatar(context)
        fmt = "fbx" if self.preset in ("unity", "unreal", "fbx") else "glb"
        path = bpy.path.ensure_ext(self.filepath, "." + fmt)
        preset = self.preset if self.preset in ("unity", "unreal", "web") else None
        workflow.export_avatar_file(obj, path, fmt, animation=self.animation, preset=preset, pose=self.pose,
                                    influences=int(self.influences))
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


class RESIHMR_OT_LoadMotion(ResihmrOperator, bpy.types.Operator, ImportHelper):
    """Play an AMASS-layout motion (.npz) on the active avatar: a new action, previewed in the timeline"""

    bl_idname = "resihmr.load_motion"
    bl_label = "Load motion"
    bl_options = {"REGISTER", "UNDO"}
    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    first: IntProperty(name="First frame", default=0, min=0, description="First frame of the file to use")
    last: IntProperty(name="Last frame", default=-1, min=-1, description="Last frame of the file to use (-1: all)")

    @classmethod
    def poll(cls, context):
        return active_avatar(context) is not None

    def run(self, context):
        frames = workflow.load_motion(active_avatar(context), self.filepath, self.first, self.last)
        self.report({"INFO"}, f"motion: {frames} frames from {bpy.path.basename(self.filepath)}; play the timeline")
        return {"FINISHED"}


classes = (RESIHMR_OT_Export, RESIHMR_OT_ExportResult, RESIHMR_OT_CopyMeasurements, RESIHMR_OT_LoadMotion)
