"""Fault injection, issue 30 family 5: bad values are refused in one line before any work.

`train --batch-size 0`, `--lr nan`, `--workers -1` used to end as `internal error` inside PyTorch after
the data was read; `convert --verify-images -3` after 28 s of conversion; `--calib-images 0` or `-5`
were silently replaced by the default. Each option is checked in one place: the training numbers in
`TrainConfig.__post_init__`, conversion's counts in `convert.request.plan`, the bench's in
`benchmarks.planning.validate`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeseg.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("option, value, message", [
    ("--batch-size", "0", "--batch-size 0: must be 1 or more"),
    ("--batch-size", "-4", "--batch-size -4: must be 1 or more"),
    ("--lr", "nan", "--lr nan: must be a number above 0"),
    ("--lr", "inf", "--lr inf: must be a number above 0"),
    ("--lr", "0", "--lr 0.0: must be a number above 0"),
    ("--lr", "-0.1", "--lr -0.1: must be a number above 0"),
    ("--workers", "-1", "--workers -1: must be 0 (load in the training process) or more"),
    ("--crop", "0", "--crop 0: must be from 1 to 4096 pixels"),
    ("--crop", "100000", "--crop 100000: must be from 1 to 4096 pixels"),
    ("--scale-max", "inf", "--scale-min 0.6 --scale-max inf: need 0 < min <= max"),
    ("--scale-min", "nan", "--scale-min nan --scale-max 1.6: need 0 < min <= max"),
])
def test_train_refuses_a_bad_number_before_reading_data(tmp_path, capsys, option, value, message):
    out = tmp_path / "run" / "m.pt"
    code, err = run(capsys, "train", "--data", str(tmp_path / "nowhere"), option, value, "--out", str(out))
    assert code == 2
    assert err == f"edgeseg train: error: {message}"  # not the missing data folder: the value came first
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option, value", [("--verify-images", "-3"), ("--verify-images", "0"),
                                           ("--calib-images", "0"), ("--calib-images", "-5")])
def test_convert_refuses_a_bad_image_count_before_any_work(tmp_path, capsys, option, value):
    out = tmp_path / "out"
    code, err = run(capsys, "convert", "--precision", "int8", "--calib", "synthetic:4", option, value,
                    "--resolution", "64", "--out", str(out))
    assert code == 2
    assert err == f"edgeseg convert: error: {option} {value}: must be 1 or more"
    assert not out.exists()


@pytest.mark.parametrize("option, value", [("--verify-images", "-3"), ("--calib-images", "0"),
                                           ("--calib-images", "-5"), ("--images", "0"), ("--runs", "-1")])
def test_bench_refuses_a_bad_count_before_any_work(tmp_path, capsys, option, value):
    out = tmp_path / "bench"
    code, err = run(capsys, "bench", option, value, "--data", str(tmp_path / "nowhere"), "--out", str(out))
    assert code == 2
    assert err == f"edgeseg bench: error: {option} {value}: must be at least 1"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "nowhere", "--batch-size", "0", "--out", "m.pt"], "--batch-size 0: must be 1 or more"),
    (["convert", "--verify-images", "-3", "--out", "out"], "--verify-images -3: must be 1 or more"),
    (["convert", "--precision", "int8", "--calib", "calib", "--out", "out"], "calib: no images found"),
    (["convert", "--precision", "int8", "--calib", "fake", "--out", "out"], "fake: no readable calibration images"),
])
def test_the_refusal_comes_before_torch_is_imported(tmp_path, argv, message):
    # Calibration folders without a usable image: refused before export (they used to fail after it, 24-60 s in).
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "notes.txt").write_text("no images here")
    (tmp_path / "fake").mkdir()
    for name in ("a.jpg", "b.png"):
        (tmp_path / "fake" / name).write_text("not an image")
    script = ("import sys; from edgeseg.cli import main; code = main(sys.argv[1:]); "
              "print('torch' in sys.modules); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script, *argv], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stdout.strip() == "False"
    assert result.stderr.strip() == f"edgeseg {argv[0]}: error: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "fake"]


@pytest.mark.parametrize("content", [b"hello\n", b"", b'{"state_dict": 1}', bytes(range(256)) * 8,
                                     b"PK\x03\x04" + bytes(100),
                                     b"these are not weights\n",  # torch's unpickler: IndexError (issue 30 campaign)
                                     b"\x80\x02garbage"])
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, content):
    from edgeseg.errors import WeightsError
    from edgeseg.models.weights import load_weights

    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        load_weights(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: not a") and len(message.splitlines()) == 1


@pytest.mark.parametrize("text", ["hello\n", "these are not weights\n"])  # the second: an IndexError in torch
def test_convert_with_a_text_file_as_weights_is_one_line(tmp_path, capsys, text):
    weights = tmp_path / "weights.txt"
    weights.write_text(text)
    out = tmp_path / "out"
    code, err = run(capsys, "convert", "--weights", str(weights), "--resolution", "64", "--out", str(out))
    assert code == 2
    assert err == (f"edgeseg convert: error: {weights}: not a PyTorch checkpoint (neither a zip archive nor a pickle; "
                   "a text file?)")
    assert not out.exists() or list(out.iterdir()) == []  # (plan makes --out before the weights are read)
