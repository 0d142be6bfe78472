"""The Q/DQ ONNX machinery every ONNX-based INT8 shares: TensorRT's bundles (formats/tensorrt/convert/qdq.py
places the pairs the way TensorRT wants them) and ONNX Runtime's host-cpu INT8 (formats/onnx/convert/int8.py
writes its fused-kernel form).

Ranges come from onnxruntime's calibrators (`calibrate`: minmax-mean, minmax, entropy, percentile) run on
real images through the manifest's preprocessing. A Q/DQ ONNX runs under ONNX Runtime on any CPU, so its
accuracy is measured before any engine is built; when it misses the budget, `quantize_within_budget` keeps
the layers INT8 hurts most in float (`layer_sensitivity` ranks them, `keep_in_float` is the switch).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import onnx
from tqdm import tqdm

from edgeseg.convert.int8_budget import attempt_record, rank_by_gates
from edgeseg.convert.onnx_graph import drop_unused, prune_opset_imports, sorted_topologically
from edgeseg.convert.options import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_METHOD,
    DEFAULT_PERCENTILE,
    PERCENTILE_ABOVE,
    PERCENTILE_MAX,
)
from edgeseg.errors import ConfigError
from edgeseg.optional import require
from edgeseg.runtime.preprocess import InputSpec, preprocess_rgb

HISTOGRAM_BATCH = 8  # images whose activations a histogram calibrator holds at once (memory at 1024 px)


@contextlib.contextmanager
def quiet_ort_quantization():
    """onnxruntime.quantization logs warnings (pre-processing hints) through the root logger and
    prints to stdout; both are noise under a progress bar."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def ort_quantization(purpose: str = "INT8 Q/DQ export"):
    """`onnxruntime.quantization`, or one line saying that `purpose` needs ONNX Runtime and which extra brings it."""
    return require("onnxruntime.quantization", purpose=purpose)


def calibration_method(name: str, percentile: float = DEFAULT_PERCENTILE, *, symmetric: bool = True):
    """onnxruntime's `CalibrationMethod` and calibrator options for one of `CALIBRATION_METHODS`
    (symmetric ranges for int8 activations; `symmetric=False` for uint8 ones with a zero point)."""
    q = ort_quantization()
    if name not in CALIBRATION_METHODS:
        raise ConfigError(f"--calib-method {name}: choose one of {', '.join(CALIBRATION_METHODS)}")
    if name == "percentile" and not PERCENTILE_ABOVE < percentile <= PERCENTILE_MAX:  # the request checked it
        raise ConfigError(f"--calib-percentile {percentile}: must be a number above {PERCENTILE_ABOVE:g} and at most "
                          f"{PERCENTILE_MAX:g}")
    options: dict = {"symmetric": symmetric}
    if name == "minmax-mean":
        return q.CalibrationMethod.MinMax, {**options, "moving_average": True}
    if name == "minmax":
        return q.CalibrationMethod.MinMax, options
    options["max_intermediate_outputs"] = HISTOGRAM_BATCH
    if name == "entropy":  # quantize_static cannot set the bins; its 128/128 default degenerates to minmax
        return q.CalibrationMethod.Entropy, {**options, "num_bins": 2048, "num_quantized_bins": 128}
    return q.CalibrationMethod.Percentile, {**options, "percentile": percentile, "num_bins": 2048}


def calibrate(float_onnx: Path, images: list[np.ndarray], spec: InputSpec, cache: Path, *, method: str,
              op_types: tuple[str, ...], percentile: float = DEFAULT_PERCENTILE, progress: bool = True,
              symmetric: bool = True) -> Path:
    """Estimate the range of every tensor INT8 will quantize and save them to `cache` (onnxruntime's
    calibration-cache JSON, which `quantize_static` reads instead of calibrating itself)."""
    ort_quantization()  # one clear line when onnxruntime is missing
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    enum, options = calibration_method(method, percentile, symmetric=symmetric)
    reader = _ImageReader(images, spec, _input_name(float_onnx), progress, f"calibrate {method}")
    with tempfile.TemporaryDirectory(prefix="edgeseg-calib-") as tmp, quiet_ort_quantization():
        calibrator = create_calibrator(Path(float_onnx), list(op_types),
                                       augmented_model_path=str(Path(tmp) / f"augmented{float_onnx.suffix}"),
                                       calibrate_method=enum, providers=["CPUExecutionProvider"], extra_options=options)
        # _ImageReader has CalibrationDataReader's interface without importing onnxruntime with this module.
        calibrator.collect_data(cast(CalibrationDataReader, reader))
        save_tensors_data(calibrator.compute_data(), cache)
    reader.bar.close()
    return cache


