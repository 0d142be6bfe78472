"""Frame sources named by URI, and the options that say how to open them.

Sources (jetson-inference style):
  csi://0                      Jetson CSI camera (GStreamer nvarguscamerasrc; size and rate from the options)
  gst://PIPELINE               any GStreamer pipeline ending in appsink
  v4l2:///dev/video0           USB/V4L2 camera; also a bare /dev/video0 or a camera index (0)
  rtsp://host/path, http(s)://…  network streams
  file://clip.mp4 or clip.mp4  a video file
  photo.jpg                    one image
  folder/                      the images in a folder, in name order

The sources themselves are in frame_sources.py, the capture thread that hands their frames to
the model in frame_grabber.py, the CSI camera's GStreamer pipeline in gstreamer.py.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2

from edgeseg.conventions import IMAGE_SUFFIXES
from edgeseg.errors import ConfigError, SourceError
from edgeseg.runtime.frame_sources import FrameSource, ImageFilesSource, OpenCVSource
from edgeseg.runtime.gstreamer import (
    CSI_DEFAULT,
    csi_pipeline,
    csi_stand_in,
    gstreamer_available,
    no_gstreamer_message,
    raw_pipeline,
)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
STREAM_TIMEOUT_MS = 5000  # a stream that stalls this long counts as lost (then reconnect)


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
                   help="csi://0, gst://PIPELINE (ending in appsink), v4l2:///dev/video0, /dev/video0, "
                        "0 (camera index), rtsp://…, http://…, a video file, an image file or a folder of images")
    g.add_argument("--loop", action="store_true",
                   help="files: start again at the end (stop with --max-frames or Ctrl-C)")
    g.add_argument("--realtime", action="store_true",
                   help="files: play at the file's own frame rate and drop frames the model has no time for, "
                        "as a camera would")
    g.add_argument("--input-width", type=int, default=None, metavar="PX",
                   help=f"cameras: capture width (CSI default {CSI_DEFAULT[0]})")
    g.add_argument("--input-height", type=int, default=None, metavar="PX",
                   help=f"cameras: capture height (CSI default {CSI_DEFAULT[1]})")
    g.add_argument("--input-rate", type=float, default=None, metavar="FPS",
                   help=f"cameras: frame rate (CSI default {CSI_DEFAULT[2]:g})")
    g.add_argument("--reconnect", type=int, default=5, metavar="N",
                   help="cameras and streams: reopen a source that stops delivering this many times before ending "
                        "(default: %(default)s)")
    g.add_argument("--first-frame-timeout", type=float, default=SourceOptions.first_frame_timeout_s, metavar="S",
                   help="give up on a source that has not delivered its first frame after S seconds "
                        "(a busy camera, a silent stream, a pipe with no writer; 0 waits forever; "
                        "default: %(default)s)")


def source_options_from_args(args: argparse.Namespace) -> SourceOptions:
    for name in ("input_width", "input_height", "input_rate"):
        value = getattr(args, name)
        if value is not None and not 0 < value < math.inf:  # NaN fails both
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be a positive number")
    if args.reconnect < 0:
        raise ConfigError(f"--reconnect {args.reconnect}: must be 0 or more")
    return SourceOptions(loop=args.loop, realtime=args.realtime, width=args.input_width, height=args.input_height,
                         fps=args.input_rate, reconnect_attempts=args.reconnect,
                         first_frame_timeout_s=first_frame_timeout(args.first_frame_timeout))


def first_frame_timeout(seconds: float) -> float | None:
    """--first-frame-timeout S (demo and predict): the wait in seconds, None for 0 (forever)."""
    if not 0 <= seconds < math.inf:  # negative, NaN or Inf
        raise ConfigError(f"--first-frame-timeout {seconds:g}: must be 0 (wait forever) or a finite number of "
                          "seconds")
    return seconds or None


def _existing_path_source(uri: str, path: Path, options: SourceOptions) -> FrameSource:
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageFilesSource(uri, images)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource(uri, [path])
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: not readable (permission denied)")
    return OpenCVSource(uri, str(path), api=cv2.CAP_FFMPEG, live=False,
                        hint=" as a video (not a video OpenCV's FFmpeg can decode?)")


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
        stand_in = csi_stand_in()
        hint = " (the videotestsrc stand-in: are GStreamer's base plugins installed?)" if stand_in \
            else " (is nvargus-daemon running and the camera connected?)"
        return OpenCVSource(uri, csi_pipeline(int(rest), width, height, fps, stand_in=stand_in),
                            api=cv2.CAP_GSTREAMER, live=True, fps=fps, hint=hint)
    if scheme == "gst":
        pipeline = raw_pipeline(uri)
        if not gstreamer_available():
            raise SourceError(no_gstreamer_message(uri))
        return OpenCVSource(uri, pipeline, api=cv2.CAP_GSTREAMER, live=True,
                            hint=" (does each element exist here? gst-inspect-1.0 ELEMENT tells; "
                                 "gst-launch-1.0 runs the pipeline alone)")
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
        raise SourceError(f"{uri}: unknown source scheme '{scheme}://' (csi, gst, v4l2, rtsp, http(s), file)")
    else:
        path = Path(uri)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    return _existing_path_source(uri, path, options)
