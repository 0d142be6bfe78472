"""Fault injection, issue 30 family 4 (class 4 of the first campaign):
a sink that cannot write makes the command fail in one line, and no
frame is reported as written that cannot be read back.

A full disk is simulated by patched writers: OpenCV's video writer whose file loses its tail (what
ENOSPC leaves: OpenCV itself reports nothing), and a frame file whose write raises ENOSPC.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.runtime import sinks
from tests.constants import REPO
from tests.fault_kit import write_grey_frames


@pytest.fixture
def source(tmp_path) -> Path:
    return write_grey_frames(tmp_path / "frames", 6, 30)


def demo(model: Path, source: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["demo", "--model", str(model), "--source", str(source), "--headless", "--threads", "1", *extra])
    captured = capsys.readouterr()
    # stderr minus tqdm's progress bar (drawn with carriage returns and cleared on exit in a terminal)
    lines = [line for line in captured.err.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("demo:")]
    return code, captured.out, "\n".join(lines)


class TailLosingWriter:
    """cv2.VideoWriter whose file loses its last 40 % on release, as a disk that filled up would leave it."""

    fourcc = staticmethod(cv2.VideoWriter.fourcc)

    def __init__(self, path: str, *args) -> None:
        self.path = path
        self.real = REAL_WRITER(path, *args)

    def isOpened(self) -> bool:  # OpenCV's name
        return self.real.isOpened()

    def write(self, frame: np.ndarray) -> None:
        self.real.write(frame)

    def release(self) -> None:
        self.real.release()
        size = os.path.getsize(self.path)
        os.truncate(self.path, int(size * 0.6))


REAL_WRITER = cv2.VideoWriter


def test_full_disk_video_fails_in_one_line_and_publishes_nothing(model, source, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sinks.cv2, "VideoWriter", TailLosingWriter)
    out = tmp_path / "out.mp4"
    code, stdout, err = demo(model, source, capsys, "--save", str(out))
    assert code == 2
    assert err == (f"edgeseg demo: error: --save {out}: only 0 of 6 frames could be read back from the written video "
                   "(disk full, or the folder went away?); nothing was kept")
    assert "wrote" not in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "model"]  # no video, no temporary


def test_healthy_video_is_read_back_and_reported(model, source, tmp_path, capsys):
    out = tmp_path / "out.avi"
    code, stdout, err = demo(model, source, capsys, "--save", str(out))
    assert code == 0, err
    assert f"wrote {out} (6 frames" in stdout
    assert sinks.readable_frames(out, 6) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "model", "out.avi"]


def test_full_disk_frames_fail_in_one_line_naming_the_frame(model, source, tmp_path, capsys, monkeypatch):
    written = []

    def open_that_fills_up(path, mode="r", *args, **kwargs):
        if "w" in mode and len(written) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path)
        return open(path, mode, *args, **kwargs)  # the builtin: only the sinks module's open is patched

    monkeypatch.setattr(sinks, "open", open_that_fills_up, raising=False)
    frames = tmp_path / "rendered"
    code, _, err = demo(model, source, capsys, "--save-frames", str(frames))
    assert code == 2
    # a folder source's frames keep their images' names (00.png, 01.png, ...)
    assert err == (f"edgeseg demo: error: --save-frames {frames}: cannot write 02.png "
                   "(No space left on device); 2 frames were written before it")
    assert sorted(p.name for p in frames.iterdir()) == ["00.png", "01.png"]  # no temporaries


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nothing can write into)")
def test_save_into_an_unwritable_place_is_one_line(model, source, capsys):
    code, _, err = demo(model, source, capsys, "--save", "/proc/x.mp4")
    assert code == 2 and "\n" not in err
    assert err.startswith("edgeseg demo: error: --save /proc/x.mp4: cannot create the video file there (")


KILLED_WHILE_RECORDING = """
import os, sys
import numpy as np
from edgeseg.runtime.sinks import VideoFileSink
sink = VideoFileSink(sys.argv[1], fps=10)
for _ in range(5):
    sink.write(np.zeros((48, 64, 3), np.uint8))
os._exit(137)  # SIGKILL: close() never runs
"""


def test_video_temporary_of_a_killed_run_is_removed_by_the_next_run(model, source, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run([sys.executable, "-c", KILLED_WHILE_RECORDING, str(out)], env=env,
                          check=False).returncode == 137
    stale = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.mp4.")]
    assert len(stale) == 1 and not out.exists()
    code, _, err = demo(model, source, capsys, "--save", str(out))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "model", "out.mp4"]
