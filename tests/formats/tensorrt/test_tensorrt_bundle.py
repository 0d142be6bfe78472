"""Jetson bundles on the CPU: conversion for every Jetson target, INT8 Q/DQ accuracy under ONNX
Runtime, the TensorRT parser-support check, and the device-side commands without TensorRT.

The engine build and run need TensorRT and an NVIDIA GPU: tests/formats/tensorrt/test_tensorrt_gpu.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.convert.pipeline import ConvertRequest, convert
from edgeseg.errors import BackendUnavailableError, ConfigError
from edgeseg.formats.tensorrt.convert.parser_support import check_model, require_supported
from edgeseg.manifest import load_manifest
from edgeseg.targets import all_targets
from tests.constants import FORMAT_RESOLUTION, FP32_MIN_AGREEMENT, HOST_CPU, SMALL_RESOLUTION
from tests.tensorrt_qdq_rules import placement_problems, qdq_counts

JETSON_TARGETS = sorted(n for n, t in all_targets().items() if t.format == "tensorrt-bundle")
# tensorrt-stubs make `tensorrt` importable as an empty namespace package: only a real module counts.
_TENSORRT_SPEC = importlib.util.find_spec("tensorrt")
HAS_TENSORRT = _TENSORRT_SPEC is not None and _TENSORRT_SPEC.origin not in (None, "namespace")

# One conversion per Jetson target keeps this module to about a minute of CPU, while covering every
# target, every precision, the DLA/no-DLA build settings, mask output and fused preprocessing.
CASES = {
    "jetson-orin-nano": dict(precision="fp32", resolution=SMALL_RESOLUTION, output_kind="mask",
                             fuse_preprocessing=True),
    "jetson-orin-nx": dict(precision="fp16", resolution=SMALL_RESOLUTION),
    "jetson-xavier-nx": dict(precision="fp16", resolution=SMALL_RESOLUTION),
    "jetson-agx-orin": dict(precision="int8", resolution=FORMAT_RESOLUTION, calibration="synthetic:8"),
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


@pytest.mark.slow
@pytest.mark.parametrize("target", JETSON_TARGETS)
def test_every_jetson_target_converts_to_a_verified_bundle(bundles, target):
    m = bundles[target]
    mpath, onnx_path, script = _files(m)
    assert onnx_path.is_file() and script.is_file() and mpath.is_file()
    profile = all_targets()[target]
    assert m["backend"] == "tensorrt" and m["target"] == target
    trt = m["conversion"]["tensorrt"]
    assert trt["parser_check"]["passed"]
    assert trt["parser_check"]["tensorrt_versions"] == list(profile.tensorrt_options().versions)
    assert trt["build"]["precision"] == m["precision"]
    assert trt["build"]["workspace_mb"] == profile.tensorrt_options().workspace_mb
    v = m["verification"]
    assert v["passed"] and v["runtime"].startswith("ONNX Runtime")
    assert load_manifest(mpath).artifact_path == onnx_path


@pytest.mark.slow
def test_trtexec_line_builds_what_the_manifest_says(bundles):
    nx = _files(bundles["jetson-orin-nx"])[2].read_text()
    for arg in ("--fp16", "--useDLACore=0", "--allowGPUFallback", "--memPoolSize=workspace:2048", "--timingCacheFile=",
                "--names", "--register"):
        assert arg in nx
    assert "--int8" not in nx and "--stronglyTyped" not in nx
    nano = _files(bundles["jetson-orin-nano"])[2].read_text()
    assert "--useDLACore" not in nano and "--fp16" not in nano  # no DLA on the Nano; FP32 build
    agx = _files(bundles["jetson-agx-orin"])[2].read_text()
    assert "--stronglyTyped" in agx and "--int8 --fp16" in agx and "--useDLACore" not in agx  # Q/DQ INT8 on the GPU
    assert bundles["jetson-agx-orin"]["conversion"]["tensorrt"]["build"]["dla_core"] is None


@pytest.mark.slow
def test_mask_output_leaves_the_graph_as_int32(bundles):
    m = bundles["jetson-orin-nano"]
    model = onnx.load(str(_files(m)[1]))
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.INT32
    assert m["output"] == {"name": "output", "kind": "mask", "layout": "NHW", "dtype": "int32"}
    assert m["input"]["dtype"] == "uint8" and m["input"]["normalization"] == "in_model"
    assert m["verification"]["argmax_agreement"] >= FP32_MIN_AGREEMENT


@pytest.mark.slow
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


@pytest.mark.slow
def test_int8_bundle_places_qdq_as_tensorrt_recommends(bundles):
    """Conv inputs and per-channel weights quantized, residual skips quantized, no weighted op's output
    quantized for its own sake, one pair per tensor, only the opset domains the graph uses."""
    m = bundles["jetson-agx-orin"]
    model = onnx.load(str(_files(m)[1]))
    assert placement_problems(model, set(m["conversion"]["quantization"]["kept_in_float"])) == []
    readers = [n.op_type for n in model.graph.node for i in n.input if i.endswith("_DequantizeLinear_Output")]
    assert set(readers) == {"Conv", "Add"} and readers.count("Add") >= 5
    assert [o.domain for o in model.opset_import] == [""]


@pytest.mark.slow
def test_a_simplifier_finds_no_qdq_pair_to_merge(bundles):
    import onnxslim

    path = _files(bundles["jetson-agx-orin"])[1]
    before = qdq_counts(onnx.load(str(path)))
    assert before[0] > 50 and qdq_counts(onnxslim.slim(onnx.load(str(path)))) == before


@pytest.mark.slow
def test_placement_check_fails_planted_violations(bundles):
    """A pair on a Conv output read by its activation, a second pair on a tensor, and a Conv whose
    input is not quantized are each reported by name."""
    from edgeseg.formats.tensorrt.convert.qdq_placement import _qdq_nodes

    model = onnx.load(str(_files(bundles["jetson-agx-orin"])[1]))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    relu = next(n for n in graph.node
                if n.op_type in ("Relu", "HardSigmoid") and producer[n.input[0]].op_type == "Conv")
    nodes, inits, dq = _qdq_nodes(relu.input[0], np.array(0.1, np.float32), None)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    relu.input[0] = dq
    convs = [n for n in graph.node if n.op_type == "Conv"]
    conv, other = convs[0], convs[1]
    conv.input[0] = producer[producer[conv.input[0]].input[0]].input[0]  # bypass its pair
    source = producer[producer[other.input[0]].input[0]].input[0]
    second, second_inits, _ = _qdq_nodes(source, np.array(0.1, np.float32), None)
    for node in second:  # a pair of its own for `other`, beside the one it read
        node.name += "_again"
        node.output[0] += "_again"
    second[1].input[0] = second[0].output[0]
    other.input[0] = second[1].output[0]
    for init in second_inits:
        init.name += "_again"
    for node in second:
        node.input[1:] = [name + "_again" for name in node.input[1:]]
    graph.node.extend(second)
    graph.initializer.extend(second_inits)
    problems = "\n".join(placement_problems(model))
    assert f"read by {relu.op_type} {relu.name}" in problems
    assert f"{conv.name}: Conv data input is not quantized" in problems
    assert "a second Q/DQ pair" in problems
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert "com.microsoft" in "\n".join(placement_problems(model))


def test_residual_add_quantizes_the_skip_not_the_conv_branch():
    """Add(x, Conv(Relu(Conv(x)))): the skip x is the residual input; the Conv output is the branch
    TensorRT fuses into the Conv, so it stays float."""
    from edgeseg.formats.tensorrt.convert.qdq_placement import residual_inputs, tensorrt_placement

    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], name="c1"), helper.make_node("Relu", ["c1"], ["r"], name="r"),
             helper.make_node("Conv", ["r", "w"], ["c2"], name="c2"),
             helper.make_node("Add", ["c1", "c2"], ["y"], name="add")]
    model = _graph(nodes, initializers=[w], out_shape=(1, 4, 8, 8))
    producer = {o: n for n in model.graph.node for o in n.output}
    assert residual_inputs(model.graph.node[3], producer, {"w"}) == [0]
    placement = tensorrt_placement(model)
    assert placement.activations == {"x": [(0, 0)], "r": [(2, 0)], "c1": [(3, 0)]} and placement.weights == ["w"]


@pytest.mark.slow
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
        convert(ConvertRequest(target="jetson-orin-nano", precision="int8", resolution=SMALL_RESOLUTION,
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
    float_to_u8 = _graph([helper.make_node("Cast", ["x"], ["y"], name="pixels_to_uint8", to=TensorProto.UINT8)],
                         out_type=TensorProto.UINT8, out_shape=(1, 4, 8, 8))
    assert check_model(float_to_u8, ("8.5", "8.6", "10.3")).ok  # float -> UINT8 parses from 8.5
    int64_out = _graph([helper.make_node("ArgMax", ["x"], ["y"], name="argmax", axis=1, keepdims=0)],
                       out_type=TensorProto.INT64, out_shape=(1, 8, 8))
    assert any("INT64" in str(p) for p in check_model(int64_out, ("8.5",)).problems)


def _dq_conv(weight_type: int, zero_point: int = 0, scales: int = 4, axis: int = 0) -> onnx.ModelProto:
    w = np.ones((4, 4, 1, 1), np.int8 if weight_type == TensorProto.INT8 else np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.full(scales, 0.1, np.float32), "w_scale"),
             numpy_helper.from_array(np.full(scales, zero_point, np.int8), "w_zp")]
    if weight_type == TensorProto.INT8:
        nodes = [helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zp"], ["w_dq"], name="weight_dq", axis=axis)]
    else:
        nodes = [helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zp"], ["w_q"], name="weight_q", axis=axis),
                 helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"], name="weight_dq",
                                  axis=axis)]
    nodes.append(helper.make_node("Conv", ["x", "w_dq"], ["y"], name="conv"))
    return _graph(nodes, initializers=inits, out_shape=(1, 4, 8, 8))


def test_qdq_rules_nonzero_zero_point_and_prequantized_weights():
    prequantized = _dq_conv(TensorProto.INT8)
    assert check_model(prequantized, ("8.6", "10.3")).ok  # the 8.6 parser takes INT8 initializers into DQ
    problems = check_model(prequantized, ("8.5",)).problems
    assert any("weight_dq" in str(p) and "pre-quantized" in str(p) for p in problems)
    assert check_model(_dq_conv(TensorProto.FLOAT), ("8.5", "8.6", "10.3")).ok  # float weights behind Q -> DQ
    with pytest.raises(ConfigError, match="weight_dq.*zero point"):
        require_supported(_dq_conv(TensorProto.INT8, zero_point=3), ("10.3",), artifact="m.onnx")


def test_per_channel_scales_only_on_weights_along_the_output_channel_axis():
    with pytest.raises(ConfigError, match="weight_q.*axis 1 of a Conv weight.*axis 0"):
        require_supported(_dq_conv(TensorProto.FLOAT, axis=1), ("8.6",), artifact="m.onnx")
    scales = [numpy_helper.from_array(np.full(4, 0.1, np.float32), "s"),
              numpy_helper.from_array(np.zeros(4, np.int8), "z")]
    activation = _graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="act_q", axis=1),
                         helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["y"], name="act_dq", axis=1)],
                        initializers=scales, out_shape=(1, 4, 8, 8))
    problems = [str(p) for p in check_model(activation, ("10.3",)).problems]
    assert any("act_q" in p and "per-channel scale on an activation" in p for p in problems)


def test_unknown_tensorrt_version_is_refused():
    with pytest.raises(ConfigError, match="7.1"):
        check_model(_resize("linear", "r"), ("7.1",))


# -- the device side without TensorRT ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: "
                                       "tests/formats/tensorrt/test_tensorrt_gpu.py covers the build")
def test_build_engine_without_tensorrt_says_what_is_needed(bundles, capsys):
    from edgeseg.cli import main

    assert main(["build-engine", bundles["jetson-orin-nx"]["manifest_path"]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("edgeseg build-engine: error:") and "TensorRT" in err and "NVIDIA GPU" in err


@pytest.mark.slow
@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: "
                                       "tests/formats/tensorrt/test_tensorrt_gpu.py covers the backend")
def test_tensorrt_backend_without_tensorrt_says_what_is_needed(bundles):
    from edgeseg.runtime.backend import open_backend

    with pytest.raises(BackendUnavailableError) as excinfo:
        open_backend(bundles["jetson-orin-nx"]["manifest_path"])
    message = str(excinfo.value)
    assert "\n" not in message and "TensorRT" in message and "NVIDIA GPU" in message


@pytest.mark.slow
def test_int8_budget_search_keeps_the_most_sensitive_layers_in_float(unreachable_int8_budget_job, tmp_path):
    """An unreachable budget drives the search to its limit: every attempt is recorded, and the layers
    kept in float really run without Q/DQ in the published graph."""
    from edgeseg.formats.tensorrt.convert.bundle import export

    result = export(unreachable_int8_budget_job("jetson-orin-nano"), tmp_path)
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


@pytest.mark.slow
def test_host_cpu_int8_takes_the_shared_calibration_methods(sample_checkpoint, tmp_path):
    m = convert(ConvertRequest(target=HOST_CPU, precision="int8", resolution=SMALL_RESOLUTION,
                               weights=str(sample_checkpoint), out=tmp_path, calibration="synthetic:4",
                               verify_images=2, progress=False, options={"calib_images": 4, "calib_method": "minmax"}))
    model = onnx.load(str(Path(m["manifest_path"]).with_name(m["artifact"])))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert m["backend"] == "onnxruntime" and m["conversion"]["quantization"]["calibration_images"] == 4
    assert m["verification"]["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("target", JETSON_TARGETS)
def test_every_bundle_carries_labels_and_normalization_in_metadata_props(bundles, target, capsys):
    import json

    manifest = bundles[target]
    _, onnx_path, _ = _files(manifest)
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props["labels"]) == manifest["model"]["labels"]
    assert props["precision"] == manifest["precision"] and props["target"] == target
    if props["normalization"] == "in_model":  # --fuse-preprocessing: uint8 in, the normalization in the graph
        assert manifest["input"]["dtype"] == "uint8", manifest["input"]
    else:
        assert json.loads(props["normalization"])["std"] == manifest["input"]["normalization"]["std"]
    from edgeseg.cli import main

    assert main(["info", str(onnx_path)]) == 0
    assert "agrees with the manifest" in capsys.readouterr().out
