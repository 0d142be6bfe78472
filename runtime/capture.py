"""Frame sources named by URI, and a capture thread that hands over frames as the model wants them.

Sources (jetson-inference style):
  csi://0                      Jetson CSI camera (GStreamer nvarguscamerasrc; size and rate from the options)
  v4l2:///dev/video0           USB/V4L2 camera; also a bare /dev/video0 or a camera index (0)
  rtsp://host/path, http(s)://…  network streams
  file://clip.mp4 or clip.mp4  a video file
  photo.jpg                    one image
  folder/                      the images in a folder, in name order

Live sources (cameras, streams) keep only the newest frame: when the model is slower than the
camera, the frames it had no time for are dropped and counted, so the picture never lags further
and further behind. Files are read losslessly (every frame is processed, so a saved video has them
all), unless `realtime` paces them at their own frame rate, which then behaves like a camera.
A live source that stops delivering is reopened a bounded number of times, then the capture ends
with the reason, and whoever consumes it finishes cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# FFmpeg prints its own complaint ("moov atom not found") for every source it cannot open; edgeseg
# reports one line naming the source instead. Read when OpenCV first loads FFmpeg; a value the user
# set is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402  (after the environment it reads)
import numpy as np  # noqa: E402

from edgeseg.errors import ConfigError, SourceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
STREAM_TIMEOUT_MS = 5000  # a stream that stalls this long counts as lost (then reconnect)
CSI_DEFAULT = (1280, 720, 30.0)  # width, height, frames per second: a mode every Jetson CSI sensor has

END_OF_SOURCE = "end of source"
SOURCE_LOST = "source lost"


def _warn(message: str) -> None:
    print(f"edgeseg: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SourceOptions:
    """How to open a source; the command line fills it from the options capture owns."""

    loop: bool = False  # files: start again at the end
    realtime: bool = False  # files: pace at the file's frame rate and drop frames like a camera
    width: int | None = None  # cameras: requested capture size and rate
    height: int | None = None
    fps: float | None = None
    reconnect_attempts: int = 5  # live sources: reopen this often before giving up
    reconnect_delay_s: float = 1.0
    first_frame_timeout_s: float | None = 15.0  # opening and the first frame; None waits forever


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The options capture owns, for any command that reads frames."""
    g = parser.add_argument_group("source", "where frames come from")
    g.add_argument("--source", required=True, metavar="URI",
                   help="csi://0, v4l2:///dev/video0, /dev/video0, 0 (camera index), rtsp://…, http://…, "
                        "a video file, an image file or a folder of images")
    g.add_argument("--loop", action="store_true", help="files: start again at the end (stop with --max-frames or Ctrl-C)")
    g.add_argument("--realtime", action="store_true",
                   help="files: play at the file's own frame rate and drop frames the model has no time for, as a camera would")
    g.add_argument("--input-width", type=int, default=None, metavar="PX", help=f"cameras: capture width (CSI default {CSI_DEFAULT[0]})")
    g.add_argument("--input-height", type=int, default=None, metavar="PX", help=f"cameras: capture height (CSI default {CSI_DEFAULT[1]})")
    g.add_argument("--input-rate", type=float, default=None, metavar="FPS", help=f"cameras: frame rate (CSI default {CSI_DEFAULT[2]:g})")
    g.add_argument("--reconnect", type=int, default=5, metavar="N",
                   help="cameras and streams: reopen a source that stops delivering this many times before ending (default: %(default)s)")
    g.add_argument("--first-frame-timeout", type=float, default=SourceOptions.first_frame_timeout_s, metavar="S",
                   help="give up on a source that has not delivered its first frame after S seconds "
                        "(a busy camera, a silent stream, a pipe with no writer; 0 waits forever; default: %(default)s)")


