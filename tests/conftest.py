"""Test session set-up: Blender's user resources in a temp folder (read when bpy is imported)."""
import os
import tempfile

import pytest

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="resihmr-blender-user-"))
os.environ.setdefault("RESIHMR_RAISE_ERRORS", "1")


@pytest.fixture(scope="module")
def registered_addon():
    """The add-on registered in an empty Blender file for one test module (bpy imported only where used)."""
    import bpy

    import resihmr_blender
    bpy.ops.wm.read_homefile(use_empty=True)
    resihmr_blender.register()
    yield
    resihmr_blender.unregister()
