"""Jetson bundles on the CPU: conversion for every Jetson target, INT8 Q/DQ accuracy under ONNX
Runtime, the TensorRT parser-support check, and the device-side commands without TensorRT.

The engine build and run need TensorRT and an NVIDIA GPU: tests/test_tensorrt_gpu.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.convert.pipeline import ConvertRequest, convert
from edgeseg.convert.trt_support import check_model, require_supported
from edgeseg.errors import BackendUnavailableError, ConfigError, ManifestError
from edgeseg.manifest import load_manifest
from edgeseg.targets import all_targets

JETSON_TARGETS = sorted(n for n, t in all_targets().items() if t.format == "tensorrt-bundle")
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None

# One conversion per Jetson target keeps this module to about a minute of CPU, while covering every
# target, every precision, the DLA/no-DLA build settings, mask output and fused preprocessing.
CASES = {
    "jetson-orin-nano": dict(precision="fp32", resolution="128", output_kind="mask", fuse_preprocessing=True),
    "jetson-orin-nx": dict(precision="fp16", resolution="128"),
    "jetson-xavier-nx": dict(precision="fp16", resolution="128"),
    "jetson-agx-orin": dict(precision="int8", resolution="160", calibration="synthetic:8"),
}
VERIFY_IMAGES = {"fp32": 2, "fp16": 2, "int8": 8}


@pytest.fixture(scope="module")
def bundles(sample_checkpoint: Path, tmp_path_factory) -> dict[str, dict]:
    assert set(CASES) == set(JETSON_TARGETS), "a new Jetson target needs a case here"
    out = {}
    for target, case in CASES.items():
        case = dict(case)
        precision = case.pop("precision")
        n = VERIFY_IMAGES[precision]
        out[target] = convert(ConvertRequest(
            target=target, precision=precision, weights=str(sample_checkpoint), out=tmp_path_factory.mktemp(target),
            verify_images=n, progress=False,
            options={"calib_images": 8, "verify_images": n}, **case))
    return out


def _files(manifest: dict) -> tuple[Path, Path, Path]:
    mpath = Path(manifest["manifest_path"])
    onnx_path = mpath.with_name(manifest["artifact"])
    return mpath, onnx_path, onnx_path.with_name(manifest["conversion"]["tensorrt"]["trtexec"])


@pytest.mark.parametrize("target", JETSON_TARGETS)
def test_every_jetson_target_converts_to_a_verified_bundle(bundles, target):
    m = bundles[target]
    mpath, onnx_path, script = _files(m)
    assert onnx_path.is_file() and script.is_file() and mpath.is_file()
    profile = all_targets()[target]
    assert m["backend"] == "tensorrt" and m["target"] == target
    trt = m["conversion"]["tensorrt"]
    assert trt["parser_check"]["passed"] and trt["parser_check"]["tensorrt_versions"] == list(profile.tensorrt_options().versions)
    assert trt["build"]["precision"] == m["precision"] and trt["build"]["workspace_mb"] == profile.tensorrt_options().workspace_mb
    v = m["verification"]
    assert v["passed"] and v["runtime"].startswith("ONNX Runtime")
    assert load_manifest(mpath).artifact_path == onnx_path


def test_trtexec_line_builds_what_the_manifest_says(bundles):
    nx = _files(bundles["jetson-orin-nx"])[2].read_text()
    for arg in ("--fp16", "--useDLACore=0", "--allowGPUFallback", "--memPoolSize=workspace:2048", "--timingCacheFile="):
        assert arg in nx
    assert "--int8" not in nx
    nano = _files(bundles["jetson-orin-nano"])[2].read_text()
    assert "--useDLACore" not in nano and "--fp16" not in nano  # no DLA on the Nano; FP32 build
    agx = _files(bundles["jetson-agx-orin"])[2].read_text()
    assert "--int8" in agx and "--fp16" in agx and "--useDLACore" not in agx  # Q/DQ INT8 runs on the GPU
    assert bundles["jetson-agx-orin"]["conversion"]["tensorrt"]["build"]["dla_core"] is None


def test_mask_output_leaves_the_graph_as_int32(bundles):
    m = bundles["jetson-orin-nano"]
    model = onnx.load(str(_files(m)[1]))
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.INT32
    assert m["output"] == {"name": "output", "kind": "mask", "layout": "NHW", "dtype": "int32"}
    assert m["input"]["dtype"] == "uint8" and m["input"]["normalization"] == "in_model"
    assert m["verification"]["argmax_agreement"] >= 0.999


def test_int8_bundle_is_symmetric_per_channel_qdq(bundles):
    model = onnx.load(str(_files(bundles["jetson-agx-orin"])[1]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert qs and len(qs) == len(dqs)
    for node in qs + dqs:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    weight_dqs = [n for n in dqs if n.output[0] in conv_weights]
    assert weight_dqs and all(inits[n.input[1]].size > 1 for n in weight_dqs)  # per-channel scales
    # Weights stay float behind Q -> DQ (the TensorRT 8.x form): no INT8 initializer feeds a DQ.
    assert not [n for n in dqs if n.input[0] in inits]


def test_int8_qdq_within_one_miou_point_of_fp32(bundles):
    m = bundles["jetson-agx-orin"]
    synthetic = next(s for s in m["verification"]["sets"] if s["set"] == "synthetic-val")
    assert synthetic["images"] == VERIFY_IMAGES["int8"]
    assert synthetic["miou_delta"] >= -1.0, synthetic
    q = m["conversion"]["quantization"]
    assert q["calibration_method"] == "minmax-mean" and q["calibration_images"] == 8
    assert q["budget_search"][-1]["passed"] and q["quantized_nodes"] > 50


def test_int8_without_calibration_is_refused(sample_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="calibration"):
        convert(ConvertRequest(target="jetson-orin-nano", precision="int8", resolution="128",
                               weights=str(sample_checkpoint), out=tmp_path, progress=False))
    assert not any(tmp_path.glob("*.onnx"))


# -- the parser-support check on hand-made graphs -------------------------------------------------

def _graph(nodes, *, initializers=(), out_type=TensorProto.FLOAT, out_shape=(1, 4, 16, 16)):
    graph = helper.make_graph(
        nodes, "planted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", out_type, list(out_shape))],
        initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _resize(mode: str, name: str) -> onnx.ModelProto:
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name=name, mode=mode)
    return _graph([node], initializers=[scales])


def test_parser_check_fails_a_planted_cubic_resize_by_name():
    with pytest.raises(ConfigError, match=r"planted_cubic_resize.*Resize.*cubic"):
        require_supported(_resize("cubic", "planted_cubic_resize"), ("8.6", "10.3"), artifact="m.onnx")
    assert check_model(_resize("linear", "fine_resize"), ("8.5", "8.6", "10.3")).ok


def test_parser_check_fails_a_planted_unsupported_op_by_name():
    node = helper.make_node("Unique", ["x"], ["y"], name="planted_unique")
    report = check_model(_graph([node]), ("8.6",))
    assert not report.ok and "planted_unique" in str(report.problems[0]) and "Unique" in str(report.problems[0])


def test_argmax_mask_type_rules_differ_between_tensorrt_8_and_10():
    argmax = helper.make_node("ArgMax", ["x"], ["idx"], name="argmax", axis=1, keepdims=0)
    to_u8 = helper.make_node("Cast", ["idx"], ["y"], name="mask_to_uint8", to=TensorProto.UINT8)
    model = _graph([argmax, to_u8], out_type=TensorProto.UINT8, out_shape=(1, 8, 8))
    assert check_model(model, ("10.3",)).ok
    problems = [str(p) for p in check_model(model, ("8.6",)).problems]
    assert any("mask_to_uint8" in p and "UINT8" in p for p in problems)
    int64_out = _graph([helper.make_node("ArgMax", ["x"], ["y"], name="argmax", axis=1, keepdims=0)],
                       out_type=TensorProto.INT64, out_shape=(1, 8, 8))
    assert any("INT64" in str(p) for p in check_model(int64_out, ("8.5",)).problems)


def _dq_conv(weight_type: int, zero_point: int = 0) -> onnx.ModelProto:
    w = np.ones((4, 4, 1, 1), np.int8 if weight_type == TensorProto.INT8 else np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.full(4, 0.1, np.float32), "w_scale"),
             numpy_helper.from_array(np.full(4, zero_point, np.int8), "w_zp")]
    nodes = [helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zp"], ["w_dq"], name="weight_dq", axis=0),
             helper.make_node("Conv", ["x", "w_dq"], ["y"], name="conv")]
    return _graph(nodes, initializers=inits, out_shape=(1, 4, 8, 8))


def test_qdq_rules_nonzero_zero_point_and_prequantized_weights():
    prequantized = _dq_conv(TensorProto.INT8)
    assert check_model(prequantized, ("10.3",)).ok
    assert any("weight_dq" in str(p) for p in check_model(prequantized, ("8.6",)).problems)
    with pytest.raises(ConfigError, match="weight_dq.*zero point"):
        require_supported(_dq_conv(TensorProto.INT8, zero_point=3), ("10.3",), artifact="m.onnx")


def test_unknown_tensorrt_version_is_refused():
    with pytest.raises(ConfigError, match="7.1"):
        check_model(_resize("linear", "r"), ("7.1",))


# -- the device side without TensorRT ---------------------------------------------------------------

@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: tests/test_tensorrt_gpu.py covers the build")
def test_build_engine_without_tensorrt_says_what_is_needed(bundles, capsys):
    from edgeseg.cli import main

    assert main(["build-engine", bundles["jetson-orin-nx"]["manifest_path"]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("edgeseg build-engine: error:") and "TensorRT" in err and "NVIDIA GPU" in err


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: tests/test_tensorrt_gpu.py covers the backend")
def test_tensorrt_backend_without_tensorrt_says_what_is_needed(bundles):
    from edgeseg.runtime.backends import open_backend

    with pytest.raises(BackendUnavailableError) as excinfo:
        open_backend(bundles["jetson-orin-nx"]["manifest_path"])
    message = str(excinfo.value)
    assert "\n" not in message and "TensorRT" in message and "NVIDIA GPU" in message


def test_engine_names_and_compatibility(bundles):
    from edgeseg.runtime.engine import (GpuInfo, check_engine_compatible, engine_file_name, resolve_dla_core)

    orin = GpuInfo("Orin (nvgpu)", "8.7")
    name = engine_file_name("m-320.onnx", orin, "10.3.0", "fp16", 0)
    assert name == "m-320.orin-nvgpu.trt10.3.0.fp16.dla0.engine"
    assert engine_file_name("m-320.onnx", orin, "8.6.2", "int8", None) == "m-320.orin-nvgpu.trt8.6.2.int8.engine"

    bundle = load_manifest(bundles["jetson-orin-nx"]["manifest_path"])
    engine = type(bundle)(bundle.path.with_name("x.engine.json"), {
        "artifact": "x.engine", "engine": {"gpu": orin.name, "compute_capability": "8.7", "tensorrt": "8.6.2",
                                           "bundle_manifest": str(bundle.path)}})
    check_engine_compatible(engine, orin, "8.6.2")
    with pytest.raises(ManifestError, match=r"TensorRT 8\.6\.2.*TensorRT 10\.3\.0.*rebuild.*build-engine"):
        check_engine_compatible(engine, orin, "10.3.0")
    with pytest.raises(ManifestError, match="Xavier.*rebuild"):
        check_engine_compatible(engine, GpuInfo("Xavier", "7.2"), "8.6.2")

    assert resolve_dla_core(bundle) == 0 and resolve_dla_core(bundle, None) is None and resolve_dla_core(bundle, 1) == 1
    with pytest.raises(ConfigError, match="2 DLA cores"):
        resolve_dla_core(bundle, 2)
    nano = load_manifest(bundles["jetson-orin-nano"]["manifest_path"])
    assert resolve_dla_core(nano) is None
    with pytest.raises(ConfigError):
        resolve_dla_core(nano, 0)
    int8 = load_manifest(bundles["jetson-agx-orin"]["manifest_path"])
    with pytest.raises(ConfigError, match="Q/DQ"):
        resolve_dla_core(int8, 0)


def test_int8_budget_search_keeps_the_most_sensitive_layers_in_float(sample_checkpoint, tmp_path, monkeypatch):
    """An unreachable budget drives the search to its limit: every attempt is recorded, and the layers
    kept in float really run without Q/DQ in the published graph."""
    from edgeseg.convert import verify
    from edgeseg.convert.export import ExportJob
    from edgeseg.convert.tensorrt_bundle import export
    from edgeseg.convert.weights import load_weights
    from edgeseg.targets import get_target

    monkeypatch.setitem(verify.BUDGETS, "int8", {"min_agreement": 1.01, "max_miou_drop": 1.0})
    weights = load_weights(str(sample_checkpoint))
    job = ExportJob(weights=weights, model=weights.build(), target=get_target("jetson-orin-nano"), precision="int8",
                    height=128, width=128, output_kind="logits", fuse_preprocessing=False, basename="search",
                    calibration="synthetic:4", progress=False,
                    options={"calib_images": 4, "verify_images": 2, "int8_max_float_layers": 2,
                             "int8_sensitivity_images": 1})
    result = export(job, tmp_path)
    q = result.details["quantization"]
    assert [a["kept_in_float"] for a in q["budget_search"]] == [0, 1, 2]
    assert not result.verification["passed"]  # the pipeline refuses to publish it (enforce)
    kept = q["kept_in_float"]
    assert len(kept) == 2 and set(kept) == set(q["kept_in_float_agreement_gain"])
    model = onnx.load(str(result.artifact))
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    nodes = {n.name: n for n in model.graph.node}
    for name in kept:
        assert not set(nodes[name].input) & dq_outputs, f"{name} still reads a Q/DQ input"


def test_host_cpu_int8_is_the_same_qdq_quantizer(sample_checkpoint, tmp_path):
    m = convert(ConvertRequest(target="host-cpu", precision="int8", resolution="128", weights=str(sample_checkpoint),
                               out=tmp_path, calibration="synthetic:4", verify_images=2, progress=False,
                               options={"calib_images": 4, "calib_method": "minmax"}))
    model = onnx.load(str(Path(m["manifest_path"]).with_name(m["artifact"])))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert m["backend"] == "onnxruntime" and m["conversion"]["quantization"]["calibration_images"] == 4
    assert m["verification"]["passed"]
