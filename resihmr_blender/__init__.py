# SPDX-License-Identifier: GPL-3.0-or-later
"""ResiHMR for Blender: anatomically honest avatars of people with limb loss from one photo.

Only register()/unregister() live here. Nothing heavy is imported at add-on import (torch, numpy work and the
body model load when an operator runs), and `resihmr_blender.core` stays importable without Blender.
"""

_cli_handle = None


def _classes():
    from . import operators, panels, preferences, properties

    return (*properties.classes, preferences.RESIHMR_AP_Preferences, *operators.classes, *panels.classes)


def register():
    import bpy

    from . import cli, properties
    from .operators import load

    for cls in _classes():
        if not getattr(cls, "is_registered", False):  # a batch run in this process may have registered the state
            bpy.utils.register_class(cls)
    properties.attach()
    bpy.types.TOPBAR_MT_file_import.append(load.menu_import)  # users look under File > Import first
    global _cli_handle
    # `blender --command resihmr ARGS`: Blender's convention for extension commands
    _cli_handle = bpy.utils.register_cli_command("resihmr", cli.blender_command)


def unregister():
    import bpy

    from . import properties

    global _cli_handle
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    from .operators import load

    bpy.types.TOPBAR_MT_file_import.remove(load.menu_import)
    properties.detach()
    for cls in reversed(_classes()):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
