"""Exporter for `tensorrt-bundle` targets (Jetson): everything the board needs to build its engine.

A TensorRT engine is bound to one GPU and one TensorRT version, so the workstation does not
build it; it writes a bundle the Jetson builds from with no further decisions:

- `<name>.onnx`: the graph TensorRT parses: static shapes, constants folded, checked node by node
  against the ONNX parser of every TensorRT version the target lists. For INT8 it carries
  explicit Q/DQ nodes (`convert.qdq`), calibrated on real images through the manifest's
  preprocessing; if the INT8 model misses the accuracy budget, the layers INT8 hurts most are
  kept in float until it fits, and the manifest names them.
- `<name>.onnx.json`: the manifest, with `conversion.tensorrt.build` (precision, workspace, DLA core,
  GPU fallback) that `edgeseg build-engine` reads.
- `<name>.trtexec.sh`: the `trtexec` command line that builds the same engine by hand, under the same
  engine name and with the same manifest when edgeseg is installed on the board.

The bundle's ONNX is verified here under ONNX Runtime against PyTorch (for INT8 that is the
accuracy TensorRT's explicit quantization reproduces up to kernel rounding).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import onnx
from onnx import TensorProto

from edgeseg.convert.calibration import calibration_images
from edgeseg.convert.export import ExportJob, ExportResult
from edgeseg.convert.onnx_export import (
    OPSET,
    export_onnx_file,
    input_spec,
    metadata_props,
    output_spec,
    quantize_job,
    verify_onnx,
    write_metadata_props,
)
from edgeseg.convert.qdq import fold_constants
from edgeseg.formats.tensorrt.convert.parser_support import require_supported
from edgeseg.formats.tensorrt.convert.qdq import quantize_qdq
from edgeseg.formats.tensorrt.runtime.engine import default_dla_core, trtexec_engine_name
from edgeseg.manifest import manifest_path_for
from edgeseg.targets import TargetProfile


def build_settings(target: TargetProfile, precision: str) -> dict:
    """What `edgeseg build-engine` configures (the manifest's `conversion.tensorrt.build`); the DLA
    rules and the TensorRT-version gate that turn it into builder calls live in `runtime.engine`."""
    options = target.tensorrt_options()
    dla_core, dla_reason = default_dla_core(options.dla_cores, precision)
    return {
        "precision": precision,
        "network": ("strongly typed on TensorRT >= 10 (the Q/DQ nodes set the precision), INT8 + FP16 flags on 8.x"
                    if precision == "int8" else "FP16 flag" if precision == "fp16" else "FP32"),
        "workspace_mb": options.workspace_mb,
        "dla_core": dla_core,
        "dla_cores_on_board": options.dla_cores,
        "gpu_fallback": bool(options.gpu_fallback and dla_core is not None),
        "dla_note": dla_reason,
        "timing_cache": True,
    }


def trtexec_arguments(onnx_name: str, settings: dict) -> list[str]:
    """The trtexec arguments that build what `build-engine` builds, less the engine and timing cache
    names and the INT8 precision switch, which the script sets on the board (TensorRT 8.5+ and 10.x)."""
    args = ["--onnx=" + onnx_name]
    args += {"fp32": [], "fp16": ["--fp16"], "int8": []}[settings["precision"]]
    args.append(f"--memPoolSize=workspace:{settings['workspace_mb']}")
    if settings["dla_core"] is not None:
        args.append(f"--useDLACore={settings['dla_core']}")
        if settings["gpu_fallback"]:
            args.append("--allowGPUFallback")
    return args


def trtexec_script(onnx_name: str, manifest_name: str, settings: dict, target: TargetProfile) -> str:
    """A shell script that builds the engine with trtexec under the engine name `build-engine` gives it
    (asked of edgeseg when it is installed) and records it, so `edgeseg demo` finds it either way."""
    fallback = trtexec_engine_name(onnx_name, settings["precision"], settings["dla_core"])
    args = " \\\n    ".join(shlex.quote(a) for a in trtexec_arguments(onnx_name, settings))
    int8 = settings["precision"] == "int8"
    precision = (
        "# Q/DQ INT8: a strongly typed network where trtexec has it (TensorRT 10), else --int8 --fp16 (8.x).\n"
        'if "$TRTEXEC" --help 2>&1 | grep -q -- --stronglyTyped; then PRECISION=--stronglyTyped; '
        'else PRECISION="--int8 --fp16"; fi\n') if int8 else "PRECISION=\n"
    return (
        "#!/bin/sh\n"
        f"# Builds the {settings['precision'].upper()} TensorRT engine of {onnx_name} for {target.name} by hand,\n"
        "# with the settings `edgeseg build-engine` uses. Run it on the board itself: an engine only\n"
        f"# runs on the GPU and TensorRT version that built it (this bundle parses on TensorRT "
        f"{', '.join(target.tensorrt_options().versions)}).\n"
        "# With edgeseg installed, the engine gets the name and manifest `edgeseg build-engine` would give\n"
        f"# it; without, it is {fallback}, recorded the first time edgeseg uses this bundle.\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"\n'
        "if command -v edgeseg >/dev/null 2>&1; then\n"
        f"    NAMES=$(edgeseg build-engine {shlex.quote(manifest_name)} --names)\n"
        '    ENGINE=$(echo "$NAMES" | sed -n 1p); TIMING=$(echo "$NAMES" | sed -n 2p)\n'
        "else\n"
        f"    ENGINE={shlex.quote(fallback)}; TIMING=timing.cache\n"
        "fi\n"
        f"{precision}"
        f'"$TRTEXEC" \\\n    {args} \\\n    $PRECISION --saveEngine="$ENGINE" --timingCacheFile="$TIMING"\n'
        "if command -v edgeseg >/dev/null 2>&1; then\n"
        f'    edgeseg build-engine {shlex.quote(manifest_name)} --register "$ENGINE"\n'
        "fi\n"
    )


def _write_trtexec_script(path: Path, onnx_name: str, settings: dict, target: TargetProfile) -> None:
    path.write_text(trtexec_script(onnx_name, manifest_path_for(Path(onnx_name)).name, settings, target))
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


def export(job: ExportJob, staging: Path) -> ExportResult:
    target = job.target
    if job.precision == "int8":  # refuse INT8 without calibration images before spending any time on export
        calibration_images(job.calibration, 1, precision="int8")
    spec = input_spec(job)
    spec_dict = spec.to_dict()
    out_dict = output_spec(job)
    if job.output_kind == "mask":
        out_dict = {**out_dict, "dtype": "int32"}
    artifact = job.staged_file(staging, "tensorrt-bundle")
    # FP32/FP16 bundles ship the folded float graph; INT8 ones quantize it.
    float_onnx = artifact if job.precision != "int8" else job.staged_file(staging, "onnx", "float")
    traced = export_onnx_file(job, job.staged_file(staging, "onnx", "traced"))
    if job.output_kind == "mask":
        _int32_mask_output(traced)
    fold_constants(traced, float_onnx)
    # Fail early, on the float graph, before calibrating anything.
    support = require_supported(float_onnx, target.tensorrt_options().versions, artifact=artifact.name)
    details: dict = {"opset": OPSET, "exporter": "torch.onnx.export (TorchScript)",
                     "graph": "static shapes, constants folded by ONNX Runtime's basic optimizations"}
    if job.precision != "int8":
        verification = verify_onnx(job, job.reference_model(), artifact, spec_dict, out_dict, job.verification_sets(),
                                   progress=job.progress)
        if job.precision == "fp16":
            verification["note"] = ("FP32 graph: TensorRT's FP16 kernels are not simulated on the CPU; "
                                    "tests/formats/tensorrt/test_tensorrt_gpu.py compares the built engine with "
                                    "ONNX Runtime")
    else:
        verification, details["quantization"] = quantize_job(job, float_onnx, artifact, out_dict,
                                                             quantize=quantize_qdq)
        verification["note"] = "Q/DQ graph: TensorRT's explicit quantization reproduces it up to kernel rounding"
        support = require_supported(artifact, target.tensorrt_options().versions, artifact=artifact.name)
    settings = build_settings(target, job.precision)
    script = staging / f"{job.basename}.trtexec.sh"
    _write_trtexec_script(script, artifact.name, settings, target)
    details["tensorrt"] = {
        "build": settings,
        "tensorrt_versions": list(target.tensorrt_options().versions),
        "trtexec": script.name,
        "parser_check": support.to_dict(),
    }
    for leftover in staging.glob(job.staged_file(staging, "onnx", "*").name):
        leftover.unlink()
    props = metadata_props(job, spec, out_dict)
    write_metadata_props(artifact, props)  # Netron and ONNX Runtime users see labels and normalization too
    details["metadata_props"] = sorted(props)
    return ExportResult(
        artifact=artifact, input=spec_dict, output=out_dict, extra_files=[script], details=details,
        tools={"onnx": onnx.__version__}, verification=verification,
    )
