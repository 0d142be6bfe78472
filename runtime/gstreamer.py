"""OpenCV's capture back-ends, and the GStreamer pipeline of a Jetson CSI camera."""

from __future__ import annotations

import re

import cv2

CSI_DEFAULT = (1280, 720, 30.0)  # width, height, frames per second: a mode every Jetson CSI sensor has


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
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
            f"framerate=(fraction){rate}, format=(string)NV12 ! "
            f"nvvidconv ! video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
            f"videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")
