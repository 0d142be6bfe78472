"""One conversion: weights -> target format -> verified artifact + manifest, published atomically."""

from __future__ import annotations

import datetime as dt
import platform

import edgeseg
from edgeseg.atomic import publish, staging_dir, write_json_atomic
from edgeseg.convert.request import ConvertPlan, ConvertRequest, artifact_basename, check_name_free, plan
from edgeseg.formats import all_formats, load_module
from edgeseg.manifest import MANIFEST_VERSION, load_manifest, manifest_path_for, sha256_file

__all__ = ["ConvertRequest", "ConvertPlan", "artifact_basename", "convert", "plan", "tool_versions"]


def tool_versions() -> dict[str, str]:
    import onnx
    import torch
    import torchvision

    versions = {"edgeseg": edgeseg.__version__, "python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return versions


def convert(request: ConvertRequest) -> dict:
    """Run one conversion; return the published manifest (as a dict).

    The whole request is checked first (`plan`: milliseconds, nothing heavy imported), so a request
    that cannot succeed fails before the weights load or the model is built.
    """
    checked = plan(request)
    # The conversion stack, imported only for a request that can succeed.
    from edgeseg.convert.aspp_rewrite import apply_for_export
    from edgeseg.convert.export import ExportJob, exporter_name
    from edgeseg.convert.verify import enforce, image_sets_for
    from edgeseg.models.weights import load_weights

    target, height, width = checked.target, checked.height, checked.width
    stage = request.on_stage or (lambda name: None)
    stage("loading weights")
    weights = load_weights(request.weights, arch=request.arch, labels_file=request.labels_file)
    model = weights.build()
    sets = image_sets_for(weights.labels, request.verify_data, request.verify_images)
    stage("ASPP check")
    # Exact for this resolution only: the artifact gets the rewritten model, verification keeps `model`.
    export_model, aspp_record = apply_for_export(
        model, height, width, enabled=request.options.get("aspp_rewrite") is not False,
        images=[image for s in sets for image in s.images], progress=request.progress)
    exporter = load_module(exporter_name(target.format, request.precision))
    job = ExportJob(weights=weights, model=export_model, target=target, precision=request.precision, height=height,
                    width=width, output_kind=request.output_kind, fuse_preprocessing=request.fuse_preprocessing,
                    basename=checked.basename, calibration=request.calibration, options=dict(request.options),
                    progress=request.progress, reference=model, verify_sets=sets)
    stage(f"export to {target.format} {request.precision}"
          + (" (calibration, accuracy search)" if request.precision == "int8" else ""))
    with staging_dir(request.out) as staging:
        result = exporter.export(job, staging)
        manifest = _manifest(request, checked, weights, result, aspp_record)
        staged_manifest = manifest_path_for(result.artifact)
        write_json_atomic(staged_manifest, manifest)
        if result.verification is None:
            stage("verification")
        manifest["verification"] = _verification(result, staged_manifest, model, sets, request, weights.num_classes)
        enforce(manifest["verification"], result.artifact.name)
        write_json_atomic(staged_manifest, manifest)
        # Again at the end, under the publish lock: another run may have published under this name meanwhile.
        publish([result.artifact, *result.extra_files, staged_manifest], request.out,
                check=lambda: check_name_free(checked.artifact, checked.weights_sha256, request.force))
    manifest["manifest_path"] = str(manifest_path_for(request.out / result.artifact.name))
    return manifest


def _manifest(request: ConvertRequest, checked: ConvertPlan, weights, result, aspp_record: dict) -> dict:
    """The manifest of a staged artifact, before verification is added."""
    target = checked.target
    return {
        "format_version": MANIFEST_VERSION,
        "artifact": result.artifact.name,
        "artifact_sha256": sha256_file(result.artifact),
        "size_mb": round((result.size_bytes or result.artifact.stat().st_size) / 2**20, 3),
        "backend": target.backend,
        "target": target.name,
        "precision": request.precision,
        "model": {
            "architecture": weights.arch, "num_classes": weights.num_classes, "labels": list(weights.labels),
            "weights_source": weights.source, "weights_sha256": weights.sha256,
            "trained_resolution": weights.trained_resolution,
            # ASPP image pooling over this many input pixels (null: the whole map, torchvision's global pooling).
            "image_pool_window": weights.image_pool_window,
        },
        "input": result.input,
        "output": result.output,
        "runtime": {"threads": target.threads, **({"delegate": target.litert.delegate} if target.litert else {}),
                    **_engine_floor(target.format), **result.runtime},
        "target_profile": target.to_dict(),
        "conversion": {**result.details, "aspp_rewrite": aspp_record},
        "tools": {**tool_versions(), **result.tools},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _engine_floor(artifact_format: str) -> dict:
    """{"min_engine": {package, version}}: the oldest engine release verified to run this format the same."""
    fmt = all_formats()[artifact_format]
    if fmt.engine_min_version is None:
        return {}
    return {"min_engine": {"package": fmt.engine_package, "version": fmt.engine_min_version}}


def _verification(result, staged_manifest, model, sets: list, request: ConvertRequest, num_classes: int) -> dict:
    """The exporter's own verification, else the staged artifact run through the runtime against `model`."""
    if result.verification is not None:
        return result.verification
    from edgeseg.convert.verify import compare
    from edgeseg.runtime.backend import open_backend

    with open_backend(load_manifest(staged_manifest)) as backend:
        return compare(model, backend, sets, precision=request.precision, num_classes=num_classes,
                       progress=request.progress)
