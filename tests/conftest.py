"""Test session set-up: Blender's user resources in a temp folder (read when bpy is imported)."""
import os
import tempfile

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="resihmr-blender-user-"))
os.environ.setdefault("RESIHMR_RAISE_ERRORS", "1")
