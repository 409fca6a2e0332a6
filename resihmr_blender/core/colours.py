"""The one place for colours: the residual limb is red in every output (the paper's figures), the skin grey.

Linear RGBA floats for Blender materials and vertex colours (GLB COLOR_0); 8-bit sRGB-ish triples for the numpy
pictures (overlay.png).
"""
from __future__ import annotations

SKIN_RGBA = (0.80, 0.80, 0.82, 1.0)
RESIDUAL_RGBA = (0.85, 0.08, 0.08, 1.0)

SKIN_RGB8 = (190, 200, 215)
RESIDUAL_RGB8 = (220, 40, 40)
DEFAULT_FACE_RGB8 = (200, 205, 215)
BACKGROUND_GREY8 = 235
INPUT_KEYPOINT_RGB8 = (30, 160, 60)  # green: the keypoints the file gave
ENDPOINT_RGB8 = (250, 190, 0)  # yellow: residual endpoints
FITTED_KEYPOINT_RGB8 = (40, 70, 200)  # blue: the fitted body's keypoints that drove the fit
