"""Fault injection, issue 30 family 3 (class 7 of the first campaign):
a source that never delivers a frame times out in one line.

Planted: a named pipe nobody writes to (opening it blocks in the OS, with no timeout of its own).
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from edgeseg.cli import main
from edgeseg.errors import SourceError
from edgeseg.runtime.capture import SourceOptions, open_source
from tests.fault_kit import write_tiny_pair

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")


@pytest.fixture
def silent_pipe(tmp_path):
    """A named pipe with no writer; afterwards a writer opens and closes it, so the blocked open returns."""
    pipe = tmp_path / "camera.mp4"
    os.mkfifo(pipe)
    yield pipe
    try:
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only while a reader is blocked in open
        os.close(fd)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while any(t.name == "edgeseg-open-source" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_silent_source_times_out_with_one_line(silent_pipe):
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        open_source(str(silent_pipe), SourceOptions(first_frame_timeout_s=0.5))
    assert time.monotonic() - started < 5
    assert str(info.value) == (f"{silent_pipe}: delivered no frame within 0.5 s (a busy camera, a silent stream, a "
                               "pipe "
                               "nobody writes to?); --first-frame-timeout sets the wait")


def test_demo_on_a_silent_source_exits_2_and_writes_nothing(silent_pipe, tmp_path, capsys):
    model = write_tiny_pair(tmp_path / "model")
    out = tmp_path / "out.mp4"
    code = main(["demo", "--model", str(model), "--source", str(silent_pipe), "--headless", "--save", str(out),
                 "--first-frame-timeout", "0.5"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"edgeseg demo: error: {silent_pipe}: delivered no frame within 0.5 s (a busy camera, a silent "
                   "stream, a pipe nobody writes to?); --first-frame-timeout sets the wait")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camera.mp4", "model"]


def test_negative_timeout_is_refused(tmp_path, capsys):
    code = main(["demo", "--model", str(tmp_path), "--source", "0", "--first-frame-timeout", "-1"])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("edgeseg demo: error: --first-frame-timeout -1: "
                                               "must be 0 (wait forever) or a finite number of seconds")


def test_a_source_that_opens_in_time_is_unaffected(tmp_path):
    import cv2
    import numpy as np

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    source = open_source(str(image), SourceOptions(first_frame_timeout_s=5))
    assert source.read().shape == (8, 8, 3)


def test_open_errors_still_surface_through_the_timeout(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(SourceError, match="broken.mp4: (cannot open|opened but delivered no frame)"):
        open_source(str(broken), SourceOptions(first_frame_timeout_s=5))


def test_zero_waits_forever_option_maps_to_none():
    import argparse

    from edgeseg.runtime.capture import add_source_arguments, source_options_from_args

    parser = argparse.ArgumentParser()
    add_source_arguments(parser)
    args = parser.parse_args(["--source", "x", "--first-frame-timeout", "0"])
    assert source_options_from_args(args).first_frame_timeout_s is None
    assert source_options_from_args(parser.parse_args(["--source", "x"])).first_frame_timeout_s == 15.0

