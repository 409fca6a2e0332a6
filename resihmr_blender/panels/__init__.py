"""Sidebar panels (drawing only). `classes` is what register() registers."""
classes: tuple = ()
