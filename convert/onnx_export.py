"""ONNX export at a fixed resolution (opset 17, static shapes): the first conversion of every target."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import onnx
import torch

from edgeseg.convert.export import ExportJob, ExportResult
from edgeseg.convert.models import IMAGENET_MEAN, IMAGENET_STD
from edgeseg.convert.wrap import ExportWrapper
from edgeseg.runtime.preprocess import InputSpec

OPSET = 17


def input_spec(job: ExportJob, *, layout: str = "NCHW") -> InputSpec:
    if job.fuse_preprocessing:
        return InputSpec(height=job.height, width=job.width, layout="NHWC", dtype="uint8", mean=None, std=None)
    return InputSpec(height=job.height, width=job.width, layout=layout, dtype="float32",
                     mean=IMAGENET_MEAN, std=IMAGENET_STD)


def output_spec(job: ExportJob, *, layout_logits: str = "NCHW") -> dict:
    if job.output_kind == "mask":
        return {"name": "output", "kind": "mask", "layout": "NHW", "dtype": "uint8"}
    return {"name": "output", "kind": "logits", "layout": layout_logits, "dtype": "float32"}


def export_onnx_file(job: ExportJob, path: Path, model: torch.nn.Module | None = None) -> Path:
    """Trace the wrapped model to `path` (legacy TorchScript exporter: it keeps opset 17)."""
    spec = input_spec(job)
    wrapper = ExportWrapper(model or job.model, output=job.output_kind, fuse_preprocessing=job.fuse_preprocessing).eval()
    if spec.dtype == "uint8":
        dummy = torch.randint(0, 256, (1, job.height, job.width, 3), dtype=torch.uint8)
    else:
        dummy = torch.randn(1, 3, job.height, job.width)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (dummy,), str(path), opset_version=OPSET, dynamo=False,
            input_names=["input"], output_names=["output"], do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    return path


def export(job: ExportJob, staging: Path) -> ExportResult:
    path = staging / f"{job.basename}.onnx"
    details = {"opset": OPSET, "exporter": "torch.onnx.export (TorchScript)"}
    if job.precision == "int8":  # explicit Q/DQ, the same quantizer as the Jetson bundles
        from edgeseg.convert.qdq import export_qdq

        details["quantization"] = {**export_qdq(job, path).to_dict(), "calibration": job.calibration}
    else:
        export_onnx_file(job, path)
    return ExportResult(
        artifact=path, input=input_spec(job).to_dict(), output=output_spec(job), details=details,
        tools={"onnx": onnx.__version__},
    )
