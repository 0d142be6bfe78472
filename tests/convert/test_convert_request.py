"""`edgeseg convert`: the request is checked before any work, and artifact names carry the weights' identity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.convert.request import ConvertRequest, plan
from tests.constants import ANDROID_CPU, HOST_CPU, TINY_RESOLUTION

SMALL = ["--target", HOST_CPU, "--resolution", TINY_RESOLUTION, "--verify-images", "2"]


def _request(tmp_path: Path, **kw) -> ConvertRequest:
    base = dict(target=HOST_CPU, precision="fp32", resolution=TINY_RESOLUTION, weights="sample", out=tmp_path / "out")
    return ConvertRequest(**{**base, **kw})


@pytest.mark.parametrize("kw, message", [
    (dict(target=ANDROID_CPU, precision="int8"), "int8 needs calibration images"),
    (dict(target=ANDROID_CPU, precision="int8", calibration="synthetic:x"),
     "--calib synthetic:x: expected synthetic:N"),
    (dict(precision="int8", calibration="no/such/folder"), "--calib no/such/folder: no such folder"),
    (dict(target=ANDROID_CPU, precision="int8", calibration="synthetic:4", options={"calib_method": "entropy"}),
     "--calib-method entropy: applies to Q/DQ ONNX"),
    (dict(verify_data="no/such/images"), "--verify-data no/such/images: no such folder"),
    (dict(name="a/b"), "--name a/b: use letters"),
    (dict(output_kind="probs"), "--output probs: choose one of logits, mask"),
])
def test_bad_requests_are_refused_by_the_plan(tmp_path, kw, message):
    with pytest.raises(Exception) as info:
        plan(_request(tmp_path, **kw))
    assert message in str(info.value)


def test_refusal_imports_nothing_heavy(tmp_path):
    # int8 without --calib used to answer after the ASPP check (12-30 s); it must not even import torch.
    code = ("import sys\nfrom edgeseg.cli import main\n"
            f"code = main(['convert', '--target', 'android-cpu', '--precision', 'int8', '--out', {str(tmp_path)!r}])\n"
            "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorflow') if m in sys.modules)\n"
            "assert code == 2 and not heavy, (code, heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "int8 needs calibration images" in result.stderr


def test_names_carry_the_weights_identity(tmp_path, sample_checkpoint):
    assert plan(_request(tmp_path)).artifact.name == "sample-host-cpu-fp32-64.onnx"
    # The sample file named by path is still the sample model.
    assert plan(_request(tmp_path, weights=str(sample_checkpoint))).basename == "sample-host-cpu-fp32-64"
    other = tmp_path / "street_v2.pt"
    other.write_bytes(b"checked later, when loaded")
    masked = plan(_request(tmp_path, weights=str(other), output_kind="mask"))
    assert masked.basename == "street_v2-host-cpu-fp32-64-mask"
    assert plan(_request(tmp_path, weights=str(other), name="mine")).basename == "mine-host-cpu-fp32-64"
    tflite = plan(_request(tmp_path, target="android-gpu", precision="fp16"))
    assert tflite.artifact.name == "sample-android-gpu-fp16-64.tflite"


def _finetuned_checkpoint(path: Path) -> Path:
    """Other weights with the sample's architecture and labels: the sample with its last layer changed."""
    import torch

    from edgeseg.models.weights import load_weights, save_checkpoint

    sample = load_weights("sample")
    model = sample.build()
    with torch.no_grad():
        model.classifier[4].bias.add_(0.25)
    save_checkpoint(path, model, arch=sample.arch, labels=sample.labels, resolution=64)
    return path


@pytest.mark.slow
def test_two_weights_in_one_folder_and_no_silent_replacement(tmp_path, capsys):
    out = tmp_path / "out"
    tuned = _finetuned_checkpoint(tmp_path / "tuned.pt")
    from edgeseg.convert.pipeline import convert

    stages: list[str] = []
    convert(_request(tmp_path, verify_images=2, progress=False, on_stage=stages.append))
    assert stages == ["loading weights", "ASPP check", "export to onnx fp32", "verification"]
    assert main(["convert", *SMALL, "--weights", str(tuned), "--out", str(out)]) == 0
    artifacts = sorted(p.name for p in out.glob("*.onnx"))
    assert artifacts == ["sample-host-cpu-fp32-64.onnx", "tuned-host-cpu-fp32-64.onnx"]
    sample_manifest = out / "sample-host-cpu-fp32-64.onnx.json"
    sha_before = json.loads(sample_manifest.read_text())["artifact_sha256"]
    before = (out / "sample-host-cpu-fp32-64.onnx").read_bytes()
    capsys.readouterr()

    # Other weights onto the sample's name: refused in one line, the sample's artifact untouched.
    code = main(["convert", *SMALL, "--weights", str(tuned), "--name", "sample", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "sample-host-cpu-fp32-64.onnx: already holds an artifact of other weights" in err and "--force" in err
    assert (out / "sample-host-cpu-fp32-64.onnx").read_bytes() == before
    assert json.loads(sample_manifest.read_text())["model"]["weights_source"].endswith("synthetic.pt")

    # The same weights converted again may replace their own artifact.
    assert main(["convert", *SMALL, "--out", str(out)]) == 0
    assert json.loads(sample_manifest.read_text())["artifact_sha256"] == sha_before

    # --force replaces it with the other weights.
    assert main(["convert", *SMALL, "--weights", str(tuned), "--name", "sample", "--force", "--out", str(out)]) == 0
    assert json.loads(sample_manifest.read_text())["model"]["weights_source"] == str(tuned)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*artifacts, *(a + ".json" for a in artifacts)])
