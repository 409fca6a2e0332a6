"""Workbench pictures for the README (tools/render_*.py): an empty white scene with a camera, and orthographic
views of some objects in it."""
from __future__ import annotations

import math
from pathlib import Path

import bpy  # noqa: I001  (bpy before mathutils)
import numpy as np
from mathutils import Euler, Vector

from resihmr_blender.mesh.build import evaluated_vertices


def new_workbench_scene():
    """An empty scene rendered by Workbench (studio light, material colours) on white, with a camera."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "MATERIAL"
    scene.render.film_transparent = False
    scene.world = bpy.data.worlds.new("World")
    scene.world.color = (1.0, 1.0, 1.0)
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    return scene


def render_view(objects, side: float, size: int, path: Path) -> None:
    """Frame `objects` and render them; side: 0 = front, +1 = from the subject's left, -1 = from the right."""
    bpy.context.view_layer.update()
    verts = np.concatenate([evaluated_vertices(o) for o in objects])
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2
    extent = float((verts.max(axis=0) - verts.min(axis=0)).max())
    scene = bpy.context.scene
    cam = scene.camera
    cam.data.type = "ORTHO"
    cam.data.ortho_scale = extent * 1.08
    direction = Vector((side, 0.0, 0.0)) if side else Vector((0.0, -1.0, 0.0))
    cam.location = Vector(centre.tolist()) + direction * 10.0
    cam.rotation_euler = Euler((math.pi / 2, 0.0, side * math.pi / 2))
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
