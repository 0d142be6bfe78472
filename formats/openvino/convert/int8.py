"""INT8 OpenVINO IR through NNCF's post-training quantization (`nncf.quantize`), within the INT8 budget.

Calibration images come from edgeseg's sources (`--calib DIR` or `synthetic:N`, convert.calibration)
through exactly the manifest's preprocessing; NNCF's PERFORMANCE preset (symmetric int8 activations,
per-channel int8 weights: the form OpenVINO's CPU plugin runs on its VNNI/AMX kernels) with fast bias
correction. The graph is the one every format exports (the exact ASPP rewrite included).

The accuracy budget and the sensitive-layer fallback are those of the ONNX INT8 paths (convert.qdq):
the all-INT8 IR is verified against PyTorch; on a miss, every quantized op is ranked by the argmax
agreement with the float IR gained when that op alone reads float inputs and float weights (one
gated copy of the quantized model measures them all, `layer_sensitivity`), and the worst 1, 2, 4,
... ops (at most half of them) are quantized again as NNCF's
`IgnoredScope` until the IR fits. The manifest names the ops kept in float and every attempt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.convert.calibration import calibration_images
from edgeseg.convert.export import ExportJob, ExportResult
from edgeseg.convert.int8_budget import attempt_record, rank_by_gates
from edgeseg.convert.onnx_export import OPSET, export_onnx_file, input_spec
from edgeseg.convert.options import DEFAULT_CALIBRATION_IMAGES
from edgeseg.errors import ConfigError
from edgeseg.formats.openvino.convert.export import convert_onnx, openvino_module, result, save_ir, verify_ir
from edgeseg.optional import require
from edgeseg.runtime.preprocess import InputSpec, preprocess_rgb

# Ops that read a tensor only for its shape: no arithmetic to keep in float.
_SHAPE_ONLY = ("ShapeOf",)


def _nncf():
    return require("nncf", purpose="OpenVINO INT8 conversion")


def quantize(float_model: Any, images: list[np.ndarray], spec: InputSpec, ignored: list[str]) -> Any:
    """NNCF's INT8 model of `float_model` calibrated on `images`, with the ops named in `ignored` left in float."""
    nncf = _nncf()
    dataset = nncf.Dataset(images, lambda image: preprocess_rgb(image, spec))
    return nncf.quantize(float_model.clone(), dataset, subset_size=len(images),
                         preset=nncf.QuantizationPreset.PERFORMANCE, target_device=nncf.TargetDevice.CPU,
                         ignored_scope=nncf.IgnoredScope(names=list(ignored)) if ignored else None)


def _float_source(op_input: Any, float_ops: dict[str, Any]) -> Any | None:
    """The float tensor a quantized input stands for: a FakeQuantize's input (activations), or for weights
    compressed to int8 (Constant -> Convert -> Multiply) the float constant of the same op in the float model."""
    ov = openvino_module()
    source = op_input.get_source_output()
    node = source.get_node()
    if node.get_type_name() == "FakeQuantize":
        return node.input_value(0)
    if node.get_type_name() == "Multiply" and any(
            v.get_node().get_type_name() == "Convert" for v in node.input_values()):
        twin = float_ops.get(op_input.get_node().get_friendly_name())
        if twin is None:
            return None
        weights = twin.input_value(op_input.get_index()).get_node()
        if weights.get_type_name() != "Constant":
            return None
        return ov.opset13.constant(weights.get_data()).output(0)
    return None


def quantized_ops(model: Any) -> list[str]:
    """Friendly names of the ops of an NNCF INT8 model that read a FakeQuantize output (activations
    quantized), in graph order."""
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() not in ("FakeQuantize", *_SHAPE_ONLY)
            and any(i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())]


