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


def verify_onnx(job: ExportJob, reference: torch.nn.Module, artifact: Path, input_dict: dict, output_dict: dict,
                sets: list, *, progress: bool) -> dict:
    """Agreement and mIoU change of an ONNX artifact under ONNX Runtime against the PyTorch `reference`
    (before its manifest exists: the INT8 budget search scores every candidate this way)."""
    from edgeseg.convert.verify import compare
    from edgeseg.manifest import Manifest
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    manifest = Manifest(artifact.with_name(artifact.name + ".json"), {
        "artifact": artifact.name, "backend": "onnxruntime", "target": job.target.name, "precision": job.precision,
        "model": {"num_classes": job.weights.num_classes, "labels": list(job.weights.labels)},
        "input": input_dict, "output": output_dict,
    })
    with OnnxRuntimeBackend(manifest) as backend:
        summary = compare(reference, backend, sets, precision=job.precision, num_classes=job.weights.num_classes,
                          progress=progress)
    summary["runtime"] = "ONNX Runtime (CPU)"
    return summary


def quantize_job(job: ExportJob, float_onnx: Path, artifact: Path, output_dict: dict) -> tuple[dict, dict]:
    """The Q/DQ INT8 model of `float_onnx` (folded) at `artifact`, within the INT8 budget: its
    verification against the model as trained, and the manifest's quantization record."""
    from edgeseg.convert.calibration import DEFAULT_CALIBRATION_IMAGES, calibration_images
    from edgeseg.convert.qdq import DEFAULT_CALIBRATION_METHOD, DEFAULT_PERCENTILE, quantize_within_budget

    images = calibration_images(job.calibration, int(job.options.get("calib_images") or DEFAULT_CALIBRATION_IMAGES),
                                precision="int8")
    spec = input_spec(job)
    sets, reference = job.verification_sets(), job.reference_model()

    def verify(path: Path) -> dict:
        return verify_onnx(job, reference, path, spec.to_dict(), output_dict, sets, progress=job.progress)

    _, verification, record = quantize_within_budget(
        float_onnx, artifact, images, spec, verify, method=job.options.get("calib_method") or DEFAULT_CALIBRATION_METHOD,
        percentile=float(job.options.get("calib_percentile") or DEFAULT_PERCENTILE),
        max_float_layers=job.options.get("int8_max_float_layers"),
        sensitivity_images=int(job.options.get("int8_sensitivity_images") or 4), progress=job.progress)
    return verification, {**record, "calibration": job.calibration}


def export(job: ExportJob, staging: Path) -> ExportResult:
    path = staging / f"{job.basename}.onnx"
    details = {"opset": OPSET, "exporter": "torch.onnx.export (TorchScript)"}
    verification = None
    if job.precision == "int8":  # explicit Q/DQ, the same quantizer and budget search as the Jetson bundles
        from edgeseg.convert.qdq import fold_constants

        traced, folded = staging / f"{job.basename}.traced.onnx", staging / f"{job.basename}.float.onnx"
        try:
            fold_constants(export_onnx_file(job, traced), folded)
            verification, details["quantization"] = quantize_job(job, folded, path, output_spec(job))
        finally:
            traced.unlink(missing_ok=True)
            folded.unlink(missing_ok=True)
    else:
        export_onnx_file(job, path)
    return ExportResult(
        artifact=path, input=input_spec(job).to_dict(), output=output_spec(job), details=details,
        tools={"onnx": onnx.__version__}, verification=verification,
    )
