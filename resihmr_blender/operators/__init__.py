"""One module per user step; each exposes its operator classes. `classes` is what register() registers."""
classes: tuple = ()
