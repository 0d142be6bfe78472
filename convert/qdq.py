"""Explicit INT8 quantization: Q/DQ nodes in the ONNX, the way TensorRT 8.6/10 wants it.

`onnxruntime.quantization.quantize_static` in QDQ format with what TensorRT's explicit
quantization accepts: symmetric INT8 activations (zero point 0), symmetric per-channel INT8
weights kept as float initializers behind a QuantizeLinear -> DequantizeLinear pair (the
TensorRT 8.x parser form), float biases, and a dedicated Q/DQ pair per consumer (TensorRT does
not share one pair between nodes). Only the inputs of Conv and of the residual Add are
quantized: NVIDIA's placement recommendation (quantize the inputs of weighted ops and the
residual input so Conv+Add fuse in INT8, leave the outputs of weighted ops in high precision).

The same Q/DQ ONNX runs under ONNX Runtime on any CPU, so its accuracy is measured before any
engine is built; the benchmark may also run it there directly.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
from tqdm import tqdm

from edgeseg.errors import ConfigError
from edgeseg.runtime.preprocess import InputSpec, preprocess_rgb

QUANTIZED_OP_TYPES = ("Conv", "Add")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# TensorRT-compatible QDQ layout (see the module docstring for why each is set).
TENSORRT_QDQ_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "CalibTensorRangeSymmetric": True,
    "AddQDQPairToWeight": True,
    "QuantizeBias": False,
    "DedicatedQDQPair": True,
}


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs warnings (pre-processing hints) through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _ort_quantization():
    try:
        from onnxruntime import quantization
    except ImportError:
        raise ConfigError("INT8 Q/DQ export needs onnxruntime (pip install onnxruntime)") from None
    return quantization


def calibration_method(name: str):
    """`CalibrationMethod` for minmax / entropy / percentile."""
    q = _ort_quantization()
    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    if name not in methods:
        raise ConfigError(f"--calib-method {name}: choose one of {', '.join(CALIBRATION_METHODS)}")
    return methods[name]


def fold_constants(src: Path, dst: Path) -> Path:
    """Constant-fold the static-shape ONNX (shape arithmetic, Resize sizes) with ONNX Runtime's
    basic graph optimizations and infer all shapes: the graph TensorRT parses and the quantizer
    calibrates. Only standard ONNX ops come out (functions such as HardSwish may be inlined)."""
    q = _ort_quantization()
    with _quiet():
        q.quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return dst


class _ImageReader:
    """Calibration batches through exactly the manifest's preprocessing."""

    def __init__(self, images: list[np.ndarray], spec: InputSpec, input_name: str, progress: bool, desc: str) -> None:
        self.images, self.spec, self.input_name = images, spec, input_name
        self.index = 0
        self.bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress)

    def get_next(self) -> dict | None:
        if self.index >= len(self.images):
            self.bar.close()
            return None
        batch = preprocess_rgb(self.images[self.index], self.spec)
        self.index += 1
        self.bar.update()
        return {self.input_name: batch}

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def rewind(self) -> None:
        self.index = 0


@dataclass
class QdqModel:
    path: Path
    method: str
    calibration_images: int
    op_types: tuple[str, ...]
    quantized_nodes: list[str]
    excluded_nodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": "QDQ (explicit quantization)", "tool": "onnxruntime.quantization.quantize_static",
                "activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel (axis 0)",
                "calibration_method": self.method, "calibration_images": self.calibration_images,
                "quantized_op_types": list(self.op_types), "quantized_nodes": len(self.quantized_nodes),
                "kept_in_float": list(self.excluded_nodes)}


def _input_name(path: Path) -> str:
    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def quantized_nodes(path: Path, op_types: Iterable[str] = QUANTIZED_OP_TYPES) -> list[str]:
    """Nodes of `op_types` in a Q/DQ model that read at least one DequantizeLinear output."""
    model = onnx.load(str(path))
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    wanted = set(op_types)
    return [n.name for n in model.graph.node if n.op_type in wanted and any(i in dq_outputs for i in n.input)]


def quantize_qdq(float_onnx: Path, out: Path, images: list[np.ndarray], spec: InputSpec, *, method: str = "minmax",
                 nodes_to_exclude: Iterable[str] = (), op_types: tuple[str, ...] = QUANTIZED_OP_TYPES,
                 calibration_cache: Path | None = None, progress: bool = True) -> QdqModel:
    """Write the Q/DQ INT8 model of `float_onnx` (already constant-folded) to `out`.

    `images` are RGB uint8 calibration images; they go through `preprocess_rgb(image, spec)`,
    the manifest's preprocessing. With `calibration_cache` the tensor ranges are computed once
    and reused, so re-quantizing with other `nodes_to_exclude` costs no calibration run.
    """
    if not images:
        raise ConfigError("INT8 needs at least one calibration image")
    q = _ort_quantization()
    reader = _ImageReader(images, spec, _input_name(float_onnx), progress, f"calibrate {method}")
    excluded = list(nodes_to_exclude)
    with _quiet():
        q.quantize_static(
            str(float_onnx), str(out), reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
            reduce_range=False, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
            op_types_to_quantize=list(op_types), nodes_to_exclude=excluded,
            calibrate_method=calibration_method(method), extra_options=dict(TENSORRT_QDQ_OPTIONS),
            calibration_cache_path=str(calibration_cache) if calibration_cache else None,
        )
    reader.bar.close()
    return QdqModel(path=out, method=method, calibration_images=len(images), op_types=tuple(op_types),
                    quantized_nodes=quantized_nodes(out, op_types), excluded_nodes=excluded)


