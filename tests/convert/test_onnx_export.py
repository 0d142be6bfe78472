"""ONNX export of the sample model: verified against PyTorch, golden outputs, the manifest."""

import json

import numpy as np
import onnx
import pytest

from edgeseg.cli import main
from edgeseg.convert.pipeline import ConvertRequest, convert
from edgeseg.manifest import load_manifest
from edgeseg.runtime.backend import open_backend
from tests.constants import FP32_MIN_AGREEMENT, HOST_CPU, SMALL_RESOLUTION, TINY_RESOLUTION
from tests.golden.reference import assert_matches_golden

pytestmark = pytest.mark.slow  # every test converts the sample model


@pytest.fixture(scope="module")
def onnx_320(sample_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx320")
    return convert(ConvertRequest(target=HOST_CPU, precision="fp32", resolution="320", weights=str(sample_checkpoint),
                                  out=out, verify_images=4, progress=False))


def test_export_is_static_opset_17_and_verified(onnx_320):
    m = load_manifest(onnx_320["manifest_path"])
    model = onnx.load(str(m.artifact_path))
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 17
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 320, 320]
    v = m.data["verification"]
    assert v["passed"] and v["argmax_agreement"] >= FP32_MIN_AGREEMENT and v["max_abs_logit_diff"] < 1e-3
    assert {s["set"] for s in v["sets"]} >= {"synthetic-val"}
    assert m.data["artifact_sha256"] and len(m.data["model"]["weights_sha256"]) == 64
    assert m.data["model"]["labels"][:2] == ["background", "disc"]


def test_export_matches_the_golden_outputs(onnx_320):
    with open_backend(onnx_320["manifest_path"]) as backend:
        result = assert_matches_golden(backend, "fp32")
    assert result["max_abs_logit_diff"] < 1e-3


def test_verification_uses_real_voc_images_when_present(onnx_320, voc_sample):
    sets = {s["set"]: s for s in onnx_320["verification"]["sets"]}
    assert sets["real"]["source"].endswith("voc-sample") and sets["real"]["argmax_agreement"] >= FP32_MIN_AGREEMENT


@pytest.mark.parametrize("resolution", ["640", "1024"])
def test_larger_standard_resolutions(sample_checkpoint, tmp_path, resolution):
    manifest = convert(ConvertRequest(target=HOST_CPU, precision="fp32", resolution=resolution,
                                      weights=str(sample_checkpoint), out=tmp_path, verify_images=1, progress=False))
    assert manifest["input"]["height"] == int(resolution)
    assert manifest["verification"]["argmax_agreement"] >= FP32_MIN_AGREEMENT


def test_mask_output_with_fused_preprocessing(sample_checkpoint, tmp_path, capsys):
    code = main(["convert", "--weights", str(sample_checkpoint), "--resolution", SMALL_RESOLUTION, "--output", "mask",
                 "--fuse-preprocessing", "--verify-images", "4", "--json", "--out", str(tmp_path)])
    assert code == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["input"]["dtype"] == "uint8" and manifest["input"]["layout"] == "NHWC"
    assert manifest["input"]["normalization"] == "in_model"
    assert manifest["output"] == {"name": "output", "kind": "mask", "layout": "NHW", "dtype": "uint8"}
    assert manifest["verification"]["argmax_agreement"] >= FP32_MIN_AGREEMENT
    with open_backend(manifest["manifest_path"]) as backend:
        out = backend.infer(np.zeros((1, 128, 128, 3), np.uint8))
        assert out.dtype == np.uint8 and out.shape == (1, 128, 128)
        assert_matches_golden(backend, "fp32")


def test_hxw_resolution(sample_checkpoint, tmp_path):
    manifest = convert(ConvertRequest(target=HOST_CPU, precision="fp32", resolution="96x160",
                                      weights=str(sample_checkpoint), out=tmp_path, verify_images=2, progress=False))
    assert (manifest["input"]["height"], manifest["input"]["width"]) == (96, 160)
    assert manifest["artifact"].endswith("-96x160.onnx")


def test_failed_verification_publishes_nothing(sample_checkpoint, tmp_path, monkeypatch, capsys):
    from edgeseg.convert import verify

    monkeypatch.setitem(verify.BUDGETS, "fp32", {"min_agreement": 1.01, "max_miou_drop": 0.0})
    out = tmp_path / "out"
    code = main(["convert", "--weights", str(sample_checkpoint), "--resolution", TINY_RESOLUTION,
                 "--verify-images", "1", "--out", str(out)])
    assert code == 2
    assert "disagrees with PyTorch beyond the budget" in capsys.readouterr().err
    assert [p for p in out.iterdir()] == []


def test_onnx_carries_its_facts_in_metadata_props(onnx_320, capsys):
    m = load_manifest(onnx_320["manifest_path"])
    props = {p.key: p.value for p in onnx.load(str(m.artifact_path)).metadata_props}
    assert json.loads(props["labels"]) == m.data["model"]["labels"]
    assert json.loads(props["normalization"])["mean"] == [0.485, 0.456, 0.406]
    assert json.loads(props["normalization"])["std"] == [0.229, 0.224, 0.225]
    assert (props["resolution"], props["input_layout"], props["color_order"]) == ("320x320", "NCHW", "RGB")
    assert props["output_kind"] == "logits" and props["edgeseg_version"] == m.data["tools"]["edgeseg"]
    assert main(["info", str(m.artifact_path)]) == 0
    assert "ONNX metadata_props" in (out := capsys.readouterr().out) and "agrees with the manifest" in out
