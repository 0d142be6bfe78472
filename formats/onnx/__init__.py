"""ONNX: the host-cpu artifact, run by ONNX Runtime (FP32 as exported; INT8 in ONNX Runtime's fused-kernel form)."""

from __future__ import annotations

from edgeseg.formats import ArtifactFormat, Package
from edgeseg.packages import CONVERSION_STACK

ONNXRUNTIME = Package("onnxruntime", "onnxruntime", "onnxruntime")

FORMAT = ArtifactFormat(
    "onnx", backend="onnxruntime", suffix=".onnx",
    runner="edgeseg.formats.onnx.runtime", probe="edgeseg.formats.onnx.runtime",
    # FP32 is the ONNX every conversion starts from; INT8 for ONNX Runtime's fused integer kernels, not
    # TensorRT's Q/DQ placement.
    exporter="edgeseg.convert.onnx_export", precision_exporters={"int8": "edgeseg.formats.onnx.convert.int8"},
    run_packages=(ONNXRUNTIME,),
    convert_packages=(*CONVERSION_STACK, ONNXRUNTIME),
    calibration_methods=True,
    engine_package=ONNXRUNTIME.distribution, engine_min_version="1.23.2",
)
