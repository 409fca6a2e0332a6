"""Which avatar the user means: the one lookup the operators and the sidebar share (a panel that shows one avatar
while its buttons act on another, or on none, would mislead)."""
from __future__ import annotations

AVATAR_TAG = "resihmr_avatar"  # on an avatar's mesh object
DEVICE_TAG = "resihmr_prosthesis"  # on a prosthesis object (mesh/prosthesis.py): the residual kind it is fitted to


def _avatar_mesh(obj):
    return obj if obj is not None and obj.type == "MESH" and obj.get(AVATAR_TAG) else None


def active_avatar(context):
    """The avatar's mesh object the user selected: the mesh itself, its armature, or one of its prostheses
    (clicked in the viewport); else None. Never a guess: a cube being active never makes an operator act on some
    avatar elsewhere in the scene."""
    obj = context.active_object
    if obj is not None and obj.get(DEVICE_TAG) and obj.parent is not None:
        obj = obj.parent  # a device hangs from the avatar's armature
    if obj is not None and obj.type == "ARMATURE":
        return next((c for c in obj.children if _avatar_mesh(c) is not None), None)
    return _avatar_mesh(obj)
