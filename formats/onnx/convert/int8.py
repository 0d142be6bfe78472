"""host-cpu INT8: the Q/DQ form ONNX Runtime's CPU provider fuses into its integer kernels.

The TensorRT form (`convert.qdq`: symmetric int8 activations, float weights behind Q -> DQ, only
Conv and Add inputs quantized) runs 2.3-2.5x *slower* than FP32 under ONNX Runtime: every Conv
output goes back to float, and ORT fuses none of it. What ORT runs fastest, measured side by side
on this project's 2-core AVX-512 VNNI CPU (docs/benchmarks.md, "host-cpu INT8 form"):

- QDQ format (ORT fuses DQ -> op -> Q into QLinearConv / QLinearAdd / QLinearMul /
  QLinearGlobalAveragePool / QLinearAveragePool / QLinearConcat at session creation; QOperator writes the same kernels
  into the file and measured no faster, and QDQ stays readable by any ONNX tool);
- uint8 activations with a zero point (asymmetric ranges: ReLU outputs use all 256 levels), int8
  symmetric per-channel weights stored as int8 initializers (U8S8, the VNNI dot-product form);
- every op with an integer kernel quantized, so activations stay uint8 from one Conv to the next:
  Conv, Add (residuals), Mul (the x * HardSigmoid(x) of HardSwish and the squeeze-excitation scale),
  GlobalAveragePool, AveragePool (image pooling over a window, models/image_pooling.py), Concat, Resize,
  and Relu (folded into the preceding quantization range).
  Quantizing Conv and Add only left the HardSwish and SE chains in float with a Q/DQ round trip
  around each and was slower; HardSigmoid has no integer kernel and runs in float between DQ and Q;
- the final upsampling of the logits stays float (`logit_resizes`): quantized, it ended in a
  DequantizeLinear over H x W x classes values, ~10 % of INT8 time at 640;
- `reduce_range` (7-bit weights) only on x86 CPUs without VNNI, where the u8 x s8 multiply-add
  (vpmaddubsw) can saturate; VNNI and ARM64 dot products cannot.

Calibration methods, the accuracy budget and the sensitive-layer search are `convert.qdq`'s:
this module only supplies the quantizer that writes the all-INT8 model.
"""

from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.convert import qdq
from edgeseg.convert.export import ExportJob, ExportResult
from edgeseg.convert.onnx_export import (
    OPSET,
    export_onnx_file,
    input_spec,
    metadata_props,
    output_spec,
    quantize_job,
    write_metadata_props,
)
from edgeseg.convert.options import DEFAULT_CALIBRATION_METHOD, DEFAULT_PERCENTILE
from edgeseg.errors import ConfigError
from edgeseg.runtime.preprocess import InputSpec

ORT_INT8_OP_TYPES = ("Conv", "Add", "Mul", "GlobalAveragePool", "AveragePool", "Concat", "Resize", "Relu")
# The asymmetric-activation, symmetric-weight QDQ layout ORT's CPU kernels fuse (module docstring).
ORT_QDQ_OPTIONS = {"ActivationSymmetric": False, "WeightSymmetric": True}
# CPU flags whose int8 dot product cannot saturate (x86); without one, weights use 7 bits.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_has_vnni(cpuinfo: str | None = None) -> bool:
    """True when this x86 CPU has an int8 dot-product instruction (VNNI/AMX), read from /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {word for line in cpuinfo.splitlines() if line.startswith("flags") for word in line.split()}
    return any(flag in flags for flag in VNNI_FLAGS)


def needs_reduce_range(machine: str | None = None, cpuinfo: str | None = None) -> bool:
    """7-bit weights for x86 without VNNI (vpmaddubsw saturates u8 x s8 pairs); 8 bits everywhere else."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return False
    return not cpu_has_vnni(cpuinfo)


@dataclass
class OrtInt8Model(qdq.QdqModel):
    """A `qdq.QdqModel` in ONNX Runtime's fused-kernel form (the manifest says which form it is)."""

    reduce_range: bool = False

    def to_dict(self) -> dict:
        record = super().to_dict()
        record.update({
            "format": "QDQ for ONNX Runtime's CPU integer kernels (QLinearConv, QLinearAdd, QLinearMul, ...)",
            "activations": "uint8 asymmetric per-tensor",
            "weights": "int8 symmetric per-channel (axis 0), int8 initializers",
            "reduce_range": self.reduce_range,
        })
        return record


