"""Fit + RAFO on the scene's person, in a background thread: the UI stays live, Esc cancels."""
from __future__ import annotations

import threading

import bpy

from .. import workflow
from ..preferences import get_preferences, resolve_body_model
from .base import ResihmrOperator, UserError


def _configs(context):
    from ..core.fit import FitConfig
    from ..core.rafo import RafoConfig

    prefs = get_preferences(context)
    if prefs is None:
        return FitConfig(), RafoConfig()
    return (FitConfig(num_threads=prefs.num_threads),
            RafoConfig(accept_threshold_px=prefs.accept_threshold_px, lambda_min=prefs.lambda_min,
                       lambda_max=max(prefs.lambda_min, prefs.lambda_max)))


def compute(model, person, camera, fit_config, rafo_config):
    """The heavy part (no bpy): fit, RAFO, measurements."""
    from ..core.pipeline import PersonFailure, measure_people, reconstruct

    result = reconstruct(model, [person], [camera], fit_config, rafo_config)[0]
    if isinstance(result, PersonFailure):
        raise UserError(f"cannot fit this person: {result.reason}")
    measure_people(model, [result])
    return result


class RESIHMR_OT_Fit(ResihmrOperator, bpy.types.Operator):
    """Fit the body to the intact keypoints and find where each residual limb ends (RAFO)"""

    bl_idname = "resihmr.fit"
    bl_label = "Fit"

    _thread = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and bool(context.scene.resihmr.keypoints_path)

    def _prepare(self, context):
        person, camera, _ = workflow.scene_person(context.scene)
        model = resolve_body_model(context)
        return model, person, camera, *_configs(context)

    def _finish(self, context, model, result):
        _, obj = workflow.apply_fit(context.scene, model, result)
        accepted = sum(r.accepted for r in result.residuals)
        self.report({"INFO"}, f"fit error {result.fit.fit_error_px:.1f} px; {accepted}/{len(result.residuals)} "
                              f"residual limb(s) accepted")
        return {"FINISHED"}

    def run(self, context):  # synchronous (scripts, tests, batch)
        model, person, camera, fit_config, rafo_config = self._prepare(context)
        return self._finish(context, model, compute(model, person, camera, fit_config, rafo_config))

    def invoke(self, context, event):
        try:
            args = self._prepare(context)
        except Exception as exc:  # same reporting as execute
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._model = args[0]
        self._outcome = {}

        def work():
            try:
                self._outcome["result"] = compute(*args)
            except Exception as exc:  # handed to the main thread, reported there
                self._outcome["error"] = exc

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        self._ticks = 0
        wm.modal_handler_add(self)
        if context.workspace is not None:
            context.workspace.status_text_set("ResiHMR: fitting… Esc cancels")
        return {"RUNNING_MODAL"}

    def _cleanup(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def modal(self, context, event):
        if event.type == "ESC":
            self._cleanup(context)  # the thread's result is dropped; the scene was never touched
            self.report({"WARNING"}, "fit cancelled; nothing changed")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self._ticks += 1
        context.window_manager.progress_update(min(95, self._ticks * 5))
        if self._thread.is_alive():
            return {"RUNNING_MODAL"}
        self._cleanup(context)
        if "error" in self._outcome:
            self.report({"ERROR"}, str(self._outcome["error"]))
            return {"CANCELLED"}
        try:
            return self._finish(context, self._model, self._outcome["result"])
        except Exception as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}


classes = (RESIHMR_OT_Fit,)
