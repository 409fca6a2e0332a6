"""Sidebar panels (drawing only). `classes` is what register() registers."""
from . import sidebar

classes = sidebar.classes
