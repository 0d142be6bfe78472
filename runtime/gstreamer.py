"""OpenCV's capture back-ends, and the GStreamer pipelines: a Jetson CSI camera's, and raw `gst://` ones."""

from __future__ import annotations

import os
import re

import cv2

from edgeseg.errors import SourceError

CSI_DEFAULT = (1280, 720, 30.0)  # width, height, frames per second: a mode every Jetson CSI sensor has
# The appsink settings every pipeline edgeseg builds ends with: keep one buffer, drop the rest, do not
# pace to the clock, so a slow reader always gets the newest frame.
NEWEST_FRAME_APPSINK = "appsink drop=true max-buffers=1 sync=false"
# Set to 1 to run the exact csi:// pipeline with GStreamer's own test source in place of the Jetson-only
# elements (nvarguscamerasrc, NVMM memory, nvvidconv): how csi:// is exercised off a Jetson (docs/demo.md).
CSI_STAND_IN_ENV = "EDGESEG_CSI_STAND_IN"


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
    """Why a GStreamer source cannot open here, naming the OpenCV that is loaded, and what to do (docs/jetson.md)."""
    return (f"{uri}: the loaded OpenCV {cv2.__version__} ({cv2.__file__}) was built without GStreamer, which "
            "csi:// and gst:// sources need; use the system's OpenCV (JetPack's on a Jetson, python3-opencv on "
            "Debian/Ubuntu): a venv made with --system-site-packages and no pip OpenCV in it "
            "(pip uninstall opencv-python opencv-python-headless; see docs/jetson.md)")


def csi_stand_in() -> bool:
    """Whether csi:// runs with the test source in place of the Jetson's camera elements."""
    return os.environ.get(CSI_STAND_IN_ENV, "") not in ("", "0")


def csi_pipeline(sensor_id: int, width: int, height: int, fps: float, *, stand_in: bool = False) -> str:
    """The GStreamer pipeline for a Jetson CSI camera, ending in BGR frames for OpenCV.

    nvarguscamerasrc delivers NV12 in NVMM (GPU) memory; nvvidconv copies it to CPU memory as BGRx
    and videoconvert drops the padding byte. The appsink keeps one buffer and drops the rest, so a
    slow reader always gets the newest frame.

    `stand_in` swaps only what exists on a Jetson alone: a live `videotestsrc` for the camera, system
    memory for NVMM and `videoconvert` for nvvidconv. Every caps string, the conversion chain and the
    appsink are the same, so the stand-in negotiates the same formats, sizes and rate.
    """
    rate = f"{int(round(fps * 1000))}/1000" if fps != int(fps) else f"{int(fps)}/1"
    camera = "videotestsrc is-live=true pattern=ball" if stand_in else f"nvarguscamerasrc sensor-id={sensor_id}"
    memory = "" if stand_in else "(memory:NVMM)"
    converter = "videoconvert" if stand_in else "nvvidconv"
    return (f"{camera} ! "
            f"video/x-raw{memory}, width=(int){width}, height=(int){height}, "
            f"framerate=(fraction){rate}, format=(string)NV12 ! "
            f"{converter} ! video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
            f"videoconvert ! video/x-raw, format=(string)BGR ! {NEWEST_FRAME_APPSINK}")


def raw_pipeline(uri: str) -> str:
    """The pipeline of a `gst://PIPELINE` source, checked before GStreamer sees it.

    It must end in an `appsink` (OpenCV reads frames from it) and hand over BGR or a format OpenCV
    converts (BGR, GRAY8; BGRx/BGRA are reduced to BGR by the reader). An appsink without settings
    gets the newest-frame ones, as csi:// has: a live pipeline must not queue stale frames.
    """
    pipeline = uri.split("://", 1)[1].strip()
    if not pipeline:
        raise SourceError(f"{uri}: expected gst://PIPELINE, e.g. "
                          "gst://videotestsrc ! videoconvert ! video/x-raw,format=BGR ! appsink")
    elements = [part.strip() for part in pipeline.split("!")]
    last = elements[-1].split()
    if not last or last[0] != "appsink":
        raise SourceError(f"{uri}: a gst:// pipeline must end in an appsink (OpenCV reads its frames there), "
                          f"not '{elements[-1]}'")
    if len(last) == 1:
        elements[-1] = NEWEST_FRAME_APPSINK
    return " ! ".join(elements)
