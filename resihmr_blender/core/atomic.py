"""The one atomic file writer: a temp file in the target folder, then a rename, so no reader sees half a file
and an interrupted run leaves no partial output under the target's name. Permissions follow the umask, like a
plain open() would. Temp files start with '.' and hold `TEMP_MARK`, so a later run can find and remove them.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".resihmr-tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` (same suffix, so exporters accept it); when the block ends without an
    error it replaces `path`, else it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{TEMP_MARK}{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # a unique free name; writers that keep backups (Blender's .blend1) must not find a file there
    try:
        yield tmp
        if not tmp.is_file():
            raise OSError(f"{path}: nothing was written")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give them what open() would
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