def _gated_qdq_model(qdq_path: Path, nodes: list[str]) -> onnx.ModelProto:
    """The Q/DQ model with one switch per node: input `qdq_gates[k]` = 1 runs node k on its Q/DQ
    inputs, 0 on the float tensors those Q/DQ pairs wrap (x + gate * (dq(q(x)) - x)).

    One session then measures every node's effect; with a dedicated Q/DQ pair per consumer,
    switching one node never changes what another node reads.
    """
    from onnx import TensorProto, helper

    model = onnx.load(str(qdq_path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    graph.input.append(helper.make_tensor_value_info("qdq_gates", TensorProto.FLOAT, [len(nodes)]))
    by_name = {n.name: n for n in graph.node}
    added = []
    for k, name in enumerate(nodes):
        index = helper.make_tensor(f"qdq_gate_index_{k}", TensorProto.INT64, [], [k])
        graph.initializer.append(index)
        gate = f"qdq_gate_{k}"
        added.append(helper.make_node("Gather", ["qdq_gates", index.name], [gate], name=f"{gate}_gather"))
        node = by_name[name]
        for i, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            source = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None
            if source is None:
                continue
            stem = f"{gate}_in{i}"
            added += [helper.make_node("Sub", [tensor, source], [f"{stem}_noise"], name=f"{stem}_sub"),
                      helper.make_node("Mul", [f"{stem}_noise", gate], [f"{stem}_gated"], name=f"{stem}_mul"),
                      helper.make_node("Add", [source, f"{stem}_gated"], [f"{stem}_out"], name=f"{stem}_add")]
            node.input[i] = f"{stem}_out"
    graph.node.extend(added)
    # Topological order: the gates read tensors produced anywhere in the graph.
    return _sorted_topologically(model)


def _sorted_topologically(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("graph has a cycle or a missing input")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def layer_sensitivity(float_onnx: Path, qdq: QdqModel, images: list[np.ndarray], spec: InputSpec, *,
                      progress: bool = True) -> list[tuple[str, float]]:
    """How much each quantized node alone costs: the argmax agreement with the float model gained
    when that one node runs on float inputs while every other node stays quantized, measured on
    `images` through the real Q/DQ graph under ONNX Runtime. Most sensitive first.
    """
    import onnxruntime as ort

    nodes = list(qdq.quantized_nodes)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    float_session = ort.InferenceSession(str(float_onnx), options, providers=["CPUExecutionProvider"])
    gated = ort.InferenceSession(_gated_qdq_model(qdq.path, nodes).SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
    input_name = float_session.get_inputs()[0].name
    batches = [preprocess_rgb(image, spec) for image in images]
    reference = [float_session.run(None, {input_name: b})[0] for b in batches]

    def agreement(gates: np.ndarray) -> tuple[float, float]:
        agree = error = 0.0
        for batch, ref in zip(batches, reference):
            out = gated.run(None, {input_name: batch, "qdq_gates": gates})[0]
            if out.ndim == 4:  # logits: compare class decisions and the logits themselves
                agree += float((out.argmax(1) == ref.argmax(1)).mean())
                error += float(np.abs(out - ref).mean())
            else:  # mask output
                agree += float((out == ref).mean())
        return agree / len(batches), error / len(batches)

    ones = np.ones(len(nodes), np.float32)
    base_agree, base_error = agreement(ones)
    scores = []
    for k, name in enumerate(tqdm(nodes, desc="layer sensitivity", unit="layer", disable=not progress)):
        gates = ones.copy()
        gates[k] = 0.0
        agree, error = agreement(gates)
        # Agreement decides; the logit error breaks ties between layers that flip no pixel here.
        scores.append((name, agree - base_agree, base_error - error))
    scores.sort(key=lambda item: (item[1], item[2]), reverse=True)
    return [(name, round(gain, 6)) for name, gain, _ in scores]


def export_qdq(job, path: Path) -> QdqModel:
    """Trace `job`'s model, fold it, and write its Q/DQ INT8 ONNX to `path` (the host-cpu INT8 artifact:
    the same quantizer as the Jetson bundles, run under ONNX Runtime by the benchmark)."""
    from edgeseg.convert.calibration import calibration_images
    from edgeseg.convert.onnx_export import export_onnx_file, input_spec

    images = calibration_images(job.calibration, int(job.options.get("calib_images") or 64), precision="int8")
    traced = path.with_name(f"{path.stem}.traced.onnx")
    folded = path.with_name(f"{path.stem}.float.onnx")
    try:
        fold_constants(export_onnx_file(job, traced), folded)
        return quantize_qdq(folded, path, images, input_spec(job), method=job.options.get("calib_method") or "minmax",
                            progress=job.progress)
    finally:
        traced.unlink(missing_ok=True)
        folded.unlink(missing_ok=True)
