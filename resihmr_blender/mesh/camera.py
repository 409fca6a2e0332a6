"""A Blender camera that sees the scene as the photo's camera did (frames.py: at the origin, looking along +y)."""
from __future__ import annotations

import math

import bpy

from ..core.camera import Camera

SENSOR_WIDTH_MM = 36.0


def create_photo_camera(camera: Camera, name: str = "ResiHMR camera", scene=None, image_path: str | None = None):
    """Camera object + render resolution matching the photo; the photo as its background when given."""
    scene = scene or bpy.context.scene
    data = bpy.data.cameras.new(name)
    data.sensor_fit = "HORIZONTAL" if camera.width >= camera.height else "VERTICAL"
    data.sensor_width = data.sensor_height = SENSOR_WIDTH_MM
    longest = max(camera.width, camera.height)
    data.lens = camera.focal_length * SENSOR_WIDTH_MM / longest
    cx, cy = camera.principal_point
    data.shift_x = -(cx - camera.width / 2.0) / longest  # OpenCV x right = Blender's view x
    data.shift_y = (cy - camera.height / 2.0) / longest  # image y down = Blender's view -y
    data.clip_start, data.clip_end = 0.05, 200.0
    obj = bpy.data.objects.new(name, data)
    obj.rotation_euler = (math.pi / 2, 0.0, 0.0)  # look along +y, up +z
    scene.collection.objects.link(obj)
    scene.camera = obj
    scene.render.resolution_x, scene.render.resolution_y = camera.width, camera.height
    scene.render.resolution_percentage = 100
    if image_path:
        image = bpy.data.images.load(image_path, check_existing=True)
        data.show_background_images = True
        background = data.background_images.new()
        background.image = image
    return obj
