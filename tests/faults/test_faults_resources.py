"""Fault injection, issue 30 family 3 (beyond threads): `predict` never waits or reads without a bound.

Planted: a named pipe nobody writes to, as an image and as a video; a PNG whose header claims 3.6
billion pixels (OpenCV refused it with an exception that aborted the whole folder); a file larger than
any image. Each is skipped with one line naming it (the run goes on), or, alone, fails in one line.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.runtime import image_files

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (the pixel data does not follow)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def release_pipes():
    """Afterwards, a writer opens and closes each pipe, so a thread blocked in open() returns."""
    pipes: list[Path] = []
    yield pipes
    for pipe in pipes:
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    deadline = time.monotonic() + 10
    while any(t.name == "edgeseg-open-source" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)


def predict(capsys, model: Path, source: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["predict", "--model", str(model), "--source", str(source), "--out", str(out), "--no-progress",
                 "--threads", "1", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_a_huge_header_is_skipped_and_the_folder_goes_on(tmp_path, model, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_huge.png").write_bytes(png_header(60000, 60000))
    cv2.imwrite(str(folder / "b_ok.png"), np.zeros((30, 40, 3), np.uint8))
    out = tmp_path / "out"
    code, stdout, err = predict(capsys, model, folder, out)
    assert code == 0
    assert (f"edgeseg predict: skipped {folder / 'a_huge.png'}: an image OpenCV refuses to decode "
            "(pixels <= CV_IO_MAX_IMAGE_PIXELS)") in err.splitlines()
    assert "1 inputs from" in stdout and "1 skipped" in stdout
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["b_ok.png"]


def test_a_named_pipe_as_the_image_is_refused_without_opening_it(tmp_path, model, capsys, release_pipes):
    pipe = tmp_path / "frame.png"
    os.mkfifo(pipe)
    release_pipes.append(pipe)
    out = tmp_path / "out"
    started = time.monotonic()
    code, _, err = predict(capsys, model, pipe, out)
    assert time.monotonic() - started < 10
    assert code == 2
    assert err.splitlines()[-1] == (f"edgeseg predict: error: {pipe}: nothing could be processed (1 skipped: {pipe}: "
                                    "not a regular file (a named pipe, a device or a socket))")
    assert not out.exists()


def test_a_named_pipe_as_the_video_times_out_in_one_line(tmp_path, model, capsys, release_pipes):
    pipe = tmp_path / "camera.mp4"
    os.mkfifo(pipe)
    release_pipes.append(pipe)
    out = tmp_path / "out"
    started = time.monotonic()
    code, _, err = predict(capsys, model, pipe, out, "--first-frame-timeout", "0.5")
    assert time.monotonic() - started < 10
    assert code == 2
    assert err.splitlines()[-1] == (
        f"edgeseg predict: error: {pipe}: nothing could be processed (1 skipped: {pipe}: delivered no frame within "
        "0.5 s (a busy camera, a silent stream, a pipe nobody writes to?); --first-frame-timeout sets the wait)")
    assert not out.exists()


def test_a_file_past_the_size_bound_is_skipped_unread(tmp_path, model, capsys, monkeypatch):
    monkeypatch.setattr(image_files, "MAX_IMAGE_BYTES", 1000)
    folder = tmp_path / "photos"
    folder.mkdir()
    big = folder / "a_big.png"
    cv2.imwrite(str(big), np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "b_small.png"), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    code, _, err = predict(capsys, model, folder, out)
    assert code == 0
    assert f"edgeseg predict: skipped {big}: 0 MB, larger than an image edgeseg reads (0 MB)" in err.splitlines()
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["b_small.png"]


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])  # inf: issue 30 campaign (0 is how to wait forever)
def test_a_bad_first_frame_timeout_is_one_line(tmp_path, model, capsys, value):
    code, _, err = predict(capsys, model, tmp_path, tmp_path / "out", "--first-frame-timeout", value)
    assert code == 2
    assert err == (f"edgeseg predict: error: --first-frame-timeout {float(value):g}: must be 0 (wait forever) or a "
                   "finite number of seconds")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("width, height", [(2**31 - 1, 2), (0, 0), (100000, 1)])
def test_a_header_libpng_rejects_is_one_line_with_no_library_chatter(tmp_path, model, capfd, width, height):
    image = tmp_path / "bad.png"
    image.write_bytes(png_header(width, height))
    code = main(["predict", "--model", str(model), "--source", str(image), "--out", str(tmp_path / "out"),
                 "--no-progress", "--threads", "1"])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2
    # libpng's own "warning: Image width exceeds user limit" / "error: Invalid IHDR data" went to fd 2 before
    assert err == [f"edgeseg predict: skipped {image}: a corrupt or unsupported image",
                   f"edgeseg predict: error: {image}: nothing could be processed (1 skipped: {image}: a corrupt or "
                   "unsupported image)"]
    assert not (tmp_path / "out").exists()
