"""Sources by URI and the capture thread: lossless files, newest-frame cameras, bounded reconnects."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.errors import SourceError
from edgeseg.runtime.capture import SourceOptions, open_source, parse_source
from edgeseg.runtime.frame_grabber import END_OF_SOURCE, SOURCE_LOST, FrameGrabber
from edgeseg.runtime.frame_sources import FrameSource, ImageFilesSource, OpenCVSource
from edgeseg.runtime.gstreamer import csi_pipeline, gstreamer_available

LEVELS = [20, 60, 100, 140, 180, 220]  # frame i is a flat grey of LEVELS[i]: survives video compression


def write_grey_video(path: Path, levels: list[int], size=(64, 48), fps=10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for level in levels:
        writer.write(np.full((size[1], size[0], 3), level, np.uint8))
    writer.release()
    return path


def level_of(frame: np.ndarray) -> int:
    """The LEVELS entry a decoded frame shows."""
    return min(LEVELS, key=lambda v: abs(float(frame.mean()) - v))


@pytest.fixture(scope="module")
def grey_video(tmp_path_factory) -> Path:
    return write_grey_video(tmp_path_factory.mktemp("video") / "grey.avi", LEVELS)


class CountingLiveSource(FrameSource):
    """A fake camera: frame k is filled with k; `fail_after` frames, then reads fail until reopened."""

    live = True

    def __init__(self, *, period_s: float = 0.002, fail_after: int | None = None,
                 reopen_succeeds_on: int | None = None):
        self.uri = "fake://camera"
        self.period_s = period_s
        self.fail_after = fail_after
        self.reopen_succeeds_on = reopen_succeeds_on
        self.count = 0
        self.failed = False
        self.reopen_calls = 0
        self.closed = False

    def read(self):
        if self.failed or (self.fail_after is not None and self.count >= self.fail_after):
            self.failed = True
            return None
        time.sleep(self.period_s)
        frame = np.full((8, 8, 3), self.count % 256, np.uint8)
        self.count += 1
        return frame

    def reopen(self) -> bool:
        self.reopen_calls += 1
        if self.reopen_succeeds_on is not None and self.reopen_calls >= self.reopen_succeeds_on:
            self.failed = False
            self.fail_after = None
            return True
        return False

    def close(self) -> None:
        self.closed = True


def drain(grabber: FrameGrabber, limit: int = 1000, delay_s: float = 0.0):
    """Take frames until `limit` or the end of the source (a busy machine only makes it slower)."""
    frames = []
    deadline = time.monotonic() + 120
    while len(frames) < limit and time.monotonic() < deadline:
        item = grabber.next(timeout=1)
        if item is None:
            if grabber.end_reason is not None:
                break
            continue
        frames.append(item)
        time.sleep(delay_s)
    return frames


# -- files ---------------------------------------------------------------------------------

def test_video_file_delivers_every_frame_in_order_to_a_slow_consumer(grey_video):
    grabber = FrameGrabber(open_source(str(grey_video))).start()
    frames = drain(grabber, delay_s=0.03)
    grabber.stop()
    assert [level_of(f.image) for f in frames] == LEVELS
    assert [f.index for f in frames] == list(range(len(LEVELS)))
    assert grabber.dropped == 0
    assert grabber.end_reason == END_OF_SOURCE


def test_loop_starts_the_file_again(grey_video):
    grabber = FrameGrabber(open_source(str(grey_video), SourceOptions(loop=True)), SourceOptions(loop=True)).start()
    frames = drain(grabber, limit=2 * len(LEVELS) + 2)
    grabber.stop()
    assert [level_of(f.image) for f in frames] == LEVELS + LEVELS + LEVELS[:2]


def test_file_uri_scheme_is_accepted(grey_video):
    source = open_source(f"file://{grey_video}")
    assert source.fps == pytest.approx(10.0)
    assert level_of(source.read()) == LEVELS[0]
    source.close()


def test_realtime_file_is_paced_at_its_frame_rate_and_drops_like_a_camera(grey_video):
    options = SourceOptions(realtime=True)
    grabber = FrameGrabber(open_source(str(grey_video), options), options).start()
    started = time.perf_counter()
    while grabber.produced < 4:  # a "model" busy for a few frame periods: the older frames are dropped
        time.sleep(0.01)
    first = grabber.next(timeout=5)
    rest = drain(grabber)
    elapsed = time.perf_counter() - started
    grabber.stop()
    assert first.index >= 2 and grabber.dropped >= 2
    assert elapsed >= 0.45  # 6 frames at 10 fps take half a second, not the few ms decoding takes
    assert grabber.produced == len(LEVELS) and grabber.dropped + 1 + len(rest) == len(LEVELS)
    assert rest[-1].index == len(LEVELS) - 1


def test_image_folder_is_read_in_name_order_and_skips_unreadable_files(tmp_path, capsys):
    for name, level in (("b.png", 100), ("a.png", 20), ("c.jpg", 180)):
        cv2.imwrite(str(tmp_path / name), np.full((10, 12, 3), level, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    source = open_source(str(tmp_path))
    assert isinstance(source, ImageFilesSource)
    levels = []
    while (frame := source.read()) is not None:
        levels.append(int(round(frame.mean())))
    assert levels[0] == 20 and levels[1] == 100 and abs(levels[2] - 180) <= 2
    assert len(levels) == 3
    assert "broken.png: not a readable image, skipped" in capsys.readouterr().err


def test_single_image_with_loop_repeats(tmp_path):
    path = tmp_path / "one.png"
    cv2.imwrite(str(path), np.full((10, 12, 3), 77, np.uint8))
    options = SourceOptions(loop=True)
    grabber = FrameGrabber(open_source(str(path), options), options).start()
    frames = drain(grabber, limit=5)
    grabber.stop()
    assert len(frames) == 5 and all(int(f.image.mean()) == 77 for f in frames)


# -- bad sources: one SourceError naming the source -------------------------------------------

@pytest.mark.parametrize("uri, words", [
    ("/no/such/clip.mp4", "/no/such/clip.mp4: no such file"),
    ("ftp://example.com/x.mp4", "unknown source scheme 'ftp://'"),
    ("csi://front", "expected csi://N"),
    ("v4l2:///dev/video97", "no such camera device"),
    ("/dev/video98", "no such camera device"),
    ("", "empty --source"),
])
def test_unusable_uri_is_a_source_error(uri, words):
    with pytest.raises(SourceError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        open_source(uri)


def test_file_that_is_not_a_video_is_a_source_error(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(SourceError, match="clip.mp4"):
        open_source(str(bad))


def test_unreadable_image_and_empty_folder_are_source_errors(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(SourceError, match="photo.jpg: not a readable image"):
        open_source(str(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(empty))


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer: csi:// would try the camera")
def test_csi_without_gstreamer_names_the_loaded_opencv_and_what_to_do():
    import re

    import cv2

    with pytest.raises(SourceError) as caught:
        open_source("csi://0")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"csi://0: the loaded OpenCV {cv2.__version__} ({cv2.__file__}) was built without "
                              "GStreamer")
    assert re.search(r"--system-site-packages .*docs/jetson\.md", message)


def test_video_io_backends_read_opencvs_build_information():
    from edgeseg.runtime.gstreamer import video_io_backends

    jetpack_like = ("  Video I/O:\n    DC1394:                      NO\n    FFMPEG:                      NO\n"
                    "    GStreamer:                   YES (1.20.3)\n    v4l/v4l2:                    YES "
                    "(linux/videodev2.h)\n")
    assert video_io_backends(jetpack_like) == {"gstreamer": True, "v4l2": True, "ffmpeg": False}
    assert video_io_backends("") == {"gstreamer": False, "v4l2": False, "ffmpeg": False}
    assert video_io_backends()["gstreamer"] == gstreamer_available()


def test_csi_pipeline_carries_sensor_size_and_rate_and_keeps_only_the_newest_buffer():
    pipeline = csi_pipeline(1, 1920, 1080, 60)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=(int)1920, height=(int)1080, framerate=(fraction)60/1" in pipeline
    assert pipeline.endswith("appsink drop=true max-buffers=1 sync=false")
    assert "framerate=(fraction)29970/1000" in csi_pipeline(0, 1280, 720, 29.97)


@pytest.mark.parametrize("uri, target", [("0", 0), ("2", 2)])
def test_camera_index_is_a_live_v4l2_source(uri, target):
    source = parse_source(uri, SourceOptions(width=640, height=480, fps=30))
    assert isinstance(source, OpenCVSource) and source.live and source.target == target
    assert source.requested == (640, 480, 30)


@pytest.mark.parametrize("uri",
                         ["rtsp://192.0.2.1:8554/cam", "http://192.0.2.1/stream.mjpg", "https://192.0.2.1/x.m3u8"])
def test_network_streams_are_live_ffmpeg_sources(uri):
    source = parse_source(uri)
    assert isinstance(source, OpenCVSource) and source.live and source.target == uri
    assert source.api == cv2.CAP_FFMPEG
    # Bounded waits: a stalled stream is noticed (and reconnected) instead of blocking for good.
    assert source.params == [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]


def test_unreachable_stream_is_a_source_error():
    with pytest.raises(SourceError,
                       match=r"rtsp://127\.0\.0\.1:9/cam: cannot open \(is the stream up and reachable\?\)"):
        open_source("rtsp://127.0.0.1:9/cam")  # the discard port: nothing streams there


# -- the capture thread on live sources -------------------------------------------------------

def test_live_source_hands_over_the_newest_frame_and_counts_the_dropped_ones():
    source = CountingLiveSource(period_s=0.001)
    grabber = FrameGrabber(source).start()
    taken = []
    for _ in range(4):
        target = grabber.produced + 5
        while grabber.produced < target:  # the "model" is busy while five frames arrive
            time.sleep(0.002)
        seen = grabber.produced
        item = grabber.next(timeout=5)
        # The newest frame (the one just read may still be on its way into the slot), not the
        # oldest one waiting: frames do not queue up behind a slow model.
        assert item.index >= seen - 2
        assert int(item.image[0, 0, 0]) == item.index % 256
        taken.append(item)
    grabber.stop()
    assert grabber.dropped >= 4 * 3
    # Every frame read was either handed over, dropped, or is the one still waiting in the slot.
    assert grabber.produced - grabber.dropped - len(taken) in (0, 1)
    assert source.closed


def test_prepare_runs_on_the_capture_thread():
    threads = []

    def prepare(frame):
        threads.append(threading.current_thread().name)
        return float(frame.mean()) + 0.5

    grabber = FrameGrabber(CountingLiveSource(), prepare=prepare).start()
    item = grabber.next(timeout=5)
    grabber.stop()
    assert item.prepared == float(item.image.mean()) + 0.5
    assert set(threads) == {"edgeseg-capture"}


def test_lost_live_source_is_retried_a_bounded_number_of_times_then_ends():
    source = CountingLiveSource(fail_after=3)
    messages = []
    options = SourceOptions(reconnect_attempts=3, reconnect_delay_s=0.01)
    grabber = FrameGrabber(source, options, on_message=messages.append).start()
    frames = drain(grabber, delay_s=0.02)
    grabber.stop()
    assert 1 <= len(frames) <= 3
    assert source.reopen_calls == 3
    assert messages == [f"fake://camera: stopped delivering frames; reconnecting ({k}/3)" for k in (1, 2, 3)]
    assert grabber.end_reason == (f"{SOURCE_LOST}: fake://camera stopped delivering frames "
                                  "and did not come back after 3 reconnect attempts")


def test_live_source_that_comes_back_keeps_delivering():
    source = CountingLiveSource(fail_after=2, reopen_succeeds_on=2)
    messages = []
    options = SourceOptions(reconnect_attempts=5, reconnect_delay_s=0.01)
    grabber = FrameGrabber(source, options, on_message=messages.append).start()
    frames = drain(grabber, limit=6, delay_s=0.005)
    grabber.stop()
    assert len(frames) == 6 and grabber.end_reason is None
    assert source.reopen_calls == 2 and messages[-1] == "fake://camera: reconnected"
