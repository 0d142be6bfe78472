"""TensorRT's INT8: Q/DQ nodes in the ONNX, placed the way TensorRT 8.5/8.6/10 wants them.

The calibration, the budget search and the rest of the Q/DQ machinery are convert/qdq.py's (ONNX Runtime's
host-cpu INT8 shares them); this module writes the all-INT8 model: `qdq_placement` puts one symmetric
QuantizeLinear -> DequantizeLinear pair on each tensor TensorRT's placement guidance quantizes: Conv inputs
(activation per tensor, weight per output channel, kept float behind the pair), the residual input of each
residual Add; never a weighted op's output for its own sake, never a pair per consumer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgeseg.convert.onnx_graph import prune_opset_imports, sorted_topologically
from edgeseg.convert.options import DEFAULT_CALIBRATION_METHOD, DEFAULT_PERCENTILE
from edgeseg.convert.qdq import QdqModel, calibrate, calibration_method, quantized_nodes
from edgeseg.errors import ConfigError
from edgeseg.formats.tensorrt.convert.qdq_placement import insert_qdq, tensorrt_placement
from edgeseg.runtime.preprocess import InputSpec

QUANTIZED_OP_TYPES = ("Conv", "Add")  # what TensorRT's placement quantizes the inputs of


def _absmax_ranges(cache: Path) -> dict[str, float]:
    """tensor -> max(|low|, |high|) from an onnxruntime calibration cache."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    return {name: float(max(np.abs(np.asarray(t.range_value[0])).max(), np.abs(np.asarray(t.range_value[1])).max()))
            for name, t in load_tensors_data(cache).items()}


def quantize_qdq(float_onnx: Path, out: Path, images: list[np.ndarray], spec: InputSpec, *,
                 method: str = DEFAULT_CALIBRATION_METHOD, percentile: float = DEFAULT_PERCENTILE,
                 op_types: tuple[str, ...] = QUANTIZED_OP_TYPES, progress: bool = True) -> QdqModel:
    """Write the Q/DQ INT8 model of `float_onnx` (already constant-folded) to `out`.

    `images` are RGB uint8 calibration images; they go through `preprocess_rgb(image, spec)`,
    the manifest's preprocessing; `calibrate` estimates the ranges of the inputs of `op_types`, and
    `qdq_placement` inserts one pair per tensor where TensorRT's guidance puts them.
    """
    if not images:
        raise ConfigError("INT8 needs at least one calibration image")
    calibration_method(method, percentile)  # one clear line for a bad method before calibrating
    with tempfile.TemporaryDirectory(prefix="edgeseg-qdq-") as tmp:
        cache = calibrate(float_onnx, images, spec, Path(tmp) / "ranges.json", method=method, percentile=percentile,
                          op_types=op_types, progress=progress)
        ranges = _absmax_ranges(cache)
    model = onnx.load(str(float_onnx))
    placement = tensorrt_placement(model)
    missing = sorted(set(placement.activations) - set(ranges))
    if missing:
        raise ConfigError(f"{float_onnx.name}: calibration measured no range for tensor {missing[0]!r}")
    insert_qdq(model, ranges, placement)
    onnx.save(prune_opset_imports(sorted_topologically(model)), str(out))
    return QdqModel(path=out, method=method, calibration_images=len(images), op_types=tuple(op_types),
                    quantized_nodes=quantized_nodes(out, op_types),
                    percentile=percentile if method == "percentile" else None)
