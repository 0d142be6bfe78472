"""Frame sources: open, read the next frame (None at the end or on failure), rewind, reopen, close.

`OpenCVSource` reads cameras, streams and video files through cv2.VideoCapture; `ImageFilesSource`
reads one image or a folder of images. Which source a URI names is edgeseg.runtime.capture's job.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# FFmpeg prints its own complaint ("moov atom not found") for every source it cannot open; edgeseg
# reports one line naming the source instead. Read when OpenCV first loads FFmpeg; a value the user
# set is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402  (after the environment it reads)
import numpy as np  # noqa: E402

from edgeseg.conventions import IMAGE_SUFFIXES  # noqa: E402
from edgeseg.errors import SourceError  # noqa: E402


def warn(message: str) -> None:
    """One warning line on stderr, prefixed like every edgeseg message."""
    print(f"edgeseg: {message}", file=sys.stderr, flush=True)


class FrameSource:
    """A source of BGR uint8 frames. `live` sources drop frames when the consumer is slow."""

    uri: str = ""
    live: bool = False
    fps: float | None = None  # nominal frame rate, when the source knows one

    def open(self) -> None:
        """Open the source or raise SourceError naming it."""

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of a file or when a live source fails."""
        raise NotImplementedError

    def rewind(self) -> bool:
        """Files: go back to the first frame (for --loop). False where that is impossible."""
        return False

    def reopen(self) -> bool:
        """Live sources: close and open again after a failure. True when frames flow again."""
        return False

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Mute OpenCV's own warnings while probing a source: a failure becomes one SourceError line."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


class OpenCVSource(FrameSource):
    """Cameras, streams and video files through cv2.VideoCapture."""

    def __init__(self, uri: str, target: str | int, *, api: int = cv2.CAP_ANY, live: bool,
                 width: int | None = None, height: int | None = None, fps: float | None = None,
                 hint: str = "", params: tuple[int, ...] = ()) -> None:
        self.uri = uri
        self.target = target
        self.api = api
        self.params = list(params)  # VideoCapture open parameters (property id, value, ...)
        self.live = live
        self.requested = (width, height, fps)
        self.hint = hint
        self.fps = fps
        self.capture: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None  # the frame read by open() to prove the source works

    def _open_capture(self) -> cv2.VideoCapture | None:
        with _quiet_opencv():
            capture = cv2.VideoCapture(self.target, self.api, self.params) if self.params \
                else cv2.VideoCapture(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            return None
        width, height, fps = self.requested
        if self.api != cv2.CAP_GSTREAMER:  # a GStreamer pipeline carries its own caps
            if width:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                capture.set(cv2.CAP_PROP_FPS, fps)
            # Cameras queue several frames by default; one means the newest frame, not a stale one.
            if self.live:
                capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return capture

    def open(self) -> None:
        self.capture = self._open_capture()
        if self.capture is None:
            raise SourceError(f"{self.uri}: cannot open{self.hint}")
        ok, frame = self._read_raw()
        if not ok:
            self.close()
            raise SourceError(f"{self.uri}: opened but delivered no frame (unreadable or empty){self.hint}")
        self._pending = frame
        reported = self.capture.get(cv2.CAP_PROP_FPS)
        if reported and 0 < reported < 1000:
            self.fps = float(reported)

    def _read_raw(self) -> tuple[bool, np.ndarray | None]:
        if self.capture is None:  # closed
            return False, None
        try:
            ok, frame = self.capture.read()
        except cv2.error:
            return False, None
        if not ok or frame is None or frame.size == 0:
            return False, None
        if frame.ndim == 2:  # some cameras and files deliver grey frames
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        return True, frame

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        if self.capture is None:
            return None
        ok, frame = self._read_raw()
        return frame if ok else None

    def rewind(self) -> bool:
        if self.live or self.capture is None:
            return False
        # Seeking is unreliable for some containers; reopening always starts at frame 0.
        self.capture.release()
        self.capture = self._open_capture()
        return self.capture is not None

    def reopen(self) -> bool:
        if not self.live:
            return False
        self.close()
        self.capture = self._open_capture()
        if self.capture is None:
            return False
        ok, frame = self._read_raw()
        self._pending = frame if ok else None
        return ok

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


def _decode(path: Path) -> np.ndarray:
    """An image file as a BGR frame, or SourceError in one line (a header claiming more pixels than OpenCV
    allows used to escape as cv2.error, an `internal error`)."""
    try:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise SourceError(f"{path}: an image OpenCV refuses to decode ({(exc.err or 'no reason given')[:160]})") \
            from None
    if frame is None:
        raise SourceError(f"{path}: not a readable image")
    return frame


class ImageFilesSource(FrameSource):
    """One image file, or the images of a folder in name order."""

    def __init__(self, uri: str, paths: list[Path]) -> None:
        self.uri = uri
        self.paths = paths
        self.position = 0

    def open(self) -> None:
        if not self.paths:
            raise SourceError(f"{self.uri}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        if len(self.paths) == 1:
            _decode(self.paths[0])

    def read(self) -> np.ndarray | None:
        while self.position < len(self.paths):
            path = self.paths[self.position]
            self.position += 1
            try:
                return _decode(path)
            except SourceError as exc:
                warn(f"{exc}, skipped")
        return None

    def rewind(self) -> bool:
        self.position = 0
        return True
