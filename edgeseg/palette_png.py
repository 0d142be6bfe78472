"""Class-id masks from PNG files with OpenCV alone, for devices without Pillow.

A VOC mask is a palette PNG whose pixel values are the class ids. OpenCV decodes palette PNGs to
colours, so the ids are recovered by looking each colour up in the file's own PLTE chunk; that is
exact whenever the colours a mask uses appear once in its palette (VOC's palette has 256 distinct
colours). Greyscale PNGs are their ids already.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from edgeseg.errors import DatasetError
from edgeseg.optional import install_hint
from edgeseg.packages import PILLOW

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY, _PALETTE = 0, 3  # IHDR colour types
_COLOUR_TYPE_NAMES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}  # Pillow's mode names, as its reader reports


def _header_and_palette(data: bytes, path: Path) -> tuple[int, int, np.ndarray | None]:
    """(bit depth, colour type, palette as Nx3 RGB or None) from the PNG's chunks."""
    offset, depth, colour_type, palette = len(PNG_SIGNATURE), None, None, None
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            depth, colour_type = body[8], body[9]
        elif kind == b"PLTE":
            palette = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)
        elif kind in (b"IDAT", b"IEND"):  # PLTE must come before the image data
            break
        offset += 12 + length  # length, type, data, CRC
    if depth is None or colour_type is None:
        raise DatasetError(f"{path}: not a readable mask (PNG without a header)")
    return depth, colour_type, palette


def read_class_ids_png(path: Path) -> np.ndarray:
    """Class ids as uint8 HxW from a palette or 8-bit greyscale PNG, or a DatasetError naming the file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: mask file not found") from None
    if not data.startswith(PNG_SIGNATURE):
        raise DatasetError(f"{path}: not a readable mask (not a PNG file)")
    depth, colour_type, palette = _header_and_palette(data, path)
    if colour_type not in (_GREY, _PALETTE) or (colour_type == _GREY and depth > 8):
        mode = _COLOUR_TYPE_NAMES.get(colour_type, f"colour type {colour_type}") + (f";{depth}" if depth > 8 else "")
        raise DatasetError(f"{path}: mask must be a palette or greyscale PNG of class ids, got mode {mode}")
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # a header claiming more pixels than OpenCV's limit
        pixels = None
    if pixels is None:
        raise DatasetError(f"{path}: not a readable mask (OpenCV cannot decode it)")
    if colour_type == _GREY:
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    if palette is None:
        raise DatasetError(f"{path}: not a readable mask (palette PNG without a PLTE chunk)")
    return _palette_indices(pixels, palette, path)


def _palette_indices(pixels: np.ndarray, palette: np.ndarray, path: Path) -> np.ndarray:
    """The palette index of every decoded pixel (OpenCV gives BGR, or BGRA with transparency)."""
    keys = (palette[:, 0].astype(np.int32) << 16) | (palette[:, 1].astype(np.int32) << 8) | palette[:, 2]
    unique_keys, first_index, counts = np.unique(keys, return_index=True, return_counts=True)
    bgr = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)[..., :3].astype(np.int32)
    pixel_keys = (bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]
    # Look up the colours present once, not every pixel: a mask holds a handful of classes.
    present, inverse = np.unique(pixel_keys, return_inverse=True)
    slots = np.minimum(np.searchsorted(unique_keys, present), len(unique_keys) - 1)
    if not np.array_equal(unique_keys[slots], present):
        raise DatasetError(f"{path}: not a readable mask (a decoded colour is missing from its palette)")
    if (counts[slots] > 1).any():
        raise DatasetError(f"{path}: its palette repeats a colour the mask uses, so the class ids are ambiguous "
                           f"without Pillow: {install_hint(PILLOW.extra)}")
    return first_index[slots][inverse].reshape(pixel_keys.shape).astype(np.uint8)


def encode_class_ids_png(mask: np.ndarray, palette_rgb: np.ndarray) -> bytes:
    """A palette PNG (8-bit, colour type 3) whose pixel values are `mask`'s class ids, with the given
    colours (256 x 3 RGB): what VOC's SegmentationClass/ holds, written without Pillow."""
    import zlib

    ids = np.ascontiguousarray(mask, dtype=np.uint8)
    height, width = ids.shape
    rows = np.zeros((height, width + 1), np.uint8)  # each scanline: filter type 0 (none), then its bytes
    rows[:, 1:] = ids

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    palette = np.ascontiguousarray(palette_rgb, dtype=np.uint8).reshape(-1, 3)[:256]
    data = zlib.compress(rows.tobytes(), 6)
    # Pillow's compression level and IDAT chunk size: make-scenes' masks come out byte for byte as Pillow
    # writes them, so a data set hashes the same with or without Pillow (tests/core/test_palette_png.py).
    step = max(65536, width * 4)
    idat = b"".join(chunk(b"IDAT", data[i:i + step]) for i in range(0, len(data), step)) or chunk(b"IDAT", b"")
    return (PNG_SIGNATURE
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, _PALETTE, 0, 0, 0))
            + chunk(b"PLTE", palette.tobytes())
            + idat
            + chunk(b"IEND", b""))