def _gated_model(quantized: Any, float_model: Any, names: list[str]) -> Any:
    """A copy of `quantized` with one switch per op: gate k = True runs op k on its quantized inputs, False on
    the float tensors they stand for (`Select`: an exact choice, no arithmetic)."""
    ov = openvino_module()
    ops = ov.opset13
    model = quantized.clone()
    by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    float_ops = {op.get_friendly_name(): op for op in float_model.get_ordered_ops()}
    gates = ops.parameter([len(names)], ov.Type.boolean, name="edgeseg_gates")
    for k, name in enumerate(names):
        gate = ops.gather(gates, ops.constant(np.int64(k)), ops.constant(np.int64(0)))
        for op_input in by_name[name].inputs():
            source = _float_source(op_input, float_ops)
            if source is not None:
                op_input.replace_source_output(ops.select(gate, op_input.get_source_output(), source).output(0))
    return ov.Model(model.outputs, [*model.get_parameters(), gates], "edgeseg-gated")


def layer_sensitivity(quantized: Any, float_model: Any, images: list[np.ndarray], spec: InputSpec, *,
                      progress: bool = True) -> list[tuple[str, float]]:
    """How much each quantized op alone costs: the argmax agreement with the float model gained when that
    op runs on float inputs and weights while every other op stays quantized (OpenVINO CPU, f32). Most
    sensitive first; the logit error breaks ties between ops that flip no pixel on these images."""
    ov = openvino_module()
    names = quantized_ops(quantized)
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    reference_model = core.compile_model(float_model, "CPU", config)
    gated = core.compile_model(_gated_model(quantized, float_model, names), "CPU", config)
    batches = [preprocess_rgb(image, spec) for image in images]
    reference = [np.array(reference_model([b])[0]) for b in batches]

    return rank_by_gates(names, lambda batch, switches: gated([batch, switches])[0], batches, reference, bool,
                         progress=progress, unit="op")


def export(job: ExportJob, staging: Path) -> ExportResult:
    """Trace, convert, quantize with NNCF; keep the most sensitive ops in float until the budget is met."""
    if job.precision != "int8":
        raise ConfigError(f"{job.target.name}: the OpenVINO INT8 exporter writes int8, not {job.precision}")
    images = calibration_images(job.calibration, int(job.options.get("calib_images") or DEFAULT_CALIBRATION_IMAGES))
    _nncf()  # one line naming the extra before the trace when NNCF is missing
    spec = input_spec(job)
    traced = export_onnx_file(job, job.staged_file(staging, "onnx", "traced"))
    try:
        float_model = convert_onnx(traced)
    finally:
        traced.unlink(missing_ok=True)
    xml = job.staged_file(staging, "openvino")

    def write_and_verify(ignored: list[str]) -> tuple[Any, dict, dict]:
        model = quantize(float_model, images, spec, ignored)
        record = save_ir(job, model, xml)
        return model, record, verify_ir(job, xml, record, progress=job.progress)

    quantized, record, verification = write_and_verify([])
    all_int8 = quantized
    attempts, kept, ranking = [attempt_record([], verification)], [], []
    if not verification["passed"]:
        sensitivity_images = int(job.options.get("int8_sensitivity_images") or 4)
        ranking = layer_sensitivity(all_int8, float_model, images[:sensitivity_images], spec, progress=job.progress)
        most = min(job.options.get("int8_max_float_layers") or len(ranking) // 2, len(ranking))
        keep = 1
        while not verification["passed"] and keep <= most:
            kept = [name for name, _ in ranking[:keep]]
            quantized, record, verification = write_and_verify(kept)
            attempts.append(attempt_record(kept, verification))
            keep = most if keep < most < 2 * keep else 2 * keep
    gains = dict(ranking)
    nncf = _nncf()
    quantization = {
        "tool": f"NNCF {nncf.__version__} nncf.quantize (post-training)", "preset": "PERFORMANCE",
        "target_device": "CPU", "activations": "int8 symmetric per-tensor (FakeQuantize)",
        "weights": "int8 symmetric per-channel", "calibration": job.calibration, "calibration_images": len(images),
        "quantized_ops": len(quantized_ops(quantized)), "kept_in_float": kept, "budget_search": attempts,
        # Argmax agreement with the float model gained by running each of them alone in float.
        "kept_in_float_agreement_gain": {name: gains[name] for name in kept},
    }
    details = {"opset": OPSET, "quantization": quantization,
               "exporter": "torch.onnx.export (TorchScript), then openvino.convert_model and nncf.quantize"}
    return result(job, xml, record, verification, details)