def source_options_from_args(args: argparse.Namespace) -> SourceOptions:
    for name in ("input_width", "input_height", "input_rate"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be positive")
    if args.reconnect < 0:
        raise ConfigError(f"--reconnect {args.reconnect}: must be 0 or more")
    timeout = args.first_frame_timeout
    if not timeout >= 0:  # negative, or NaN
        raise ConfigError(f"--first-frame-timeout {timeout:g}: must be 0 (wait forever) or more")
    return SourceOptions(loop=args.loop, realtime=args.realtime, width=args.input_width, height=args.input_height,
                         fps=args.input_rate, reconnect_attempts=args.reconnect,
                         first_frame_timeout_s=timeout or None)


# --------------------------------------------------------------------------------------------
# Sources: open, read the next frame (None at the end or on failure), rewind, reopen, close.
# --------------------------------------------------------------------------------------------

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


def video_io_backends(build_information: str | None = None) -> dict[str, bool]:
    """Which capture back-ends this OpenCV was built with, from its "Video I/O" build information."""
    info = cv2.getBuildInformation() if build_information is None else build_information
    found = {}
    for key, pattern in (("gstreamer", r"GStreamer:\s*(\S+)"), ("v4l2", r"v4l/v4l2:\s*(\S+)"),
                         ("ffmpeg", r"FFMPEG:\s*(\S+)")):
        match = re.search(pattern, info)
        found[key] = bool(match) and match.group(1).upper() == "YES"
    return found


def gstreamer_available() -> bool:
    return video_io_backends()["gstreamer"]


def no_gstreamer_message(uri: str) -> str:
    """Why csi:// cannot open here, naming the OpenCV that is loaded, and what to do (docs/jetson.md)."""
    return (f"{uri}: the loaded OpenCV {cv2.__version__} ({cv2.__file__}) was built without GStreamer, which "
            "the Jetson CSI camera needs; use JetPack's OpenCV: a venv made with --system-site-packages and no "
            "pip OpenCV in it (pip uninstall opencv-python opencv-python-headless; see docs/jetson.md)")


def csi_pipeline(sensor_id: int, width: int, height: int, fps: float) -> str:
    """The GStreamer pipeline for a Jetson CSI camera, ending in BGR frames for OpenCV.

    nvarguscamerasrc delivers NV12 in NVMM (GPU) memory; nvvidconv copies it to CPU memory as BGRx
    and videoconvert drops the padding byte. The appsink keeps one buffer and drops the rest, so a
    slow reader always gets the newest frame.
    """
    rate = f"{int(round(fps * 1000))}/1000" if fps != int(fps) else f"{int(fps)}/1"
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){rate}, format=(string)NV12 ! "
            f"nvvidconv ! video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
            f"videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


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


class ImageFilesSource(FrameSource):
    """One image file, or the images of a folder in name order."""

    def __init__(self, uri: str, paths: list[Path]) -> None:
        self.uri = uri
        self.paths = paths
        self.position = 0

    def open(self) -> None:
        if not self.paths:
            raise SourceError(f"{self.uri}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        if len(self.paths) == 1 and cv2.imread(str(self.paths[0]), cv2.IMREAD_COLOR) is None:
            raise SourceError(f"{self.paths[0]}: not a readable image")

    def read(self) -> np.ndarray | None:
        while self.position < len(self.paths):
            path = self.paths[self.position]
            self.position += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
            _warn(f"{path}: not a readable image, skipped")
        return None

    def rewind(self) -> bool:
        self.position = 0
        return True


def _existing_path_source(uri: str, path: Path, options: SourceOptions) -> FrameSource:
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageFilesSource(uri, images)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource(uri, [path])
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: not readable (permission denied)")
    return OpenCVSource(uri, str(path), api=cv2.CAP_FFMPEG, live=False, hint=" as a video (not a video OpenCV's FFmpeg can decode?)")


def open_source(uri: str, options: SourceOptions = SourceOptions()) -> FrameSource:
    """Parse a source URI and open it; raise SourceError naming the source when it cannot deliver."""
    source = parse_source(uri, options)
    open_within(source, options.first_frame_timeout_s)
    return source


def open_within(source: FrameSource, timeout_s: float | None) -> None:
    """`source.open()` (which reads the first frame), given up after `timeout_s` with one line.

    Opening can block in the OS with no timeout of its own (a named pipe waits for a writer, a busy
    camera driver for its device), so it runs on a helper thread; one that never returns is left
    behind as a daemon and ends with the process.
    """
    if not timeout_s:
        source.open()
        return
    done = threading.Event()
    failure: list[BaseException] = []

    def attempt() -> None:
        try:
            source.open()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below, whatever it is
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=attempt, name="edgeseg-open-source", daemon=True).start()
    if not done.wait(timeout_s):
        raise SourceError(f"{source.uri}: delivered no frame within {timeout_s:g} s (a busy camera, a silent stream, "
                          f"a pipe nobody writes to?); --first-frame-timeout sets the wait")
    if failure:
        raise failure[0]


