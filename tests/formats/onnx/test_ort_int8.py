"""host-cpu INT8 in ONNX Runtime's fused-kernel form: what the artifact holds, what ORT makes of it,
and the accuracy budget (the Jetson bundles keep TensorRT's form: tests/formats/tensorrt/test_tensorrt_bundle.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from edgeseg.convert.export import exporter_name
from edgeseg.convert.pipeline import ConvertRequest, convert
from edgeseg.formats.onnx.convert import int8 as ort_int8
from tests.constants import HOST_CPU, SMALL_RESOLUTION

VNNI_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"
PLAIN_AVX2_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"


@pytest.fixture(scope="module")
def host_int8(sample_checkpoint: Path, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("ort-int8")
    m = convert(ConvertRequest(target=HOST_CPU, precision="int8", resolution=SMALL_RESOLUTION,
                               weights=str(sample_checkpoint), out=out, calibration="synthetic:4", verify_images=2,
                               progress=False, options={"calib_images": 4}))
    return m, Path(m["manifest_path"]).with_name(m["artifact"])


def test_host_cpu_int8_is_written_by_the_ort_exporter_and_jetson_keeps_tensorrt_form():
    assert exporter_name("onnx", "int8") == "edgeseg.formats.onnx.convert.int8"
    assert exporter_name("onnx", "fp32") == "edgeseg.convert.onnx_export"
    assert exporter_name("tensorrt-bundle", "int8") == "edgeseg.formats.tensorrt.convert.bundle"


@pytest.mark.slow
def test_activations_are_uint8_and_weights_int8_initializers(host_int8):
    m, path = host_int8
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantize and all(inits[n.input[2]].data_type == TensorProto.UINT8 for n in quantize)
    dq_by_output = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for conv in convs:  # weights stored as int8, one scale per output channel
        dq = dq_by_output[conv.input[1]]
        assert inits[dq.input[0]].data_type == TensorProto.INT8
        assert numpy_helper.to_array(inits[dq.input[1]]).shape == (inits[dq.input[0]].dims[0],)
    (last,) = [n for n in model.graph.node if "output" in n.output]
    assert last.op_type == "Resize"  # the full-resolution logits are upsampled in float, never quantized
    q = m["conversion"]["quantization"]
    assert q["activations"].startswith("uint8") and q["reduce_range"] == ort_int8.needs_reduce_range()
    assert m["verification"]["passed"]


@pytest.mark.slow
def test_onnx_runtime_fuses_every_conv_into_an_integer_kernel(host_int8, tmp_path):
    """The point of the form: after ORT's graph optimizations no float Conv is left, and the residual
    adds, the HardSwish multiplies and the global pools run as QLinear kernels too."""
    _, path = host_int8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node)
    assert ops["QLinearConv"] == convs and ops["Conv"] == 0 and ops["FusedConv"] == 0
    assert ops["QLinearAdd"] >= 10 and ops["QLinearMul"] >= 20 and ops["QLinearGlobalAveragePool"] >= 9


@pytest.mark.parametrize("machine, cpuinfo, reduce", [
    ("x86_64", VNNI_CPUINFO, False), ("x86_64", PLAIN_AVX2_CPUINFO, True), ("aarch64", PLAIN_AVX2_CPUINFO, False)])
def test_reduce_range_only_on_x86_without_vnni(machine: str, cpuinfo: str, reduce: bool):
    assert ort_int8.needs_reduce_range(machine, cpuinfo) is reduce


@pytest.mark.slow
def test_budget_search_keeps_sensitive_layers_in_float_in_the_ort_form(unreachable_int8_budget_job, tmp_path):
    """The shared sensitive-layer search works on this form: an unreachable budget runs it to its limit,
    and the layers kept in float read no Q/DQ input in the written graph."""
    result = ort_int8.export(unreachable_int8_budget_job(HOST_CPU), tmp_path)
    q = result.details["quantization"]
    assert [a["kept_in_float"] for a in q["budget_search"]] == [0, 1, 2]
    kept = q["kept_in_float"]
    assert len(kept) == 2 and set(kept) == set(q["kept_in_float_agreement_gain"])
    model = onnx.load(str(result.artifact))
    inits = {t.name for t in model.graph.initializer}
    # Activations read in float; weights stay int8 initializers behind their DequantizeLinear.
    activation_dq = {n.output[0] for n in model.graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0] not in inits}
    nodes = {n.name: n for n in model.graph.node}
    for name in kept:
        assert not set(nodes[name].input) & activation_dq, f"{name} still reads a quantized activation"


@pytest.mark.slow
def test_int8_onnx_carries_labels_and_normalization_and_info_agrees(host_int8, capsys):
    import json

    import onnx

    from edgeseg.cli import main

    manifest, artifact = host_int8
    props = {p.key: p.value for p in onnx.load(str(artifact)).metadata_props}
    assert json.loads(props["labels"]) == manifest["model"]["labels"]
    assert json.loads(props["normalization"])["mean"] == manifest["input"]["normalization"]["mean"]
    assert (props["precision"], props["target"], props["resolution"]) == ("int8", "host-cpu", "128x128")
    assert main(["info", str(artifact)]) == 0
    out = capsys.readouterr().out
    assert "ONNX metadata_props" in out and "agrees with the manifest" in out and "labels None" not in out
    assert manifest["runtime"]["min_engine"] == {"package": "onnxruntime", "version": "1.23.2"}
    assert "engine       onnxruntime >= 1.23.2 (the oldest verified to give the same masks); installed " in out