def logit_resizes(model_path: Path) -> list[str]:
    """The Resize nodes between the last Conv and the model output (the upsampling of the logits).

    They stay float: quantized, the full-resolution logits would be rounded to 256 levels (ties for
    the argmax) and dequantized over H x W x classes values, the largest tensor of the model."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    found, pending, seen = [], [o.name for o in graph.output], set()
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in seen or node.op_type == "Conv":
            continue
        seen.add(node.name)
        if node.op_type == "Resize":
            found.append(node.name)
        pending.extend(node.input)
    return found


def quantize_ort(float_onnx: Path, out: Path, images: list[np.ndarray], spec: InputSpec, *,
                 method: str = DEFAULT_CALIBRATION_METHOD, percentile: float = DEFAULT_PERCENTILE,
                 op_types: tuple[str, ...] = ORT_INT8_OP_TYPES, reduce_range: bool | None = None,
                 progress: bool = True) -> OrtInt8Model:
    """Write the ORT-form INT8 model of `float_onnx` (constant-folded) to `out`, calibrated on
    `images` (RGB uint8, through `preprocess_rgb(image, spec)`) with one of `CALIBRATION_METHODS`."""
    if not images:
        raise ConfigError("INT8 needs at least one calibration image")
    q = qdq.ort_quantization("host-cpu INT8")
    enum, _ = qdq.calibration_method(method, percentile, symmetric=False)
    reduce = needs_reduce_range() if reduce_range is None else reduce_range
    with tempfile.TemporaryDirectory(prefix="edgeseg-ort-int8-") as tmp:
        cache = qdq.calibrate(float_onnx, images, spec, Path(tmp) / "ranges.json", method=method,
                              percentile=percentile, op_types=op_types, progress=progress, symmetric=False)
        with qdq.quiet_ort_quantization():
            q.quantize_static(
                str(float_onnx), str(out), None, quant_format=q.QuantFormat.QDQ, per_channel=True,
                reduce_range=reduce, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                op_types_to_quantize=list(op_types), nodes_to_exclude=logit_resizes(float_onnx), calibrate_method=enum,
                extra_options=dict(ORT_QDQ_OPTIONS), calibration_cache_path=str(cache),
            )
    return OrtInt8Model(path=out, method=method, calibration_images=len(images), op_types=tuple(op_types),
                        quantized_nodes=qdq.quantized_nodes(out, op_types),
                        percentile=percentile if method == "percentile" else None, reduce_range=reduce)


def export(job: ExportJob, staging: Path) -> ExportResult:
    """The host-cpu INT8 exporter: trace, constant-fold, quantize in ORT's form within budget."""
    if job.precision != "int8":
        raise ConfigError(f"{job.target.name}: the ONNX Runtime INT8 exporter writes int8, not {job.precision}")
    path = job.staged_file(staging, "onnx")
    traced, folded = job.staged_file(staging, "onnx", "traced"), job.staged_file(staging, "onnx", "float")
    details = {"opset": OPSET, "exporter": "torch.onnx.export (TorchScript)"}
    try:
        qdq.fold_constants(export_onnx_file(job, traced), folded)
        # qdq's budget search with ORT's quantizer: the ORT-form INT8 model within the INT8 budget
        verification, details["quantization"] = quantize_job(job, folded, path, output_spec(job),
                                                             quantize=quantize_ort)
    finally:
        traced.unlink(missing_ok=True)
        folded.unlink(missing_ok=True)
    props = metadata_props(job, input_spec(job), output_spec(job))
    write_metadata_props(path, props)  # labels and normalization travel with the INT8 model as with FP32
    details["metadata_props"] = sorted(props)
    import onnx

    return ExportResult(artifact=path, input=input_spec(job).to_dict(), output=output_spec(job), details=details,
                        tools={"onnx": onnx.__version__}, verification=verification)
