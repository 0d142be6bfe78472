"""ONNX export at a fixed resolution (opset 17, static shapes): the first conversion of every target.

The artifact describes itself in ONNX `metadata_props` (labels, normalization, colour order, layout,
resolution, output, edgeseg version), so Netron and ONNX Runtime users see them without the manifest.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch

import edgeseg
from edgeseg.convert.export import ExportJob, ExportResult
from edgeseg.convert.wrap import ExportWrapper
from edgeseg.runtime.preprocess import InputSpec

OPSET = 17


def input_spec(job: ExportJob, *, layout: str = "NCHW") -> InputSpec:
    if job.fuse_preprocessing:
        return InputSpec(height=job.height, width=job.width, layout="NHWC", dtype="uint8", mean=None, std=None)
    return InputSpec(height=job.height, width=job.width, layout=layout, dtype="float32",
                     mean=job.weights.mean, std=job.weights.std)


def output_spec(job: ExportJob, *, layout_logits: str = "NCHW") -> dict:
    if job.output_kind == "mask":
        return {"name": "output", "kind": "mask", "layout": "NHW", "dtype": "uint8"}
    return {"name": "output", "kind": "logits", "layout": layout_logits, "dtype": "float32"}


def export_onnx_file(job: ExportJob, path: Path, model: torch.nn.Module | None = None) -> Path:
    """Trace the wrapped model to `path` (legacy TorchScript exporter: it keeps opset 17)."""
    spec = input_spec(job)
    wrapper = ExportWrapper(model or job.model, mean=job.weights.mean, std=job.weights.std, output=job.output_kind,
                            fuse_preprocessing=job.fuse_preprocessing).eval()
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
    from edgeseg.formats.onnx.runtime import OnnxRuntimeBackend
    from edgeseg.manifest import Manifest, manifest_path_for

    manifest = Manifest(manifest_path_for(artifact), {
        "artifact": artifact.name, "backend": "onnxruntime", "target": job.target.name, "precision": job.precision,
        "model": {"num_classes": job.weights.num_classes, "labels": list(job.weights.labels)},
        "input": input_dict, "output": output_dict,
    })
    with OnnxRuntimeBackend(manifest) as backend:
        summary = compare(reference, backend, sets, precision=job.precision, num_classes=job.weights.num_classes,
                          progress=progress)
    summary["runtime"] = "ONNX Runtime (CPU)"
    return summary


def quantize_job(job: ExportJob, float_onnx: Path, artifact: Path, output_dict: dict, *,
                 quantize: Callable[..., Any]) -> tuple[dict, dict]:
    """The Q/DQ INT8 model of `float_onnx` (folded) at `artifact`, within the INT8 budget: its
    verification against the model as trained, and the manifest's quantization record. `quantize` writes the
    all-INT8 model: TensorRT's placement (the bundles) or ONNX Runtime's fused-kernel form (host-cpu)."""
    from edgeseg.convert.calibration import calibration_images
    from edgeseg.convert.options import DEFAULT_CALIBRATION_IMAGES, DEFAULT_CALIBRATION_METHOD, DEFAULT_PERCENTILE
    from edgeseg.convert.qdq import quantize_within_budget

    images = calibration_images(job.calibration, int(job.options.get("calib_images") or DEFAULT_CALIBRATION_IMAGES),
                                precision="int8")
    spec = input_spec(job)
    sets, reference = job.verification_sets(), job.reference_model()

    def verify(path: Path) -> dict:
        return verify_onnx(job, reference, path, spec.to_dict(), output_dict, sets, progress=job.progress)

    _, verification, record = quantize_within_budget(
        float_onnx, artifact, images, spec, verify,
        method=job.options.get("calib_method") or DEFAULT_CALIBRATION_METHOD,
        percentile=float(job.options.get("calib_percentile") or DEFAULT_PERCENTILE),
        max_float_layers=job.options.get("int8_max_float_layers"),
        sensitivity_images=int(job.options.get("int8_sensitivity_images") or 4), progress=job.progress,
        quantize=quantize)
    return verification, {**record, "calibration": job.calibration}


def metadata_props(job: ExportJob, spec: InputSpec, output: dict) -> dict[str, str]:
    """The facts an ONNX artifact carries in `metadata_props` (values are strings; lists as JSON)."""
    normalization = "in_model" if spec.mean is None or spec.std is None else json.dumps(
        {"mean": list(spec.mean), "std": list(spec.std), "pixel_scale": "1/255 (x = (pixel / 255 - mean) / std)"})
    return {
        "edgeseg_version": edgeseg.__version__, "architecture": job.weights.arch, "precision": job.precision,
        "target": job.target.name, "labels": json.dumps(list(job.weights.labels)),
        "num_classes": str(job.weights.num_classes), "resolution": f"{job.height}x{job.width}",
        "input_layout": spec.layout, "input_dtype": spec.dtype, "color_order": spec.color_order,
        "normalization": normalization, "output_kind": output["kind"], "output_layout": output["layout"],
        "weights_sha256": job.weights.sha256 or "unknown",
        "image_pool_window": str(job.weights.image_pool_window or "global"),
    }


def write_metadata_props(path: Path, props: dict[str, str]) -> None:
    """Replace the model's `metadata_props` with `props` (before the manifest takes its sha256)."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))


def export(job: ExportJob, staging: Path) -> ExportResult:
    """The float (FP32/FP16) ONNX artifact; INT8 for ONNX Runtime is formats/onnx/convert/int8.py's (the format's
    `precision_exporters` in targets/__init__.py route it there)."""
    path = job.staged_file(staging, "onnx")
    details: dict[str, Any] = {"opset": OPSET, "exporter": "torch.onnx.export (TorchScript)"}
    export_onnx_file(job, path)
    write_metadata_props(path, metadata_props(job, input_spec(job), output_spec(job)))
    details["metadata_props"] = sorted(metadata_props(job, input_spec(job), output_spec(job)))
    return ExportResult(
        artifact=path, input=input_spec(job).to_dict(), output=output_spec(job), details=details,
        tools={"onnx": onnx.__version__}, verification=None,
    )
