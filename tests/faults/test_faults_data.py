"""Fault injection, issue 30 family 5 (class 6 of the first campaign):
requests that cannot succeed fail first, in one line, before any work.

Planted: a VOC folder without (or with an empty) labels.txt, a truncated image among good ones,
absurd resolutions, an unwritable `train --out`, a corrupt training state for `--resume`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.datasets import open_dataset
from edgeseg.errors import DatasetError


@pytest.fixture
def voc(synthetic_voc, tmp_path) -> Path:
    """A private copy of the 7-class synthetic VOC-layout set, for a test to damage."""
    return Path(shutil.copytree(synthetic_voc, tmp_path / "voc"))


def train(data: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["train", "--data", str(data), "--resolution", "64", "--batch-size", "2", "--epochs", "1",
                 "--max-steps-per-epoch", "1", "--workers", "0", "--out", str(out), *extra])
    return code, capsys.readouterr().err.strip()


def nothing_written(out: Path) -> bool:
    return not list(out.parent.glob(f"*{out.name}*"))


def test_voc_folder_without_labels_is_refused_for_training_of_other_classes(voc, tmp_path, capsys):
    (voc / "labels.txt").unlink()
    out = tmp_path / "m.pt"
    code, err = train(voc, out, capsys)
    assert code == 2
    assert err == (f"edgeseg train: error: {voc}: has no labels.txt, so its classes would be taken as VOC's 21, but "
                   "its masks use class ids up to 6 only; write labels.txt naming its classes, one per line, "
                   "background first")
    assert nothing_written(out)


def test_empty_labels_file_is_refused(voc, tmp_path, capsys):
    (voc / "labels.txt").write_text("\n \n")
    code, err = train(voc, tmp_path / "m.pt", capsys)
    assert code == 2
    assert err == (f"edgeseg train: error: {voc / 'labels.txt'}: is empty; "
                   "name the classes, one per line, background first")


def test_truncated_image_among_good_ones_is_found_by_the_data_check(voc, tmp_path, capsys):
    victim = sorted((voc / "JPEGImages").glob("train_*.jpg"))[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    out = tmp_path / "m.pt"
    code, err = train(voc, out, capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"edgeseg train: error: {victim}: not a readable image (image file is truncated")
    assert nothing_written(out)
    with pytest.raises(DatasetError, match="train_00005.jpg: not a readable image"):
        open_dataset(voc, "train").check(7)


@pytest.mark.parametrize("command", ["convert", "train"])
def test_absurd_resolution_is_refused_before_any_allocation(voc, tmp_path, capsys, command):
    if command == "convert":
        code = main(["convert", "--resolution", "100000", "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert err == ("edgeseg convert: error: --resolution 100000: each side must be at most 4096 "
                       "(standard sizes: 320, 640, 1024)")
    else:
        code = main(["train", "--data", str(voc), "--resolution", "100000", "--out", str(tmp_path / "m.pt")])
        err = capsys.readouterr().err.strip()
        assert err == "edgeseg train: error: --resolution 100000: must be a multiple of 8 from 64 to 4096"
    assert code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voc"]


@pytest.mark.parametrize("scales", [("0", "1.6"), ("1.8", "0.45"), ("-1", "2")])
def test_bad_scale_range_is_refused_before_training(voc, tmp_path, capsys, scales):
    code = main(["train", "--data", str(voc), "--scale-min", scales[0], "--scale-max", scales[1],
                 "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"edgeseg train: error: --scale-min {float(scales[0])} --scale-max {float(scales[1])}: "
                   "need 0 < min <= max")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voc"]


def test_train_out_under_a_file_is_refused_before_training(voc, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = train(voc, blocker / "m.pt", capsys)
    assert code == 2 and err == f"edgeseg train: error: {blocker}: exists and is not a folder"


def test_train_out_that_is_a_folder_is_refused(voc, tmp_path, capsys):
    code, err = train(voc, tmp_path, capsys)
    assert code == 2
    assert err == f"edgeseg train: error: --out {tmp_path}: is a folder; give a checkpoint file name such as model.pt"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nothing can write into)")
def test_train_out_in_an_unwritable_place_is_refused_before_training(voc, capsys):
    code, err = train(voc, Path("/proc/m.pt"), capsys)
    assert code == 2 and "\n" not in err
    assert err.startswith("edgeseg train: error: ") and "/proc" in err


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04 not a state", "not a readable PyTorch training state (truncated or corrupt: "),
    (b"these are not weights\n", "not a PyTorch training state (neither a zip archive nor a pickle; a text file?); "
                                  "start a new run without --resume"),
    (None, "training state lacks model, optimizer, epoch, history, init; start a new run without --resume"),
])
def test_corrupt_resume_state_is_one_line(voc, tmp_path, capsys, content, message):
    import torch

    out = tmp_path / "m.pt"
    state = out.with_name(out.name + ".train-state")
    if content is None:
        torch.save({"config": {}}, state)
    else:
        state.write_bytes(content)
    code, err = train(voc, out, capsys, "--resume")
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"edgeseg train: error: {state}: {message}")
    assert not out.exists()
