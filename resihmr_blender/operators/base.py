"""One operator base: every entry Blender calls (`execute`, `invoke`, `modal`) runs through `_guarded`, and
errors become one clear report.

Known user-facing errors (bad files, refused cuts, ...) are reported with `self.report({'ERROR'}, ...)` and the
operator is cancelled, leaving the scene as it was (the undo step is dropped). Unexpected exceptions are
reported the same way with the traceback printed to the console, and re-raised when RESIHMR_RAISE_ERRORS=1
(the test suite) so bugs cannot hide behind a report. A modal operator's `cleanup` runs on every error.
Subclasses implement `run(context)`, and optionally `start(context, event)` (invoke) and `step(context, event)`
(modal).
"""
from __future__ import annotations

import os
import traceback

from ..errors import UserError


def user_errors() -> tuple[type[BaseException], ...]:
    from ..core.body_model import BodyModelError
    from ..core.fit import FitError
    from ..core.keypoints import KeypointsError
    from ..core.prosthesis import ProsthesisError
    from ..core.rafo import ResidualError
    from ..core.settings import SettingsError
    from ..core.stump import StumpError
    from ..mesh.animation import MotionError
    from ..mesh.cut import CutError
    from ..mesh.export import ExportError

    return (BodyModelError, FitError, KeypointsError, ProsthesisError, ResidualError, SettingsError, StumpError,
            MotionError, CutError, ExportError, UserError, OSError)


def one_line(exc: BaseException) -> str:
    """The message a user sees: one line, never a traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


class ResihmrOperator:
    """Mixin for every ResiHMR operator: subclasses implement run(context) -> {'FINISHED'} | {'CANCELLED'}."""

    bl_options = {"REGISTER", "UNDO"}

    def run(self, context):
        raise NotImplementedError

    def start(self, context, event):
        """invoke: the next class's invoke (file browser of Import/ExportHelper), else execute."""
        parent = super()
        if hasattr(parent, "invoke"):
            return parent.invoke(context, event)
        return self.run(context)

    def step(self, context, event):
        return {"CANCELLED"}

    def cleanup(self, context):
        """Undo what start() set up (timers, progress, status text); called on every error of a modal run."""

    def execute(self, context):
        return self._guarded(context, self.run, context)

    def invoke(self, context, event):
        return self._guarded(context, self.start, context, event)

    def modal(self, context, event):
        return self._guarded(context, self.step, context, event)

    def _guarded(self, context, method, *args):
        try:
            return method(*args)
        except user_errors() as exc:
            self.cleanup(context)
            self.report({"ERROR"}, one_line(exc))
            return {"CANCELLED"}
        except Exception as exc:
            self.cleanup(context)
            traceback.print_exc()
            if os.environ.get("RESIHMR_RAISE_ERRORS") == "1":
                raise
            self.report({"ERROR"}, f"{type(exc).__name__}: {one_line(exc)} (details in the console)")
            return {"CANCELLED"}
