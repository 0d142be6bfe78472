"""Fault injection, issue 30 family 5 (what was left): values refused in one line, before any work, in the one
place each option is read, and never silently ignored.

- `--calib-percentile` is a number above 50 and at most 100, and only with `--calib-method percentile`
  (convert.request: it was unchecked, and ignored with every other method);
- a label-name file (`convert --labels`, a data set's `labels.txt`, a split list) that is not UTF-8, empty, a
  folder or missing is one line naming it (edgeseg.label_names; a UnicodeDecodeError used to end as `internal
  error`); `--labels` with weights that carry their own names is refused instead of ignored;
- `train --lr` beyond any use (1e38 overflowed inside AdamW) and `make-scenes --seed -1` / `--size 100000`
  (an `internal error`, and an out-of-memory that left a half set) are refused before any work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeseg.scenes import SceneConfig, write_voc_dataset
from tests.conftest import SAMPLE_CHECKPOINT
from tests.faults.campaign_kit import one_line_error, run_cli, tree

PERCENTILE_RANGE = "must be a number above 50 and at most 100"


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return write_voc_dataset(tmp_path_factory.mktemp("set") / "voc", train=2, val=1, progress=False,
                             config=SceneConfig(height=64, width=64))


@pytest.mark.parametrize("value, message", [
    ("nan", f"--calib-percentile nan: {PERCENTILE_RANGE}"),
    ("inf", f"--calib-percentile inf: {PERCENTILE_RANGE}"),
    ("-5", f"--calib-percentile -5.0: {PERCENTILE_RANGE}"),
    ("0", f"--calib-percentile 0.0: {PERCENTILE_RANGE}"),
    ("50", f"--calib-percentile 50.0: {PERCENTILE_RANGE}"),
    ("100.5", f"--calib-percentile 100.5: {PERCENTILE_RANGE}"),
])
def test_a_percentile_outside_its_range_is_refused_before_any_work(tmp_path, capsys, value, message):
    out = tmp_path / "out"
    code, err = run_cli(capsys, "convert", "--precision", "int8", "--calib", "synthetic:2", "--calib-method",
                        "percentile", "--calib-percentile", value, "--resolution", "64", "--out", out)
    assert code == 2 and one_line_error(err, "convert") == message
    assert not out.exists()


@pytest.mark.parametrize("method", [[], ["--calib-method", "minmax"], ["--calib-method", "entropy"]])
def test_a_percentile_without_the_percentile_method_is_refused_not_ignored(tmp_path, capsys, method):
    out = tmp_path / "out"
    code, err = run_cli(capsys, "convert", "--precision", "int8", "--calib", "synthetic:2", *method,
                        "--calib-percentile", "99.9", "--resolution", "64", "--out", out)
    assert code == 2
    assert one_line_error(err, "convert") == "--calib-percentile 99.9: applies to --calib-method percentile only"
    assert not out.exists()


def _labels(tmp_path: Path, kind: str) -> tuple[Path, str]:
    path = tmp_path / "labels.txt"
    if kind == "latin-1":
        path.write_bytes("background\ncaf\xe9\n".encode("latin-1"))
        return path, (f"{path}: label names are not UTF-8 text (byte 0xe9 at offset 14); save the file as UTF-8, "
                      "one name per line")
    if kind == "empty":
        path.write_text("\n  \n")
        return path, f"{path}: is empty; name the classes, one per line, background first"
    if kind == "folder":
        path.mkdir()
        return path, f"{path}: is a folder, not a file of label names"
    return path, f"{path}: cannot read the label names (No such file or directory)"


@pytest.mark.parametrize("kind", ["latin-1", "empty", "folder", "missing"])
def test_a_labels_file_that_cannot_be_read_is_one_line_before_the_weights_load(tmp_path, capsys, kind):
    labels, message = _labels(tmp_path, kind)
    weights = tmp_path / "state.pth"
    weights.write_bytes(b"never read: the labels come first")
    out = tmp_path / "out"
    code, err = run_cli(capsys, "convert", "--weights", weights, "--labels", labels, "--resolution", "64",
                        "--out", out)
    assert code == 2 and one_line_error(err, "convert") == message
    assert not out.exists()


@pytest.mark.parametrize("weights", ["sample", "torchvision"])
def test_labels_with_weights_that_name_their_classes_are_refused(tmp_path, capsys, weights):
    labels = tmp_path / "names.txt"
    labels.write_text("a\nb\n")
    code, err = run_cli(capsys, "convert", "--weights", weights, "--labels", labels, "--out", tmp_path / "out")
    assert code == 2
    assert one_line_error(err, "convert") == (f"--labels {labels}: --weights {weights} carries its own label names; "
                                              "leave --labels out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["names.txt"]


def test_labels_with_an_edgeseg_checkpoint_file_are_refused_not_ignored(tmp_path, capsys):
    labels = tmp_path / "names.txt"
    labels.write_text("a\nb\n")
    copy = tmp_path / "mine.pt"
    shutil.copyfile(SAMPLE_CHECKPOINT, copy)
    out = tmp_path / "out"
    code, err = run_cli(capsys, "convert", "--weights", copy, "--labels", labels, "--resolution", "64", "--out", out)
    assert code == 2
    assert one_line_error(err, "convert") == (f"--labels {labels}: {copy} is an edgeseg checkpoint, which carries its "
                                              "own label names; leave --labels out")
    assert tree(out) == []


def test_a_labels_file_with_a_byte_order_mark_names_the_classes_without_it(tmp_path):
    import torch

    from edgeseg.models.weights import load_weights
    from edgeseg.models.zoo import build_model

    weights = tmp_path / "state.pth"
    torch.save(build_model("lraspp_mobilenet_v3_large", num_classes=2).state_dict(), weights)
    labels = tmp_path / "names.txt"
    labels.write_bytes("\ufeffbackground\nthing\n".encode())
    loaded = load_weights(str(weights), arch="lraspp_mobilenet_v3_large", labels_file=labels)
    assert loaded.labels == ("background", "thing")


@pytest.mark.parametrize("damage, message", [
    ("labels-latin-1", "{root}/labels.txt: label names are not UTF-8 text (byte 0xe9 at offset 14); save the file "
                       "as UTF-8, one name per line"),
    ("labels-empty", "{root}/labels.txt: is empty; name the classes, one per line, background first"),
    ("split-binary", "{root}/ImageSets/Segmentation/train.txt: split list is not UTF-8 text (byte at offset 0); "
                     "one image id per line"),
])
def test_train_refuses_an_unreadable_name_file_before_training(tmp_path, capsys, small_set, damage, message):
    root = tmp_path / "voc"
    shutil.copytree(small_set, root)
    if damage == "labels-latin-1":
        (root / "labels.txt").write_bytes("background\ncaf\xe9\n".encode("latin-1"))
    elif damage == "labels-empty":
        (root / "labels.txt").write_text("")
    else:
        (root / "ImageSets" / "Segmentation" / "train.txt").write_bytes(b"\xff\xfe\x00t\x00r")
    out = tmp_path / "run" / "m.pt"
    code, err = run_cli(capsys, "train", "--data", root, "--resolution", "64", "--init", "scratch", "--workers", "0",
                        "--out", out)
    assert code == 2 and one_line_error(err, "train") == message.format(root=root)
    assert tree(tmp_path / "run") == []


@pytest.mark.parametrize("value", ["1e38", "1e4", "1000.5"])
def test_a_learning_rate_beyond_any_use_is_refused_before_reading_data(tmp_path, capsys, value):
    code, err = run_cli(capsys, "train", "--data", tmp_path / "nowhere", "--lr", value, "--out", tmp_path / "m.pt")
    assert code == 2
    assert one_line_error(err, "train").startswith(f"--lr {float(value):g}: at most 1000 (AdamW moves each weight")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed -1: must be 0 or more"),
    (["--size", "100000"], "scene size 100000x100000: each side must be from 16 to 4096 pixels"),
    (["--size", "4097"], "scene size 4097x4097: each side must be from 16 to 4096 pixels"),
    (["--size", "8"], "scene size 8x8: each side must be from 16 to 4096 pixels"),
    (["--train", "-1"], "{out}: asked for -1 train and 200 val scenes; need at least one"),
    (["--train", "0", "--val", "0"], "{out}: asked for 0 train and 0 val scenes; need at least one"),
])
def test_make_scenes_refuses_a_bad_value_before_writing_anything(tmp_path, capsys, argv, message):
    out = tmp_path / "scenes"
    code, err = run_cli(capsys, "make-scenes", "--out", out, *argv)
    assert code == 2 and one_line_error(err, "make-scenes") == message.format(out=out)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    from tests.fault_kit import write_tiny_pair

    return write_tiny_pair(tmp_path / "model")


@pytest.mark.parametrize("argv, message", [
    (["--save", ""], "--save '': is empty; give comma-separated names such as mask,overlay"),
    (["--save", "mask,,overlay"], "--save 'mask,,overlay': holds an empty name; give comma-separated names such as "
                                  "mask,overlay"),
    (["--classes", ""], "--classes '': is empty; give comma-separated names such as disc,box"),
])
def test_predict_refuses_an_empty_list_or_name_instead_of_dropping_it(tmp_path, capsys, tiny_model, argv, message):
    # Issue 30 campaign: each was exit 0 (an empty --classes kept every class, as if it were not given).
    out = tmp_path / "out"
    code, err = run_cli(capsys, "predict", "--model", tiny_model, "--source", tiny_model, "--out", out, *argv)
    assert code == 2 and one_line_error(err, "predict") == message
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_demo_refuses_a_camera_rate_that_is_not_a_finite_number(tmp_path, capsys, tiny_model, value):
    # A NaN rate passed `value <= 0` and reached the camera's settings (ignored for a file, silently).
    code, err = run_cli(capsys, "demo", "--model", tiny_model, "--source", tiny_model, "--headless",
                        "--input-rate", value)
    assert code == 2 and one_line_error(err, "demo") == f"--input-rate {float(value)}: must be a positive number"
    assert tree(tmp_path) == ["model", "model/tiny.onnx", "model/tiny.onnx.json"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_train_refuses_max_steps_per_epoch_below_one(tmp_path, capsys, small_set, value):
    # -3 trained every epoch on no batch at all and published the initial weights with exit 0.
    out = tmp_path / "run" / "m.pt"
    code, err = run_cli(capsys, "train", "--data", small_set, "--resolution", "64", "--init", "scratch",
                        "--max-steps-per-epoch", value, "--out", out)
    assert code == 2 and one_line_error(err, "train") == f"--max-steps-per-epoch {value}: must be 1 or more"
    assert not out.parent.exists()


@pytest.mark.parametrize("argv, message", [
    (["--target", "host-cpu", "--precision", "int8", "--calib", "synthetic:2", "--int8-io", "uint8"],
     "--int8-io uint8: only a TFLite model (the android-* targets) has integer input/output; host-cpu takes and "
     "gives float"),
    (["--target", "intel-cpu", "--int8-io", "int8"],
     "--int8-io int8: only a TFLite model (the android-* targets) has integer input/output; intel-cpu takes and "
     "gives float"),
    (["--target", "host-cpu", "--no-region-split"],
     "--no-region-split: only android-cpu (LiteRT with XNNPACK) splits dilated convolutions by region; host-cpu's "
     "export keeps them whole already"),
    (["--target", "android-gpu", "--no-region-split"],
     "--no-region-split: only android-cpu (LiteRT with XNNPACK) splits dilated convolutions by region; "
     "android-gpu's export keeps them whole already"),
])
def test_a_graph_option_the_target_does_not_take_is_refused_not_ignored(tmp_path, capsys, argv, message):
    code, err = run_cli(capsys, "convert", *argv, "--out", tmp_path / "out")
    assert code == 2 and one_line_error(err, "convert") == message
    assert tree(tmp_path) == []  # refused before the output folder was made
