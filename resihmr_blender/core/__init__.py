"""ResiHMR core: pure numpy/torch, never imports bpy (usable from notebooks and pipelines)."""
