"""Fault injection, issue 30 family 3 (what was left): no input is read without a bound or decoded past what a
decoder allows, whatever the command.

A named pipe or a device given where a file is expected (`--labels`, `--weights`) is refused before it is
opened (reading one blocks, or never ends); a label file past 1 MiB is refused unread; an image whose header
claims 100000 x 100000 pixels is one line naming it in a training set and in a calibration folder, and a
skipped frame in the demo (it used to end as `internal error` from Pillow's DecompressionBombError or
OpenCV's pixel-limit assertion); a manifest's thread count far past the machine's cores is capped.
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.scenes import SceneConfig, write_voc_dataset
from tests.fault_kit import write_tiny_pair
from tests.faults.campaign_kit import one_line_error, run_cli, tree


def huge_header_png(path: Path, *, grey: bool = False) -> Path:
    """A valid 8x8 PNG whose IHDR claims 100000 x 100000 pixels (CRC fixed, so only the size is wrong)."""
    ok, png = cv2.imencode(".png", np.zeros((8, 8) if grey else (8, 8, 3), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return write_voc_dataset(tmp_path_factory.mktemp("set") / "voc", train=2, val=1, progress=False,
                             config=SceneConfig(height=64, width=64))


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_labels_file_that_is_a_pipe_or_a_device_is_refused_unread(tmp_path, capsys, fifo, kind):
    labels = fifo if kind == "fifo" else Path("/dev/zero")
    code, err = run_cli(capsys, "convert", "--weights", tmp_path / "state.pth", "--labels", labels, "--out",
                        tmp_path / "out")
    assert code == 2
    assert one_line_error(err, "convert") == (f"{labels}: is not a regular file (a named pipe, a device or a socket); "
                                              "give a text file of label names")
    assert not (tmp_path / "out").exists()


def test_a_labels_file_past_a_mebibyte_is_refused_unread(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    with open(labels, "wb") as fh:
        fh.truncate(2 << 20)  # sparse: its size is what is checked
    code, err = run_cli(capsys, "convert", "--weights", tmp_path / "state.pth", "--labels", labels, "--out",
                        tmp_path / "out")
    assert code == 2
    assert one_line_error(err, "convert") == (f"{labels}: 2097152 bytes is far too large for label names (at most "
                                              "1048576)")


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_weights_that_are_no_file_are_refused_before_any_work(tmp_path, capsys, fifo, kind):
    weights = {"fifo": fifo, "device": Path("/dev/zero"), "folder": tmp_path}[kind]
    code, err = run_cli(capsys, "convert", "--weights", weights, "--resolution", "64", "--out", tmp_path / "out")
    assert code == 2
    assert one_line_error(err, "convert") == f"{weights}: is not a weights file (a folder, a named pipe or a device)"


@pytest.mark.parametrize("where", ["SegmentationClass/train_00000.png", "JPEGImages/train_00001.jpg"])
def test_a_training_image_claiming_a_huge_size_is_one_line(tmp_path, capsys, small_set, where):
    root = tmp_path / "voc"
    shutil.copytree(small_set, root)
    huge_header_png(root / where, grey=where.startswith("Segmentation"))
    out = tmp_path / "run" / "m.pt"
    code, err = run_cli(capsys, "train", "--data", root, "--resolution", "64", "--init", "scratch", "--workers", "0",
                        "--out", out)
    assert code == 2
    message = one_line_error(err, "train")
    assert message.startswith(f"{root / where}: not a readable ")
    assert not out.parent.exists()


def test_the_decoders_refuse_a_huge_header_in_one_line(tmp_path):
    from edgeseg.datasets import read_image_rgb, read_mask
    from edgeseg.errors import DatasetError
    from edgeseg.palette_png import read_class_ids_png

    grey = huge_header_png(tmp_path / "grey.png", grey=True)
    for read in (read_image_rgb, read_mask, read_class_ids_png):
        with pytest.raises(DatasetError) as info:
            read(grey)
        assert str(info.value).startswith(f"{grey}: ") and "\n" not in str(info.value)


def test_a_calibration_folder_of_huge_headers_is_refused_before_export(tmp_path, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    huge_header_png(calib / "a.png")
    code, err = run_cli(capsys, "convert", "--precision", "int8", "--calib", calib, "--resolution", "64", "--out",
                        tmp_path / "out")
    assert code == 2 and one_line_error(err, "convert") == f"{calib}: no readable calibration images"


def test_the_demo_refuses_a_lone_huge_header_image_and_skips_one_in_a_folder(tmp_path, capsys):
    model = write_tiny_pair(tmp_path / "model")
    lone = huge_header_png(tmp_path / "huge.png")
    code, err = run_cli(capsys, "demo", "--model", model, "--source", lone, "--headless", "--threads", "1")
    assert code == 2
    assert one_line_error(err, "demo").startswith(f"{lone}: an image OpenCV refuses to decode (")
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((48, 64, 3), 90, np.uint8))
    huge_header_png(folder / "b.png")
    cv2.imwrite(str(folder / "c.png"), np.full((48, 64, 3), 30, np.uint8))
    code, err = run_cli(capsys, "demo", "--model", model, "--source", folder, "--headless", "--threads", "1",
                        "--save-frames", tmp_path / "frames")
    assert code == 0, err
    assert f"{folder / 'b.png'}: an image OpenCV refuses to decode" in err and "skipped" in err
    assert tree(tmp_path / "frames") == ["a.png", "c.png"]


@pytest.mark.parametrize("command", ["demo", "predict"])
def test_a_manifest_asking_for_100000_threads_runs_on_the_cores_there_are(tmp_path, capsys, command):
    model = write_tiny_pair(tmp_path / "model", runtime={"threads": 100_000})
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((48, 64, 3), 90, np.uint8))
    extra = ["--headless"] if command == "demo" else ["--out", tmp_path / "out"]
    code, err = run_cli(capsys, command, "--model", model, "--source", images, *extra)
    assert code == 0, err