def fold_constants(src: Path, dst: Path) -> Path:
    """Constant-fold the static-shape ONNX (shape arithmetic, Resize sizes) with ONNX Runtime's
    basic graph optimizations and infer all shapes: the graph TensorRT parses and the quantizers
    calibrate. Only standard ONNX ops come out (functions such as HardSwish may be inlined), and only
    the opset domains the nodes use are declared."""
    q = ort_quantization()
    with quiet_ort_quantization():
        q.quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    # The optimizer declares every domain it knows (com.microsoft, org.pytorch.aten, ...): keep the used ones.
    onnx.save(prune_opset_imports(onnx.load(str(dst))), str(dst))
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
    percentile: float | None = None

    def to_dict(self) -> dict:
        return {"format": "QDQ (explicit quantization)",
                "tool": "edgeseg TensorRT Q/DQ placement, onnxruntime calibrators",
                "placement": "one pair per tensor: Conv inputs and weights, residual Add skip inputs",
                "activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel (axis 0)",
                "calibration_method": self.method,
                **({"calibration_percentile": self.percentile} if self.percentile is not None else {}),
                "calibration_images": self.calibration_images,
                "quantized_op_types": list(self.op_types), "quantized_nodes": len(self.quantized_nodes),
                "kept_in_float": list(self.excluded_nodes)}


def _input_name(path: Path) -> str:
    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def quantized_nodes(path: Path, op_types: Iterable[str]) -> list[str]:
    """Nodes of `op_types` in a Q/DQ model that read at least one DequantizeLinear output."""
    model = onnx.load(str(path))
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    wanted = set(op_types)
    return [n.name for n in model.graph.node if n.op_type in wanted and any(i in dq_outputs for i in n.input)]


def _qdq_inputs(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]) -> Iterable[tuple[int, str]]:
    """(input index, float source) of each input of `node` read through a QuantizeLinear ->
    DequantizeLinear pair: the switch `keep_in_float` and `_gated_qdq_model` both turn."""
    for i, tensor in enumerate(node.input):
        dq = producer.get(tensor)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            yield i, q.input[0]


