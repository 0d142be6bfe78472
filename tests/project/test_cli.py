"""Bad input at the command line: one line naming the problem, a non-zero exit, nothing in --out."""

import subprocess
import sys

import pytest
import torch

from edgeseg.cli import main
from edgeseg.conventions import DEFAULT_ARCH
from edgeseg.models.zoo import build_model


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resolution", "333"], "--resolution 333: each side must be a multiple of 8 and at least 64"),
        (["--resolution", "big"], "--resolution big: expected a number"),
        (["--target", "jetson-nano-2gb"], "unknown target 'jetson-nano-2gb'; choose one of:"),
        (["--precision", "int4"], "target host-cpu does not support precision 'int4'; it supports: fp32"),
        (["--weights", "missing.pth"], "missing.pth: weights file not found"),
    ],
)
def test_bad_convert_input_is_one_line_and_leaves_out_empty(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, err = run_cli(["convert", "--out", str(out), *args], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists() or list(out.iterdir()) == []


def test_truncated_weights(tmp_path, capsys, sample_checkpoint):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(sample_checkpoint.read_bytes()[:4096])
    out = tmp_path / "out"
    code, err = run_cli(["convert", "--weights", str(cut), "--out", str(out)], capsys)
    assert code == 2 and "cut.pt: not a readable PyTorch checkpoint" in err and len(err.splitlines()) == 1
    assert not out.exists() or list(out.iterdir()) == []


def test_state_dict_with_another_class_count_fails_at_build(tmp_path, capsys):
    # A deeplabv3 state dict whose classifier says 5 classes but whose aux-free keys are complete loads
    # with 5 classes; one whose tensors disagree with each other is refused.
    state = build_model(DEFAULT_ARCH, num_classes=5).state_dict()
    state["classifier.4.bias"] = torch.zeros(9)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    out = tmp_path / "out"
    code, err = run_cli(["convert", "--weights", str(path), "--out", str(out)], capsys)
    assert code == 2 and "bad.pth: does not fit deeplabv3_mobilenet_v3_large with 5 classes" in err
    assert not out.exists() or list(out.iterdir()) == []


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(["convert", "--out", str(blocker / "out")], capsys)
    assert code == 2 and "cannot create output folder" in err and len(err.splitlines()) == 1


def test_info_on_a_file_without_manifest(tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    code, err = run_cli(["info", str(model)], capsys)
    assert code == 2 and "model.onnx: has no manifest beside it" in err


def test_targets_lists_every_profile(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in ("host-cpu", "android-cpu", "android-gpu", "android-nnapi", "jetson-orin-nano",
                 "jetson-orin-nx", "jetson-agx-orin", "jetson-xavier-nx"):
        assert name in out


def test_console_script_help_runs_without_the_conversion_stack():
    # `edgeseg --help` must not import torch: a Jetson runs the demo without it.
    code = ("import sys, edgeseg.cli; p = edgeseg.cli.build_parser(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:3]")
    subprocess.run([sys.executable, "-c", code], check=True)
