"""Pictures in and out without Blender: a fast PNG writer (numpy + zlib) for overlays and masks, and photos
(JPEG, PNG, ...) read with Pillow, turned upright by their EXIF orientation and refused above a pixel limit.

Every reading error is an :class:`ImageError` (a ValueError) whose one-line message names the file.
"""
from __future__ import annotations

import os
import struct
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .atomic import write_bytes_atomic

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)
# Rows are written with PNG's "Up" filter (the difference to the row above: photos and masks become small
# numbers and long runs) and deflated with a fast zlib strategy, in slices on all cores: a 24-MP overlay in about
# a second of CPU, smaller than unfiltered level 6 (3.7 s).
_PARALLEL_MIN_BYTES = 4 << 20
# A 100-MP photo is 300 MB of RGB: more than any phone or DSLR (a 24-MP camera gives 6000x4000, the largest
# common sensors 61-102 MP). Beyond it the file is a panorama, a scan or a decompression bomb, refused before
# decoding. Pillow's own guard (89 MP warns, 179 MP refuses) is replaced by this one limit.
MAX_PIXELS = 100_000_000
_EXIF_ORIENTATION = 0x0112
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


class ImageError(ValueError):
    """A picture that cannot be read; the message names the file and says why, on one line."""


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W), (H, W, 1-4) or bool -> PNG bytes (8 bits per channel, "Up" filter)."""
    pixels = np.asarray(pixels)
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8 or bool, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3:
        raise ValueError(f"PNG pixels must be (H, W) or (H, W, C), got shape {pixels.shape}")
    height, width, channels = pixels.shape
    if channels not in _COLOR_TYPES:
        raise ValueError(f"PNG pixels need 1 to 4 channels, got {channels}")
    rows = pixels.reshape(height, -1)
    raw = np.empty((height, 1 + width * channels), np.uint8)  # each row: filter byte 2 ("Up"), then differences
    raw[:, 0] = 2
    raw[:1, 1:] = rows[:1]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    # colour (photos): Huffman coding alone is as small and faster; grey (masks): runs are what compresses
    strategy = zlib.Z_HUFFMAN_ONLY if channels >= 3 else zlib.Z_RLE
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", _deflate(raw, strategy))
            + _chunk(b"IEND", b""))


def _deflate(raw: np.ndarray, strategy: int = zlib.Z_RLE) -> bytes:
    """A zlib stream of `raw`'s rows, slices deflated in parallel (zlib releases the GIL) and joined: every
    slice but the last ends on a byte-aligned sync flush, so the raw deflate streams concatenate into one."""
    data = raw.reshape(-1).data
    n_slices = 1 if raw.nbytes < _PARALLEL_MIN_BYTES else min(len(raw), 2 * (os.cpu_count() or 1))
    bounds = np.linspace(0, len(raw), n_slices + 1).astype(int) * raw.shape[1]

    def deflate(i: int) -> bytes:
        compressor = zlib.compressobj(1, zlib.DEFLATED, -15, 9, strategy)
        last = i == n_slices - 1
        return compressor.compress(data[bounds[i]:bounds[i + 1]]) + compressor.flush(
            zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    if n_slices == 1:
        parts = [deflate(0)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(n_slices, os.cpu_count() or 1)) as pool:
            parts = list(pool.map(deflate, range(n_slices)))
    return b"\x78\x01" + b"".join(parts) + struct.pack(">I", zlib.adler32(data) & 0xFFFFFFFF)


def write_png(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write atomically (temp file + rename)."""
    write_bytes_atomic(path, encode_png(pixels))


@contextmanager
def _opened(path: str | os.PathLike, max_pixels: int):
    """Pillow's lazy image (header read, pixels not yet decoded), its size checked; errors as ImageError."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # Blender's own Python, without the pip dependencies
        raise ImageError(f"{path}: cannot read photos here: Pillow is not installed (pip install Pillow)") from None

    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: too large to read (more than {max_pixels / 1e6:.0f} megapixels)") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        what = "an empty file" if size == 0 else "not an image Pillow can read (JPEG, PNG, TIFF, WebP, BMP, ...)"
        raise ImageError(f"{path}: {what}") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read this image ({exc.strerror or exc})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, more than the "
                             f"{max_pixels / 1e6:.0f} this reader accepts; downscale the photo first")
        yield image


def _orientation(image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        return 1


def image_size(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of the picture as shown (EXIF orientation applied), from its header only."""
    with _opened(path, max_pixels) as image:
        width, height = image.size
        return (height, width) if _orientation(image) in _ROTATED else (width, height)


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB, upright (EXIF orientation applied); alpha dropped, 16-bit scaled to 8."""
    with _opened(path, max_pixels) as image:
        from PIL import ImageOps  # importable: _opened has imported Pillow

        try:
            image.load()
            if _orientation(image) != 1:
                image = ImageOps.exif_transpose(image)
            return _to_array(image, keep_channels=False)
        except ImageError:
            raise
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
            raise ImageError(f"{path}: cannot read this image ({exc})") from None


def read_png(path: str | os.PathLike) -> np.ndarray:
    """A PNG (or any picture) as (H, W, C) uint8 keeping its channels: grey 1, grey+alpha 2, RGB 3, RGBA 4."""
    try:
        import PIL  # noqa: F401
    except ImportError:  # inside Blender without the pip dependencies
        return _read_png_without_pillow(path)
    with _opened(path, MAX_PIXELS) as image:
        try:
            image.load()
            return _to_array(image, keep_channels=True)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"{path}: cannot read this image ({exc})") from None


def _to_array(image, keep_channels: bool) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit grey: keep the high byte
        grey = (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return grey[:, :, None] if keep_channels else np.repeat(grey[:, :, None], 3, axis=2)
    if keep_channels:
        if mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in mode else "RGB")
        array = np.asarray(image, dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _read_png_without_pillow(path: str | os.PathLike) -> np.ndarray:
    """8-bit non-interlaced PNGs in numpy + zlib, for Blender's own Python, which has no Pillow. Rows filtered
    with Sub/Average/Paeth are undone pixel by pixel: slow on large pictures, which Pillow reads everywhere else."""
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
