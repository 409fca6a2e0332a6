"""Input: load the keypoints file (also under File > Import) and the photo."""
from __future__ import annotations

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper

from .. import workflow
from .base import ResihmrOperator


class RESIHMR_OT_LoadKeypoints(ResihmrOperator, bpy.types.Operator, ImportHelper):
    """Load an OpenPose/LDPose keypoints file (JSON) for the photo"""

    bl_idname = "resihmr.load_keypoints"
    bl_label = "ResiHMR keypoints (.json)"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def run(self, context):
        kfile = workflow.load_keypoints(context.scene, self.filepath)
        residuals = sum(e.enabled for e in context.scene.resihmr.residuals)
        self.report({"INFO"}, f"{len(kfile.people)} people, {residuals} residual limb(s) for person "
                              f"{context.scene.resihmr.person_index}")
        for warning in kfile.warnings:  # what was repaired on reading (clamped confidences, dropped face, ...)
            self.report({"WARNING"}, warning)
        return {"FINISHED"}


class RESIHMR_OT_LoadPhoto(ResihmrOperator, bpy.types.Operator, ImportHelper):
    """Load the photo: a camera matching it is created with the photo as its background"""

    bl_idname = "resihmr.load_photo"
    bl_label = "Load photo"
    filter_glob: StringProperty(default="*.png;*.jpg;*.jpeg;*.tif;*.tiff;*.webp;*.bmp", options={"HIDDEN"})

    def run(self, context):
        workflow.load_photo(context.scene, self.filepath)
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(RESIHMR_OT_LoadKeypoints.bl_idname, text="ResiHMR keypoints (.json)")


classes = (RESIHMR_OT_LoadKeypoints, RESIHMR_OT_LoadPhoto)
