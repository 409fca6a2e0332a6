"""Fit + RAFO + cut on the scene's person: pipeline.run in a background thread (the UI stays live, the progress
bar follows the pipeline's real stages, Esc stops the worker), then workflow.apply builds the avatar."""
from __future__ import annotations

import threading

import bpy

from .. import workflow
from ..preferences import resolve_body_model
from .base import ResihmrOperator

STAGE_TEXT = {"fit": "fitting the body", "silhouette": "fitting the body to the photo's silhouette",
              "rafo": "finding where each residual limb ends", "mesh": "cutting and sealing",
              "done": "building the avatar"}


class Worker:
    """pipeline.run in a thread; the progress callback records the stage and stops the run when cancelled."""

    def __init__(self, model, kfile, person, settings, mask=None):
        from ..core.pipeline import Cancelled, run

        self.stage, self.fraction = "fit", 0.0
        self.result = self.error = None
        self.cancel = threading.Event()

        def progress(stage, fraction):
            if self.cancel.is_set():
                raise Cancelled()
            self.stage, self.fraction = stage, fraction

        def work():
            try:
                self.result = run(model, kfile, settings, people=[person], progress=progress, mask=mask)
            except Cancelled:
                pass
            except Exception as exc:  # handed to the main thread, reported there
                self.error = exc

        self.thread = threading.Thread(target=work, name="resihmr-fit", daemon=True)

    def stop(self, timeout: float = 10.0) -> None:
        self.cancel.set()
        self.thread.join(timeout)


class RESIHMR_OT_Fit(ResihmrOperator, bpy.types.Operator):
    """Fit the body to the intact keypoints, find where each residual limb ends (RAFO), cut and seal the stumps"""

    bl_idname = "resihmr.fit"
    bl_label = "Fit"

    _worker = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and bool(context.scene.resihmr.keypoints_path)

    def _prepare(self, context):
        """Everything validated before the work starts (and before anything changes)."""
        kfile, person, settings = workflow.scene_request(context.scene)
        return resolve_body_model(context), kfile, person, settings, workflow.scene_mask(context.scene, kfile)

    def _finish(self, context, reconstruction):
        _, obj = workflow.apply(reconstruction, context.scene)
        context.view_layer.objects.active = obj
        document = workflow.avatar_document(obj)["people"][0]
        accepted = sum(r["accepted"] for r in document["residuals"])
        self.report({"INFO"}, f"fit error {document['fit_error_px']:.1f} px; {accepted}/{len(document['residuals'])} "
                              f"residual limb(s) accepted and cut")
        return {"FINISHED"}

    def run(self, context):  # synchronous (scripts, tests, batch)
        from ..core.pipeline import run

        model, kfile, person, settings, mask = self._prepare(context)
        return self._finish(context, run(model, kfile, settings, people=[person], mask=mask))

    def start(self, context, event):
        self._worker = Worker(*self._prepare(context))
        self._worker.thread.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        self._status(context, "ResiHMR: fitting… Esc cancels")
        return {"RUNNING_MODAL"}

    def _status(self, context, text):
        if getattr(context, "workspace", None) is not None:
            context.workspace.status_text_set(text)

    def cleanup(self, context):
        wm = context.window_manager
        if self._worker is not None and self._worker.thread.is_alive():
            self._worker.stop()
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
            wm.progress_end()
        self._status(context, None)

    def step(self, context, event):
        worker = self._worker
        if event.type == "ESC":
            self.cleanup(context)  # stops and joins the worker; the scene was never touched
            self.report({"WARNING"}, "fit cancelled; nothing changed")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if worker.thread.is_alive():
            context.window_manager.progress_update(int(100 * worker.fraction))
            self._status(context, f"ResiHMR: {STAGE_TEXT.get(worker.stage, worker.stage)}… Esc cancels")
            return {"RUNNING_MODAL"}
        self.cleanup(context)
        if worker.error is not None:
            raise worker.error  # through the one error path
        return self._finish(context, worker.result)


classes = (RESIHMR_OT_Fit,)
