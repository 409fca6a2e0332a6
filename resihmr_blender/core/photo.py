"""The one photo resolver: which photo belongs to a keypoints file, and reading it for the overlay."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .keypoints import KeypointsFile


def photo_path(kfile: KeypointsFile) -> Path | None:
    """The photo the keypoints file names (its `image.path`, relative to the file's folder), when it exists."""
    if not kfile.image_path:
        return None
    path = Path(kfile.image_path)
    if not path.is_absolute() and kfile.path:
        path = Path(kfile.path).parent / path
    return path if path.is_file() else None


def read_photo(kfile: KeypointsFile) -> np.ndarray | None:
    """The photo's pixels (H, W, C) uint8 for the overlay, or None when there is none this reader can read."""
    from .image import read_png

    path = photo_path(kfile)
    if path is None or path.suffix.lower() != ".png":
        return None
    try:
        return read_png(path)
    except (ValueError, OSError):
        return None
