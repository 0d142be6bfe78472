"""Exporter for `tensorrt-bundle` targets (Jetson): everything the board needs to build its engine.

A TensorRT engine is bound to one GPU and one TensorRT version, so the workstation does not
build it; it writes a bundle the Jetson builds from with no further decisions:

- `<name>.onnx`: the graph TensorRT parses: static shapes, constants folded, checked node by node
  against the ONNX parser of every TensorRT version the target lists. For INT8 it carries
  explicit Q/DQ nodes (`convert.qdq`), calibrated on real images through the manifest's
  preprocessing; if the INT8 model misses the accuracy budget, the layers INT8 hurts most are
  kept in float until it fits, and the manifest names them.
- `<name>.onnx.json`: the manifest, with `conversion.tensorrt.build` (precision flags, workspace,
  DLA core, GPU fallback) that `edgeseg build-engine` reads.
- `<name>.trtexec.sh`: the `trtexec` command line that builds the same engine by hand.

The bundle's ONNX is verified here under ONNX Runtime against PyTorch (for INT8 that is the
accuracy TensorRT's explicit quantization reproduces up to kernel rounding).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import onnx
import torch
from onnx import TensorProto

from edgeseg.convert.calibration import calibration_images
from edgeseg.convert.export import ExportJob, ExportResult
from edgeseg.convert.onnx_export import OPSET, export_onnx_file, input_spec, output_spec
from edgeseg.convert.qdq import fold_constants, layer_sensitivity, quantize_qdq
from edgeseg.convert.trt_support import require_supported
from edgeseg.convert.verify import compare, image_sets_for
from edgeseg.manifest import Manifest
from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgeseg.targets import TargetProfile

DEFAULT_CALIB_METHOD = "minmax"
SENSITIVITY_IMAGES = 4  # calibration images the layer ranking is measured on


def precision_flags(precision: str) -> list[str]:
    """TensorRT builder flags: INT8 builds also enable FP16 for the layers left outside Q/DQ."""
    return {"fp32": [], "fp16": ["fp16"], "int8": ["fp16", "int8"]}[precision]


def default_dla_core(target: TargetProfile, precision: str) -> tuple[int | None, str]:
    """The DLA core the engine targets by default, and why."""
    if target.dla_cores <= 0:
        return None, f"{target.name} has no DLA: the engine runs on the GPU"
    if precision == "fp32":
        return None, "DLA runs FP16 and INT8 only: the FP32 engine runs on the GPU"
    if precision == "int8":
        return None, ("DLA does not run explicitly quantized (Q/DQ) networks: the INT8 engine runs on the GPU "
                      "(pass --dla-core to build-engine only for FP16)")
    return 0, "DLA core 0, with GPU fallback for the layers the DLA cannot run"


def build_settings(target: TargetProfile, precision: str) -> dict:
    """What `edgeseg build-engine` configures (the manifest's `conversion.tensorrt.build`)."""
    dla_core, dla_reason = default_dla_core(target, precision)
    return {
        "precision": precision,
        "flags": precision_flags(precision),
        "workspace_mb": target.workspace_mb or 1024,
        "dla_core": dla_core,
        "dla_cores_on_board": target.dla_cores,
        "gpu_fallback": bool(target.gpu_fallback and dla_core is not None),
        "dla_note": dla_reason,
        "timing_cache": True,
    }


def trtexec_command(onnx_name: str, settings: dict) -> list[str]:
    """The trtexec arguments that build the same engine `build-engine` builds (TensorRT 8.4+ and 10.x)."""
    stem = onnx_name[: -len(".onnx")]
    engine = f"{stem}.{settings['precision']}" + (f".dla{settings['dla_core']}" if settings["dla_core"] is not None else "")
    args = ["--onnx=" + onnx_name, f"--saveEngine={engine}.engine"]
    args += [f"--{flag}" for flag in settings["flags"]]
    args.append(f"--memPoolSize=workspace:{settings['workspace_mb']}")
    args.append("--timingCacheFile=timing.cache")
    if settings["dla_core"] is not None:
        args.append(f"--useDLACore={settings['dla_core']}")
        if settings["gpu_fallback"]:
            args.append("--allowGPUFallback")
    return args


def _write_trtexec_script(path: Path, onnx_name: str, settings: dict, target: TargetProfile) -> None:
    args = " \\\n    ".join(shlex.quote(a) for a in trtexec_command(onnx_name, settings))
    text = (
        "#!/bin/sh\n"
        f"# Builds the {settings['precision'].upper()} TensorRT engine of {onnx_name} for {target.name} by hand,\n"
        "# with the settings `edgeseg build-engine` uses. Run it on the board itself: an engine only\n"
        f"# runs on the GPU and TensorRT version that built it (this bundle parses on TensorRT "
        f"{', '.join(target.tensorrt_versions)}).\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"\n'
        f'"$TRTEXEC" \\\n    {args}\n'
    )
    path.write_text(text)
    os.chmod(path, 0o755)


def _int32_mask_output(path: Path) -> None:
    """Make the argmax mask leave the graph as INT32 instead of UINT8.

    TensorRT 8.5/8.6 cast only to FP32/FP16/INT32/INT8/BOOL (UINT8 is network I/O only, not a
    Cast target), and ONNX ArgMax's INT64 is cast down to INT32 by 8.x but kept by 10.x; an
    explicit INT32 output is the one type every listed version parses and binds the same way.
    """
    model = onnx.load(str(path))
    out = model.graph.output[0]
    producer = next(n for n in model.graph.node if out.name in n.output)
    if producer.op_type == "Cast":
        for attr in producer.attribute:
            if attr.name == "to":
                attr.i = TensorProto.INT32
        out.type.tensor_type.elem_type = TensorProto.INT32
        onnx.save(model, str(path))


def _verify(job: ExportJob, reference: torch.nn.Module, artifact: Path, spec_dict: dict, out_dict: dict, sets: list, *,
            progress: bool) -> dict:
    """Agreement and mIoU change of the bundle's ONNX under ONNX Runtime against PyTorch FP32."""
    manifest = Manifest(artifact.with_name(artifact.name + ".json"), {
        "artifact": artifact.name, "backend": "onnxruntime", "target": job.target.name, "precision": job.precision,
        "model": {"num_classes": job.weights.num_classes, "labels": list(job.weights.labels)},
        "input": spec_dict, "output": out_dict,
    })
    with OnnxRuntimeBackend(manifest) as backend:
        summary = compare(reference, backend, sets, precision=job.precision, num_classes=job.weights.num_classes,
                          progress=progress)
    summary["runtime"] = "ONNX Runtime (CPU) on the bundle's ONNX"
    if job.precision == "int8":
        summary["note"] = "Q/DQ graph: TensorRT's explicit quantization reproduces it up to kernel rounding"
    elif job.precision == "fp16":
        summary["note"] = ("FP32 graph: TensorRT's FP16 kernels are not simulated on the CPU; "
                           "tests/test_tensorrt_gpu.py compares the built engine with ONNX Runtime")
    return summary


def _attempt_entry(excluded: list[str], summary: dict) -> dict:
    return {"kept_in_float": len(excluded), "argmax_agreement": summary["argmax_agreement"],
            "miou_delta": summary["miou_delta"], "passed": summary["passed"]}


def export(job: ExportJob, staging: Path) -> ExportResult:
    target = job.target
    method = job.options.get("calib_method") or DEFAULT_CALIB_METHOD
    # Refuse INT8 without calibration images before spending any time on export.
    calib = (calibration_images(job.calibration, int(job.options.get("calib_images") or 64), precision="int8")
             if job.precision == "int8" else None)
    spec = input_spec(job)
    spec_dict = spec.to_dict()
    out_dict = output_spec(job)
    if job.output_kind == "mask":
        out_dict = {**out_dict, "dtype": "int32"}
    artifact = staging / f"{job.basename}.onnx"
    # FP32/FP16 bundles ship the folded float graph; INT8 ones quantize it.
    float_onnx = artifact if job.precision != "int8" else staging / f"{job.basename}.float.onnx"
    traced = export_onnx_file(job, staging / f"{job.basename}.traced.onnx")
    if job.output_kind == "mask":
        _int32_mask_output(traced)
    fold_constants(traced, float_onnx)
    # Fail early, on the float graph, before calibrating anything.
    support = require_supported(float_onnx, target.tensorrt_versions, artifact=artifact.name)
    sets = image_sets_for(job.weights.labels, job.options.get("verify_data"), int(job.options.get("verify_images") or 8))
    # The reference is the model as trained: `job.model` may carry export-only rewrites.
    reference = job.weights.build()
    details: dict = {"opset": OPSET, "exporter": "torch.onnx.export (TorchScript)",
                     "graph": "static shapes, constants folded by ONNX Runtime's basic optimizations"}
    if job.precision != "int8":
        verification = _verify(job, reference, artifact, spec_dict, out_dict, sets, progress=job.progress)
    else:
        cache = staging / "calibration-ranges.json"
        qdq = quantize_qdq(float_onnx, artifact, calib, spec, method=method, calibration_cache=cache,
                           progress=job.progress)
        verification = _verify(job, reference, artifact, spec_dict, out_dict, sets, progress=job.progress)
        attempts = [_attempt_entry([], verification)]
        ranking: list[tuple[str, float]] = []
        if not verification["passed"]:
            ranking = layer_sensitivity(float_onnx, qdq, calib[:SENSITIVITY_IMAGES], spec, progress=job.progress)
            # At most half the quantized layers go back to float: beyond that INT8 has little left to give.
            most = min(int(job.options.get("int8_max_float_layers") or len(ranking) // 2), len(ranking))
            keep = 1
            while not verification["passed"] and keep <= most:
                excluded = [name for name, _ in ranking[:keep]]
                qdq = quantize_qdq(float_onnx, artifact, calib, spec, method=method, nodes_to_exclude=excluded,
                                   calibration_cache=cache, progress=job.progress)
                verification = _verify(job, reference, artifact, spec_dict, out_dict, sets, progress=job.progress)
                attempts.append(_attempt_entry(excluded, verification))
                keep = most if keep < most < 2 * keep else 2 * keep
        gains = dict(ranking)
        details["quantization"] = {
            **qdq.to_dict(),
            "calibration": job.calibration,
            "budget_search": attempts,
            # Argmax agreement with the float model gained by running each of them alone in float.
            "kept_in_float_agreement_gain": {name: gains[name] for name in qdq.excluded_nodes},
        }
        support = require_supported(artifact, target.tensorrt_versions, artifact=artifact.name)
    settings = build_settings(target, job.precision)
    script = staging / f"{job.basename}.trtexec.sh"
    _write_trtexec_script(script, artifact.name, settings, target)
    details["tensorrt"] = {
        "build": settings,
        "tensorrt_versions": list(target.tensorrt_versions),
        "trtexec": script.name,
        "parser_check": support.to_dict(),
    }
    for leftover in staging.glob(f"{job.basename}.*.onnx"):
        leftover.unlink()
    return ExportResult(
        artifact=artifact, input=spec_dict, output=out_dict, extra_files=[script], details=details,
        tools={"onnx": onnx.__version__}, verification=verification,
    )