def keep_in_float(qdq_path: Path, out: Path, nodes: Iterable[str]) -> Path:
    """Write the Q/DQ model with `nodes` running in float: each of them reads the float tensors its
    QuantizeLinear -> DequantizeLinear inputs (activations and weights) wrap. Only their reads are
    rewired: another node that quantizes the same tensor keeps reading the shared pair, and a pair
    nobody reads any more is dropped. The calibrated ranges of everything else are kept as they are.

    This is exactly what `layer_sensitivity` switches per node, so its ranking predicts the effect.
    TensorRT runs such a layer in high precision (the graph's float type on a strongly typed
    TensorRT 10 network; FP16 on 8.x, whose INT8 build also enables FP16).
    """
    model = onnx.load(str(qdq_path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    wanted = set(nodes)
    missing = wanted - {n.name for n in graph.node}
    if missing:
        raise ConfigError(f"{qdq_path.name}: no node named {sorted(missing)[0]!r} to keep in float")
    for node in graph.node:
        if node.name in wanted:
            for i, source in list(_qdq_inputs(node, producer)):
                node.input[i] = source
    drop_unused(model)
    onnx.save(model, str(out))
    return out


def _gated_qdq_model(qdq_path: Path, nodes: list[str]) -> onnx.ModelProto:
    """The Q/DQ model with one switch per node: input `qdq_gates[k]` = 1 runs node k on its Q/DQ
    inputs, 0 on the float tensors those Q/DQ pairs wrap (`Where`: an exact selection, no arithmetic).

    One session then measures every node's effect; a switch sits on the node's own reads, so
    switching one node never changes what another node reads, even where they share a Q/DQ pair.
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
        added += [helper.make_node("Gather", ["qdq_gates", index.name], [f"{gate}_value"], name=f"{gate}_gather"),
                  helper.make_node("Cast", [f"{gate}_value"], [gate], name=f"{gate}_cast", to=TensorProto.BOOL)]
        node = by_name[name]
        for i, source in list(_qdq_inputs(node, producer)):
            stem = f"{gate}_in{i}"
            added.append(helper.make_node("Where", [gate, node.input[i], source], [f"{stem}_out"],
                                          name=f"{stem}_where"))
            node.input[i] = f"{stem}_out"
    graph.node.extend(added)
    # Topological order: the gates read tensors produced anywhere in the graph.
    return sorted_topologically(model)


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
    # np.asarray: ONNX Runtime types an output as dense or sparse; these models' outputs are dense.
    reference = [np.asarray(float_session.run(None, {input_name: b})[0]) for b in batches]

    return rank_by_gates(nodes,
                         lambda batch, gates: np.asarray(gated.run(None, {input_name: batch, "qdq_gates": gates})[0]),
                         batches, reference, np.float32, progress=progress, unit="layer")


def quantize_within_budget(float_onnx: Path, out: Path, images: list[np.ndarray], spec: InputSpec,
                           verify: Callable[[Path], dict], *, quantize: Callable[..., QdqModel],
                           method: str = DEFAULT_CALIBRATION_METHOD, percentile: float = DEFAULT_PERCENTILE,
                           max_float_layers: int | None = None, sensitivity_images: int = 4,
                           progress: bool = True) -> tuple[QdqModel, dict, dict]:
    """Quantize, verify, and if the budget is missed keep the layers INT8 hurts most in float.

    `verify(path)` scores a Q/DQ model and returns `convert.verify.compare`'s summary. On a miss the
    quantized layers are ranked by `layer_sensitivity` (on the first `sensitivity_images` calibration
    images) and the worst 1, 2, 4, ... of them (at most `max_float_layers`, by default half) are kept in
    float with `keep_in_float`, the very switch the ranking measured, until the model fits.
    `quantize` writes the all-INT8 model: TensorRT's placement (formats/tensorrt/convert/qdq.py's
    `quantize_qdq`) or ONNX Runtime's fused-kernel form (formats/onnx/convert/int8.py's `quantize_ort`).
    Returns the model, its verification and the manifest's quantization record.
    """
    qdq = quantize(float_onnx, out, images, spec, method=method, percentile=percentile, progress=progress)
    verification = verify(out)
    attempts = [attempt_record([], verification)]
    ranking: list[tuple[str, float]] = []
    if not verification["passed"]:
        ranking = layer_sensitivity(float_onnx, qdq, images[:sensitivity_images], spec, progress=progress)
        most = min(max_float_layers or len(ranking) // 2, len(ranking))
        all_int8 = out.with_name(f"{out.stem}.all-int8{out.suffix}")
        out.replace(all_int8)
        try:
            keep, excluded = 1, []
            while not verification["passed"] and keep <= most:
                excluded = [name for name, _ in ranking[:keep]]
                keep_in_float(all_int8, out, excluded)
                verification = verify(out)
                attempts.append(attempt_record(excluded, verification))
                keep = most if keep < most < 2 * keep else 2 * keep
        finally:
            all_int8.unlink(missing_ok=True)
        qdq.excluded_nodes = excluded
        qdq.quantized_nodes = quantized_nodes(out, qdq.op_types)
    gains = dict(ranking)
    record = {**qdq.to_dict(), "budget_search": attempts,
              # Argmax agreement with the float model gained by running each of them alone in float.
              "kept_in_float_agreement_gain": {name: gains[name] for name in qdq.excluded_nodes}}
    return qdq, verification, record