def parse_source(uri: str, options: SourceOptions = SourceOptions()) -> FrameSource:
    """The FrameSource a URI names, not yet opened (open() checks it delivers)."""
    uri = str(uri).strip()
    if not uri:
        raise SourceError("empty --source")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "csi":
        rest = uri.split("://", 1)[1]
        if not rest.isdigit():
            raise SourceError(f"{uri}: expected csi://N with N the sensor id, e.g. csi://0")
        if not gstreamer_available():
            raise SourceError(no_gstreamer_message(uri))
        width = options.width or CSI_DEFAULT[0]
        height = options.height or CSI_DEFAULT[1]
        fps = options.fps or CSI_DEFAULT[2]
        return OpenCVSource(uri, csi_pipeline(int(rest), width, height, fps), api=cv2.CAP_GSTREAMER, live=True,
                            fps=fps, hint=" (is nvargus-daemon running and the camera connected?)")
    if scheme == "v4l2" or re.fullmatch(r"/dev/video\d+", uri) or uri.isdigit():
        device = uri.split("://", 1)[1] if scheme == "v4l2" else uri
        if device.isdigit():
            target: str | int = int(device)
        else:
            if not Path(device).exists():
                raise SourceError(f"{uri}: no such camera device ({device})")
            match = re.fullmatch(r"/dev/video(\d+)", device)
            target = int(match.group(1)) if match else device
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        return OpenCVSource(uri, target, api=api, live=True, width=options.width, height=options.height,
                            fps=options.fps, hint=" (is the camera connected and not used by another program?)")
    if scheme in STREAM_SCHEMES:
        return OpenCVSource(uri, uri, api=cv2.CAP_FFMPEG, live=True, hint=" (is the stream up and reachable?)",
                            params=(cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS))
    if scheme == "file":
        path = Path(uri.split("://", 1)[1])
    elif scheme:
        raise SourceError(f"{uri}: unknown source scheme '{scheme}://' (csi, v4l2, rtsp, http(s), file)")
    else:
        path = Path(uri)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    return _existing_path_source(uri, path, options)


# --------------------------------------------------------------------------------------------
# The capture thread.
# --------------------------------------------------------------------------------------------

@dataclass
class CapturedFrame:
    """One frame as the capture thread hands it over."""

    index: int  # position in the source (counts dropped frames too)
    image: np.ndarray  # BGR uint8
    prepared: Any  # what `prepare(image)` returned (the model input), or None
    captured_at: float  # perf_counter() when the read started
    capture_ms: float
    prepare_ms: float


