"""Image files as predict reads them: never a wait, never an unbounded read, one line per bad file.

A named pipe or a device is refused before it is opened, a file past MAX_IMAGE_BYTES before it is read,
and a file OpenCV cannot (or refuses to) decode is a SourceError naming it, which predict turns into a
skipped input.
"""

from __future__ import annotations

import stat
from pathlib import Path

import cv2
import numpy as np

from edgeseg.conventions import IMAGE_SUFFIXES
from edgeseg.errors import SourceError
from edgeseg.runtime.sinks import quiet_stderr

MAX_IMAGE_BYTES = 512 * 2**20  # an image file past this is not read into memory (a 16k x 16k PNG is ~100 MB)


def jpeg_truncated(data: bytes) -> bool:
    """True when a JPEG has no end-of-image marker after its last scan (OpenCV decodes such a file
    into a half-grey picture with only a warning)."""
    last_scan = data.rfind(b"\xff\xda")
    return last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0


def read_image(path: Path) -> np.ndarray:
    """A BGR uint8 image, or SourceError saying why this file is not one (never a wait: a named pipe or
    a device is refused before it is opened, and a file past MAX_IMAGE_BYTES before it is read)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(f"{path}: not a regular file (a named pipe, a device or a socket)")
    if info.st_size > MAX_IMAGE_BYTES:
        raise SourceError(f"{path}: {info.st_size / 2**20:.0f} MB, larger than an image edgeseg reads "
                          f"({MAX_IMAGE_BYTES // 2**20} MB)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        with quiet_stderr():  # libpng/libjpeg print their own complaints; the skip line says it once
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error as exc:  # e.g. a header claiming more pixels than OpenCV's limit
        raise SourceError(f"{path}: an image OpenCV refuses to decode ({(exc.err or 'no reason given')[:160]})") \
            from None
    if image is None:
        kind = "a corrupt or unsupported image" if path.suffix.lower() in IMAGE_SUFFIXES else "not an image"
        raise SourceError(f"{path}: {kind}")
    if data[:2] == b"\xff\xd8" and jpeg_truncated(data):
        raise SourceError(f"{path}: a truncated JPEG (no end-of-image marker)")
    return image


def list_inputs(source: str) -> tuple[list[Path], bool]:
    """The files a path source names (a folder's files in name order; a VOC-layout folder's JPEGImages/),
    and whether the source is a stream or camera URI instead (then the list is empty)."""
    path = Path(source.removeprefix("file://"))
    if "://" in source and not source.startswith("file://"):
        return [], True
    if not path.exists():
        if source.isdigit() or source.startswith("/dev/video"):
            return [], True
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "JPEGImages").is_dir():
            path = path / "JPEGImages"
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise SourceError(f"{path}: an empty folder")
        return files, False
    return [path], False
