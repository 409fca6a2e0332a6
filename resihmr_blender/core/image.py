"""Minimal PNG writer/reader (numpy + zlib), so core can write pictures and masks without Blender or PIL."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .atomic import write_bytes_atomic

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W), (H, W, 3) or (H, W, 4) -> PNG bytes (8 bits per channel, no filtering)."""
    pixels = np.asarray(pixels)
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8 or bool, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    if channels not in _COLOR_TYPES:
        raise ValueError(f"PNG pixels need 1, 3 or 4 channels, got {channels}")
    raw = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + \
        _chunk(b"IEND", b"")


def write_png(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write atomically (temp file + rename)."""
    write_bytes_atomic(path, encode_png(pixels))


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read the 8-bit, non-interlaced PNGs this module writes (and most simple ones): (H, W, C) uint8."""
    data = Path(path).read_bytes()
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = len(_SIGNATURE), b"", None
    while pos < len(data):
        length, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = header
    channels = {0: 1, 2: 3, 6: 4, 4: 2}[ctype]
    if depth != 8 or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced PNGs are supported")
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    stride = channels
    out = np.zeros((height, width * channels), np.int32)
    for y in range(height):  # undo the per-row filters
        f, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros_like(row)
        if f == 0:
            cur = row
        elif f == 2:
            cur = (row + prev) & 255
        else:
            cur = np.zeros_like(row)
            for x in range(len(row)):
                a = cur[x - stride] if x >= stride else 0
                b, c = prev[x], (prev[x - stride] if x >= stride else 0)
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (row[x] + pred) & 255
        out[y] = cur
    return out.astype(np.uint8).reshape(height, width, channels)
