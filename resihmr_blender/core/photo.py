"""The one photo resolver: which photo belongs to a keypoints file, its size, and its pixels for the overlay.

Looked for, in this order:
1. the path the file names (`image.path` of our format, `file_name` of COCO), relative to the file's folder;
2. OpenPose's naming: `<stem>_keypoints.json` beside `<stem>.jpg` / `.jpeg` / `.png` (any case), and
   `<stem>.json` beside `<stem>.jpg` likewise. OpenPose's `<stem>_rendered.png` (the skeleton drawn on the
   photo) is never taken for the photo.
Nothing else is guessed: no photo found is None, and the caller says so.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .image import MAX_PIXELS, ImageError, image_size, read_image
from .keypoints import KeypointsFile

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
_OPENPOSE_SUFFIX = "_keypoints"


class PhotoError(ImageError):
    """The photo exists but cannot be used; the one-line message names it."""


def find_photo(keypoints_path: str | os.PathLike | None, image_path: str | None = None) -> Path | None:
    """The photo of the keypoints file at `keypoints_path` (see the module's order), or None."""
    folder = Path(keypoints_path).parent if keypoints_path else None
    if image_path:
        named = Path(image_path)
        if not named.is_absolute() and folder is not None:
            named = folder / named
        if named.is_file():
            return named
    if keypoints_path is None:
        return None
    name = Path(keypoints_path).name
    stem = name[:-len(".json")] if name.lower().endswith(".json") else Path(name).stem
    stems = [stem[:-len(_OPENPOSE_SUFFIX)], stem] if stem.endswith(_OPENPOSE_SUFFIX) else [stem]
    stems = [s for s in stems if s and not s.lower().endswith("_rendered")]
    for candidate_stem in stems:  # the exact spelling (cheap, and any case on case-insensitive file systems)
        for suffix in PHOTO_SUFFIXES:
            if (folder / (candidate_stem + suffix)).is_file():
                return folder / (candidate_stem + suffix)
    by_lower = _names_by_lower_case(folder)
    for candidate_stem in stems:
        for suffix in PHOTO_SUFFIXES:
            wanted = candidate_stem + suffix
            matches = by_lower.get(wanted.lower(), [])
            if matches:  # the exact spelling first, then any case
                return folder / (wanted if wanted in matches else matches[0])
    return None


def _names_by_lower_case(folder: Path) -> dict[str, list[str]]:
    """The folder's file names by lower-case name, listed once per folder state (a batch over ten thousand
    frames in one folder lists it once, not once per frame)."""
    try:
        stamp = folder.stat().st_mtime_ns
    except OSError:
        return {}
    key = str(folder.resolve())
    cached = _LISTINGS.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    by_lower: dict[str, list[str]] = {}
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return {}
    for entry_name in names:
        by_lower.setdefault(entry_name.lower(), []).append(entry_name)
    if len(_LISTINGS) >= 64:
        _LISTINGS.pop(next(iter(_LISTINGS)))
    _LISTINGS[key] = (stamp, by_lower)
    return by_lower


_LISTINGS: dict[str, tuple[int, dict[str, list[str]]]] = {}


def photo_path(kfile: KeypointsFile) -> Path | None:
    """The photo of this keypoints file (see the module's order), or None."""
    return find_photo(kfile.path, kfile.image_path)


def photo_size(kfile: KeypointsFile, max_pixels: int = MAX_PIXELS) -> tuple[int, int] | None:
    """(width, height) of the photo as shown (EXIF rotation applied), read from its header; None without a photo.

    For a file without an image size (plain OpenPose output): the photo's size is the image size.
    Raises :class:`PhotoError` naming the photo when it exists but cannot be read.
    """
    path = photo_path(kfile)
    if path is None:
        return None
    try:
        return image_size(path, max_pixels)
    except ImageError as exc:
        raise PhotoError(str(exc)) from None


def read_photo(kfile: KeypointsFile, max_pixels: int = MAX_PIXELS) -> np.ndarray | None:
    """The photo's pixels (H, W, 3) uint8, upright, for the overlay; None when there is no photo.

    A photo that exists but cannot be read (broken, empty, not an image, too large) gives None too, and its
    one-line reason is added to ``kfile.warnings``: the overlay then has no photo under it, the results are
    still written.
    """
    path = photo_path(kfile)
    if path is None:
        return None
    try:
        return read_image(path, max_pixels)
    except ImageError as exc:
        kfile.warnings.append(f"{exc}; the overlay is drawn without the photo")
        return None
