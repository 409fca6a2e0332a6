"""State stored on the scene (the current input) and on each avatar object (its own fit, cuts and live λ)."""
from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .core.residuals import RESIDUAL_KINDS


def _kind_items():
    return [(k, k.replace("_", " "), "") for k in RESIDUAL_KINDS]


class RESIHMR_PG_Residual(bpy.types.PropertyGroup):
    """One residual kind of the current input, as the user edits it (the file's, a click, a suggestion)."""

    kind: EnumProperty(name="Kind", items=_kind_items())
    enabled: BoolProperty(name="Residual limb", default=False)
    endpoint: FloatVectorProperty(name="Endpoint (px)", size=2, description="Residual endpoint in image pixels")
    confidence: FloatProperty(name="Confidence", default=1.0, min=0.0, max=1.0)
    suggested: BoolProperty(name="Suggested", default=False, description="The detector thinks this limb is absent")
    suggested_endpoint: FloatVectorProperty(name="Suggested endpoint (px)", size=2)
    suggestion_score: FloatProperty(name="Suggestion score", default=0.0, min=0.0, max=1.0)


def _highlight_changed(self, context):
    from .workflow import set_residual_highlight

    set_residual_highlight(self.show_residual_highlight)


class RESIHMR_PG_Scene(bpy.types.PropertyGroup):
    photo_path: StringProperty(name="Photo", subtype="FILE_PATH")
    keypoints_path: StringProperty(name="Keypoints", subtype="FILE_PATH")
    person_index: IntProperty(name="Person", default=0, min=0)
    residuals: CollectionProperty(type=RESIHMR_PG_Residual)
    use_silhouette: BoolProperty(
        name="Use photo silhouette", default=True,
        description="Refine the body and each residual limb's λ with the photo's person mask: the mask file below, "
                    "else <stem>_mask.png beside the keypoints or the photo, else MediaPipe's segmentation of the "
                    "photo when the [detect] extra is installed")
    mask_path: StringProperty(name="Mask", subtype="FILE_PATH",
                              description="The photo's person mask (white = person), optional")
    show_residual_highlight: BoolProperty(
        name="Residual highlight", default=True, update=_highlight_changed,
        description="Show the residual limbs in red (the mask attribute and vertex group are always kept)")


def _lambda_changed(self, context):
    """The live λ: dragging the slider re-cuts the stump (workflow.set_limb_lambda); a refused λ puts the
    slider back and says why in the panel."""
    from .workflow import avatar_document, is_syncing, set_limb_lambda, syncing

    if is_syncing():
        return

    obj = self.id_data
    try:
        set_limb_lambda(obj, self.kind, self.lam)
        obj.resihmr.last_error = ""
        _refit_device(obj, self)
    except Exception as exc:  # an update callback cannot report: keep the message for the panel
        obj.resihmr.last_error = f"{self.kind}: λ {self.lam:.3f} refused: {exc}"
        previous = next(r["lambda"] for r in avatar_document(obj)["people"][0]["residuals"] if r["kind"] == self.kind)
        with syncing():
            self.lam = previous


def _refit_device(obj, limb) -> None:
    """A prosthesis on the limb follows its new stump; one that no longer fits comes off (the panel says why)."""
    from .mesh.prosthesis import refit_limb

    message = refit_limb(obj, limb.kind)
    if message:
        obj.resihmr.last_error = message


def _socket_colour_changed(self, context):
    from .mesh.prosthesis import device_for, set_socket_colour

    device = device_for(self.id_data, self.kind)
    if device is not None:
        set_socket_colour(device, self.socket_colour)


def _socket_finish_changed(self, context):
    from .mesh.prosthesis import device_for, set_socket_finish

    device = device_for(self.id_data, self.kind)
    if device is not None:
        set_socket_finish(device, self.socket_finish)


