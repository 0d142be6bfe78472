"""The INT8 Q/DQ quantizer itself: calibration methods, keeping layers in float, and the full-size
accuracy the budget asks for (the host-cpu and Jetson INT8 artifacts both come from it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeseg.convert import qdq
from edgeseg.convert.calibration import calibration_images
from edgeseg.convert.export import ExportJob
from edgeseg.convert.onnx_export import export_onnx_file
from edgeseg.convert.options import CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD
from edgeseg.convert.pipeline import ConvertRequest, convert
from edgeseg.convert.verify import reference_spec, synthetic_set
from edgeseg.errors import ConfigError
from edgeseg.formats.tensorrt.convert.qdq import QUANTIZED_OP_TYPES, quantize_qdq
from edgeseg.models.weights import load_weights
from edgeseg.runtime.preprocess import preprocess_rgb
from edgeseg.targets import get_target
from tests.constants import HOST_CPU

SIZE = 128


@pytest.fixture(scope="module")
def folded(sample_checkpoint: Path, tmp_path_factory) -> Path:
    """The sample model's constant-folded float ONNX at 128 px, as the quantizer receives it."""
    weights = load_weights(str(sample_checkpoint))
    job = ExportJob(weights=weights, model=weights.build(), target=get_target(HOST_CPU), precision="int8",
                    height=SIZE, width=SIZE, output_kind="logits", fuse_preprocessing=False, basename="m",
                    progress=False)
    tmp = tmp_path_factory.mktemp("qdq")
    return qdq.fold_constants(export_onnx_file(job, tmp / "traced.onnx"), tmp / "float.onnx")


@pytest.fixture(scope="module")
def calib() -> list[np.ndarray]:
    return calibration_images("synthetic:6", 6)


def _ranges(path: Path) -> dict[str, float]:
    from onnxruntime.quantization.calibrate import load_tensors_data

    # The symmetric INT8 scale is max(|low|, |high|) / 127 (zero point 0), whatever the range's sides.
    return {name: float(max(np.abs(t.range_value[0]).max(), np.abs(t.range_value[1]).max()))
            for name, t in load_tensors_data(path).items()}


def test_the_default_calibration_method_is_one_the_cli_offers():
    assert DEFAULT_CALIBRATION_METHOD in CALIBRATION_METHODS


def _small_model(path: Path) -> Path:
    """Conv -> Relu -> Conv -> Add (residual): every kind of tensor the quantizer calibrates, small
    enough that the 2048-bin entropy search takes a second."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
         helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["r1", "c2"], ["output"], name="add")],
        "small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 32, 32])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_calibration_methods_estimate_different_ranges(tmp_path):
    """minmax is the widest; the mean of per-image extremes, the percentile and the entropy threshold
    lie inside it, and entropy really searches (onnxruntime's quantize_static default of 128 bins onto
    128 levels gives back minmax exactly, which is why edgeseg runs the calibrator itself)."""
    model = _small_model(tmp_path / "small.onnx")
    spec = reference_spec(32, 32)
    images = calibration_images("synthetic:8", 8)
    ranges = {m: _ranges(qdq.calibrate(model, images, spec, tmp_path / f"{m}.json", method=m,
                                       op_types=QUANTIZED_OP_TYPES, progress=False))
              for m in CALIBRATION_METHODS}
    names = set(ranges["minmax"])
    assert {"input", "r1", "c2"} <= names and all(set(r) == names for r in ranges.values())
    for method in ("minmax-mean", "entropy", "percentile"):
        for name in names:
            assert ranges[method][name] <= ranges["minmax"][name] * 1.001, (method, name, ranges)
        narrower = [n for n in names if ranges[method][n] < ranges["minmax"][n] * 0.98]
        assert len(narrower) >= 3, (method, ranges)


def test_bad_percentile_is_refused():
    with pytest.raises(ConfigError, match="calib-percentile"):
        qdq.calibration_method("percentile", 30.0)


@pytest.mark.slow
def test_keep_in_float_is_the_switch_the_sensitivity_ranking_measures(folded, calib, tmp_path):
    """Node k kept in float by `keep_in_float` computes exactly what the gated model computes with
    gate k off, and no other node changes: the ranking predicts what the budget search does.
    (Compared as graphs, without onnxruntime's optimizations: those fuse Q/DQ pairs into integer
    kernels in the plain graph only, a rounding-level difference.)"""
    spec = reference_spec(SIZE, SIZE)
    model = quantize_qdq(folded, tmp_path / "q.onnx", calib, spec, progress=False)
    nodes = list(model.quantized_nodes)
    k = len(nodes) // 2
    stripped = qdq.keep_in_float(model.path, tmp_path / "k.onnx", [nodes[k]])
    assert qdq.quantized_nodes(stripped, model.op_types) == nodes[:k] + nodes[k + 1:]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    gated = ort.InferenceSession(qdq._gated_qdq_model(model.path, nodes).SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(str(stripped), options, providers=["CPUExecutionProvider"])
    full = ort.InferenceSession(str(model.path), options, providers=["CPUExecutionProvider"])
    x = preprocess_rgb(synthetic_set(1).images[0], spec)
    gates = np.ones(len(nodes), np.float32)
    gates[k] = 0.0
    expected = gated.run(None, {"input": x, "qdq_gates": gates})[0]
    got = plain.run(None, {"input": x})[0]
    np.testing.assert_array_equal(got, expected)
    assert np.abs(full.run(None, {"input": x})[0] - got).max() > 1e-3  # the switch does change something
    with pytest.raises(ConfigError, match="no node named"):
        qdq.keep_in_float(model.path, tmp_path / "x.onnx", ["no-such-node"])


@pytest.mark.slow
def test_int8_at_320_meets_the_budget_without_keeping_layers_in_float(sample_checkpoint, tmp_path):
    """The regression that global-extreme (minmax) ranges caused at full size: -14 mIoU at 320 on the
    synthetic validation scenes. The default calibration keeps every layer in INT8 within the budget."""
    m = convert(ConvertRequest(target=HOST_CPU, precision="int8", resolution="320", weights=str(sample_checkpoint),
                               out=tmp_path, calibration="synthetic:32", verify_images=16, progress=False))
    q = m["conversion"]["quantization"]
    assert q["calibration_method"] == "minmax-mean" and q["kept_in_float"] == []
    synthetic = next(s for s in m["verification"]["sets"] if s["set"] == "synthetic-val")
    assert synthetic["images"] == 16 and synthetic["miou_delta"] >= -1.0 and synthetic["argmax_agreement"] >= 0.99
    assert onnx.load(str(Path(m["manifest_path"]).with_name(m["artifact"]))).graph.node