class FrameGrabber:
    """Reads a source on its own thread and hands over frames, optionally prepared there.

    Live sources (and files with `realtime`) keep only the newest frame: one the consumer did
    not take before the next arrived is dropped and counted. Files otherwise wait for the
    consumer, so no frame is lost. `prepare` (the model's preprocessing) runs on this thread so
    that it overlaps inference; `end_reason` says why frames stopped.
    """

    def __init__(self, source: FrameSource, options: SourceOptions = SourceOptions(), *,
                 prepare: Callable[[np.ndarray], Any] | None = None,
                 on_message: Callable[[str], None] = _warn) -> None:
        self.source = source
        self.options = options
        self.prepare = prepare
        self.on_message = on_message
        self.latest_only = source.live or options.realtime
        self.dropped = 0
        self.produced = 0
        self.end_reason: str | None = None
        self.error: BaseException | None = None
        self._slot: CapturedFrame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeseg-capture", daemon=True)

    def start(self) -> FrameGrabber:
        self._thread.start()
        return self

    def next(self, timeout: float | None = None) -> CapturedFrame | None:
        """The next frame (the newest, for live sources); None once the source has ended."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._slot is None and self.end_reason is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                # Short waits keep Ctrl-C responsive in the thread that calls this.
                self._cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            item, self._slot = self._slot, None
            self._cond.notify_all()
            return item

    def stop(self, timeout: float = 3.0) -> None:
        """Stop reading and release the source (unless a read is stuck in the driver)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.source.close()
        # else: a read blocked in the driver; the daemon thread dies with the process, and
        # releasing the capture under it could crash, so it is left alone.

    # -- the thread ----------------------------------------------------------------------

    def _finish(self, reason: str) -> None:
        with self._cond:
            if self.end_reason is None:
                self.end_reason = reason
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.error = exc
            self._finish(f"capture failed: {exc}")

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopped."""
        return not self._stop.wait(seconds)

    def _loop(self) -> None:
        pace_s = 1.0 / self.source.fps if (self.options.realtime and not self.source.live and self.source.fps) else 0.0
        next_due = time.perf_counter()
        while not self._stop.is_set():
            started = time.perf_counter()
            frame = self.source.read()
            if frame is None:
                frame = self._recover()
                if frame is None:
                    return
                started = time.perf_counter()
            capture_ms = (time.perf_counter() - started) * 1000
            prepared, prepare_ms = None, 0.0
            if self.prepare is not None:
                t = time.perf_counter()
                prepared = self.prepare(frame)
                prepare_ms = (time.perf_counter() - t) * 1000
            item = CapturedFrame(self.produced, frame, prepared, started, capture_ms, prepare_ms)
            self.produced += 1
            with self._cond:
                if self.latest_only:
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = item
                    self._cond.notify_all()
                else:
                    while self._slot is not None and not self._stop.is_set():
                        self._cond.wait(0.1)
                    self._slot = item
                    self._cond.notify_all()
            if pace_s:
                next_due += pace_s
                delay = next_due - time.perf_counter()
                if delay > 0 and not self._sleep(delay):
                    return
                if delay < -1.0:  # fell far behind (e.g. stopped in a debugger): do not burst
                    next_due = time.perf_counter()

    def _recover(self) -> np.ndarray | None:
        """After a failed read: loop a file, reconnect a live source, or end. Returns the next frame."""
        if not self.source.live:
            if self.options.loop and self.produced > 0 and self.source.rewind():
                frame = self.source.read()
                if frame is not None:
                    return frame
            self._finish(END_OF_SOURCE)
            return None
        attempts = self.options.reconnect_attempts
        for attempt in range(1, attempts + 1):
            self.on_message(f"{self.source.uri}: stopped delivering frames; reconnecting ({attempt}/{attempts})")
            if not self._sleep(self.options.reconnect_delay_s):
                return None
            if self.source.reopen():
                frame = self.source.read()
                if frame is not None:
                    self.on_message(f"{self.source.uri}: reconnected")
                    return frame
        self._finish(f"{SOURCE_LOST}: {self.source.uri} stopped delivering frames"
                     + (f" and did not come back after {attempts} reconnect attempts" if attempts else ""))
        return None
