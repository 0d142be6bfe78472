"""One conversion: weights -> target format -> verified artifact + manifest, published atomically."""

from __future__ import annotations

import datetime as dt
import importlib
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import edgeseg
from edgeseg.atomic import ensure_writable_dir, publish, staging_dir, write_json_atomic
from edgeseg.convert.aspp_rewrite import apply_for_export
from edgeseg.convert.export import ExportJob, exporter_name
from edgeseg.convert.resolution import parse_resolution, resolution_tag
from edgeseg.convert.verify import compare, enforce, image_sets_for
from edgeseg.convert.weights import load_weights
from edgeseg.convert.wrap import OUTPUT_KINDS
from edgeseg.errors import ConfigError
from edgeseg.manifest import MANIFEST_VERSION, load_manifest, manifest_path_for, sha256_file
from edgeseg.runtime.backends import open_backend
from edgeseg.targets import get_target


@dataclass(frozen=True)
class ConvertRequest:
    target: str
    precision: str
    resolution: str
    weights: str
    out: Path
    arch: str | None = None
    labels_file: Path | None = None
    output_kind: str = "logits"
    fuse_preprocessing: bool = False
    calibration: str | None = None
    verify_data: str | None = None
    verify_images: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True


def tool_versions() -> dict[str, str]:
    import onnx
    import torchvision

    versions = {"edgeseg": edgeseg.__version__, "python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return versions


def artifact_basename(arch: str, target: str, precision: str, hw: tuple[int, int], output_kind: str, fused: bool) -> str:
    parts = [arch, target, precision, resolution_tag(hw)]
    if output_kind == "mask":
        parts.append("mask")
    if fused:
        parts.append("u8in")
    return "-".join(parts)


def convert(request: ConvertRequest) -> dict:
    """Run one conversion; return the published manifest (as a dict)."""
    target = get_target(request.target)
    target.check_precision(request.precision)
    height, width = parse_resolution(request.resolution)
    if request.output_kind not in OUTPUT_KINDS:
        raise ConfigError(f"--output {request.output_kind}: choose one of {', '.join(OUTPUT_KINDS)}")
    ensure_writable_dir(request.out)  # before minutes of work, not after
    weights = load_weights(request.weights, arch=request.arch, labels_file=request.labels_file)
    model = weights.build()
    sets = image_sets_for(weights.labels, request.verify_data, request.verify_images)
    # Exact for this resolution only: the artifact gets the rewritten model, verification keeps `model`.
    export_model, aspp_record = apply_for_export(
        model, height, width, enabled=request.options.get("aspp_rewrite") is not False,
        images=[image for s in sets for image in s.images], progress=request.progress)
    basename = artifact_basename(weights.arch, target.name, request.precision, (height, width),
                                 request.output_kind, request.fuse_preprocessing)
    exporter = importlib.import_module(exporter_name(target.format, request.precision))
    job = ExportJob(weights=weights, model=export_model, target=target, precision=request.precision, height=height,
                    width=width, output_kind=request.output_kind, fuse_preprocessing=request.fuse_preprocessing,
                    basename=basename, calibration=request.calibration, options=dict(request.options),
                    progress=request.progress, reference=model, verify_sets=sets)
    with staging_dir(request.out) as stage:
        result = exporter.export(job, stage)
        manifest = {
            "format_version": MANIFEST_VERSION,
            "artifact": result.artifact.name,
            "artifact_sha256": sha256_file(result.artifact),
            "size_mb": round(result.artifact.stat().st_size / 2**20, 3),
            "backend": target.backend,
            "target": target.name,
            "precision": request.precision,
            "model": {
                "architecture": weights.arch, "num_classes": weights.num_classes, "labels": list(weights.labels),
                "weights_source": weights.source, "weights_sha256": weights.sha256,
                "trained_resolution": weights.trained_resolution,
            },
            "input": result.input,
            "output": result.output,
            "runtime": {"threads": target.threads, **({"delegate": target.litert.delegate} if target.litert else {})},
            "target_profile": target.to_dict(),
            "conversion": {**result.details, "aspp_rewrite": aspp_record},
            "tools": {**tool_versions(), **result.tools},
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        staged_manifest = manifest_path_for(result.artifact)
        write_json_atomic(staged_manifest, manifest)
        verification = result.verification
        if verification is None:
            with open_backend(load_manifest(staged_manifest)) as backend:
                verification = compare(model, backend, sets, precision=request.precision,
                                       num_classes=weights.num_classes, progress=request.progress)
        manifest["verification"] = verification
        enforce(verification, result.artifact.name)
        write_json_atomic(staged_manifest, manifest)
        publish([result.artifact, *result.extra_files, staged_manifest], request.out)
    manifest["manifest_path"] = str(manifest_path_for(request.out / result.artifact.name))
    return manifest