class RESIHMR_PG_Limb(bpy.types.PropertyGroup):
    """One residual limb of an avatar: its λ (a live slider) and what RAFO or the user decided."""

    kind: EnumProperty(name="Kind", items=_kind_items())
    lam: FloatProperty(name="λ", default=0.5, min=0.0, max=1.0, precision=3, update=_lambda_changed,
                       description="Residual factor: 0 = the limb ends at the anchor joint, 1 = at the upstream "
                                   "joint. Dragging re-cuts the stump; the value is then marked as set by hand")
    reproj_error_px: FloatProperty(name="Reprojection error", default=-1.0, subtype="PIXEL")
    lam_interval: FloatVectorProperty(name="λ interval", size=2, default=(-1.0, -1.0),
                                      description="λ values RAFO's loss cannot tell apart from its λ (lo, hi)")
    lam_hypotheses: FloatVectorProperty(name="λ if tilted low / steep", size=2, default=(-1.0, -1.0),
                                        description="RAFO's λ were the segment's tilt towards the camera a low or a "
                                                    "steep one (result.json lambda_hypotheses)")
    accepted: BoolProperty(name="Accepted", default=False)
    by_hand: BoolProperty(name="Set by hand", default=False)
    length_m: FloatProperty(name="Residual length", default=0.0, subtype="DISTANCE", unit="LENGTH")
    volume_l: FloatProperty(name="Stump volume (l)", default=-1.0)
    circumferences_m: FloatVectorProperty(name="Circumferences at 25/50/75 %", size=3, subtype="NONE")
    # the prosthesis (mesh/prosthesis.py): on/off, terminal device and cover are set by operators (one undo step
    # each)
    prosthesis: BoolProperty(name="Prosthesis", default=False)
    terminal: EnumProperty(name="Terminal device", default="hand",
                           items=[("hand", "Hand", "A hand shaped like the other hand"),
                                  ("hook", "Split hook", "A split hook on a wrist unit")],
                           description="An arm prosthesis's terminal device (a leg's is a foot)")
    cover: BoolProperty(name="Pylon cover", default=False,
                        description="A cosmetic cover shaped like the other limb over the pylon")
    socket_colour: FloatVectorProperty(name="Socket colour", subtype="COLOR", size=4, min=0.0, max=1.0,
                                       default=(0.12, 0.22, 0.45, 1.0), update=_socket_colour_changed)
    socket_finish: EnumProperty(name="Socket finish", default="satin", update=_socket_finish_changed,
                                items=[("matte", "Matte", ""), ("satin", "Satin", ""), ("gloss", "Gloss", ""),
                                       ("carbon", "Carbon", "Carbon fibre: a slight metallic sheen")])


class RESIHMR_PG_Avatar(bpy.types.PropertyGroup):
    model_sha256: StringProperty(name="Body model SHA-256")
    fit_error_px: FloatProperty(name="Fit error", default=-1.0, subtype="PIXEL")
    silhouette_source: StringProperty(name="Silhouette", description="The person mask the fit used (empty: none)")
    result_json: StringProperty(name="Result (JSON)", description="This avatar's result document (resihmr-result/1)")
    limbs: CollectionProperty(type=RESIHMR_PG_Limb)
    last_error: StringProperty(name="Last error")


classes = (RESIHMR_PG_Residual, RESIHMR_PG_Scene, RESIHMR_PG_Limb, RESIHMR_PG_Avatar)


def attach() -> None:
    bpy.types.Scene.resihmr = PointerProperty(type=RESIHMR_PG_Scene)
    bpy.types.Object.resihmr = PointerProperty(type=RESIHMR_PG_Avatar)


def detach() -> None:
    for owner in (bpy.types.Scene, bpy.types.Object):
        if hasattr(owner, "resihmr"):
            del owner.resihmr


def ensure_attached() -> None:
    """Batch runs build avatars without the add-on enabled: register the state classes so each avatar carries
    its result and limbs (the saved .blend then shows them when opened with the add-on)."""
    if hasattr(bpy.types.Object, "resihmr"):
        return
    for cls in classes:
        if not getattr(cls, "is_registered", False):
            bpy.utils.register_class(cls)
    attach()
