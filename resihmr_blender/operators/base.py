"""One operator base: every step's work runs through `run()`, and errors become one clear report.

Known user-facing errors (bad files, refused cuts, ...) are reported with `self.report({'ERROR'}, ...)` and the
operator is cancelled, leaving the scene as it was (the undo step is dropped). Unexpected exceptions are
reported the same way with the traceback printed to the console, and re-raised when RESIHMR_RAISE_ERRORS=1
(the test suite) so bugs cannot hide behind a report.
"""
from __future__ import annotations

import os
import traceback

from ..errors import UserError


def user_errors() -> tuple[type[BaseException], ...]:
    from ..core.body_model import BodyModelError
    from ..core.fit import FitError
    from ..core.keypoints import KeypointsError
    from ..core.rafo import ResidualError
    from ..core.stump import StumpError
    from ..mesh.animation import MotionError
    from ..mesh.cut import CutError
    from ..mesh.export import ExportError

    return (BodyModelError, FitError, KeypointsError, ResidualError, StumpError, MotionError, CutError, ExportError,
            UserError, OSError)


class ResihmrOperator:
    """Mixin for every ResiHMR operator: subclasses implement run(context) -> {'FINISHED'} | {'CANCELLED'}."""

    bl_options = {"REGISTER", "UNDO"}

    def run(self, context):
        raise NotImplementedError

    def execute(self, context):
        try:
            return self.run(context)
        except user_errors() as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except Exception as exc:
            traceback.print_exc()
            if os.environ.get("RESIHMR_RAISE_ERRORS") == "1":
                raise
            self.report({"ERROR"}, f"{type(exc).__name__}: {exc} (details in the console)")
            return {"CANCELLED"}
