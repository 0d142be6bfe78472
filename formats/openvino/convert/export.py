"""Exporter for `openvino` targets (intel-cpu, intel-gpu, intel-npu): OpenVINO IR, `.xml` + `.bin`.

The model is traced to ONNX by the same exporter as every other format (the exact ASPP rewrite
included), read by `openvino.convert_model` and saved with `compress_to_fp16=False` (the default
would halve the weights to FP16 on disk; FP32 artifacts keep FP32 weights). The IR describes itself
in its `rt_info` section `edgeseg` (labels, normalization, colour order, layout, resolution, output,
the inference precision it was verified with): the keys ONNX artifacts carry in `metadata_props`.

The IR is one model in two files. The `.xml` is the manifest's artifact (its sha256 is
`artifact_sha256`); the `.bin` is published with it and pinned by its own sha256 in
`conversion.openvino.weights`. `publish` removes the old manifest before moving either file and
writes the new one last, so a reader never meets a manifest beside an IR it does not describe.

Inference precision: FP32 artifacts are verified and run with OpenVINO's INFERENCE_PRECISION_HINT
pinned to f32 (left to itself, the CPU plugin computes in bf16 on CPUs with AVX512_BF16 or AMX);
bf16 artifacts are the same IR run with the hint bf16, verified against PyTorch under that hint.
INT8 (formats/openvino/convert/int8.py) runs its remaining float ops in f32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.convert.export import ExportJob, ExportResult
from edgeseg.convert.onnx_export import OPSET, export_onnx_file, input_spec, metadata_props, output_spec
from edgeseg.cpu_features import require_bfloat16
from edgeseg.errors import ConfigError
from edgeseg.formats.openvino import IR_WEIGHTS_SUFFIX
from edgeseg.formats.openvino.runtime import RT_INFO_SECTION
from edgeseg.manifest import Manifest, manifest_path_for, sha256_file
from edgeseg.optional import require

# Artifact precision -> the INFERENCE_PRECISION_HINT it is verified and run with.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def openvino_module():
    return require("openvino", purpose="OpenVINO conversion")


def convert_onnx(path: Path) -> Any:
    """The ONNX model at `path` as an in-memory `openvino.Model`."""
    return openvino_module().convert_model(str(path))


def runtime_entry(job: ExportJob) -> dict[str, str]:
    """The manifest's `runtime` additions: the OpenVINO device and the inference precision hint."""
    options = job.target.openvino
    if options is None:
        raise ConfigError(f"target {job.target.name} has no 'openvino:' section")
    return {"device": options.device, "inference_precision": INFERENCE_PRECISION[job.precision]}


def save_ir(job: ExportJob, model: Any, xml: Path) -> dict[str, Any]:
    """Write `model` to `xml` + its `.bin` with the edgeseg rt_info; return the manifest's `openvino` record."""
    ov = openvino_module()
    props = {**metadata_props(job, input_spec(job), output_spec(job)),
             "inference_precision": INFERENCE_PRECISION[job.precision], "device": runtime_entry(job)["device"]}
    for key, value in props.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    ov.save_model(model, str(xml), compress_to_fp16=False)
    weights = xml.with_suffix(IR_WEIGHTS_SUFFIX)
    return {"weights": {"file": weights.name, "sha256": sha256_file(weights)},
            "inference_precision_hint": INFERENCE_PRECISION[job.precision], "device": runtime_entry(job)["device"],
            "ir_from": f"ONNX opset {OPSET} through openvino.convert_model", "compress_to_fp16": False,
            "rt_info": {"section": RT_INFO_SECTION, "keys": sorted(props)}}


def verify_ir(job: ExportJob, xml: Path, record: dict[str, Any], *, progress: bool) -> dict:
    """Agreement and mIoU change of the IR at `xml` against the PyTorch reference, under this machine's
    OpenVINO CPU plugin with the artifact's inference precision (before its manifest exists: the INT8
    budget search scores every candidate this way). A GPU or NPU target's IR is checked here on the CPU."""
    from edgeseg.convert.verify import compare
    from edgeseg.formats.openvino.runtime import OpenVINOBackend

    manifest = Manifest(manifest_path_for(xml), {
        "artifact": xml.name, "backend": "openvino", "target": job.target.name, "precision": job.precision,
        "model": {"num_classes": job.weights.num_classes, "labels": list(job.weights.labels)},
        "input": input_spec(job).to_dict(), "output": output_spec(job), "runtime": runtime_entry(job),
        "conversion": {"openvino": record},
    })
    with OpenVINOBackend(manifest, device="CPU") as backend:
        summary = compare(job.reference_model(), backend, job.verification_sets(), precision=job.precision,
                          num_classes=job.weights.num_classes, progress=progress)
    ov = openvino_module()
    summary["runtime"] = (f"OpenVINO {ov.__version__.split('-')[0]} CPU plugin, inference precision "
                          f"{backend.inference_precision}")
    if runtime_entry(job)["device"] != "CPU":
        summary["note"] = (f"verified on this machine's CPU plugin; the {runtime_entry(job)['device']} plugin runs "
                           "the same IR with its own kernels")
    return summary


def result(job: ExportJob, xml: Path, record: dict[str, Any], verification: dict, details: dict) -> ExportResult:
    """The ExportResult of a written and verified IR (the `.bin` published beside the `.xml`)."""
    ov = openvino_module()
    weights = xml.with_suffix(IR_WEIGHTS_SUFFIX)
    return ExportResult(
        artifact=xml, input=input_spec(job).to_dict(), output=output_spec(job), extra_files=[weights],
        details={**details, "openvino": record}, tools={"openvino": ov.__version__.split("-")[0]},
        verification=verification, runtime=runtime_entry(job),
        size_bytes=xml.stat().st_size + weights.stat().st_size)


def export(job: ExportJob, staging: Path) -> ExportResult:
    """The FP32 or bf16 IR (INT8 is formats/openvino/convert/int8.py's: the format's `precision_exporters`)."""
    if job.precision not in ("fp32", "bf16"):
        raise ConfigError(f"{job.target.name}: the OpenVINO float exporter writes fp32 or bf16, not {job.precision}")
    if job.precision == "bf16":
        require_bfloat16(f"--precision bf16 for {job.target.name}")
    traced = export_onnx_file(job, job.staged_file(staging, "onnx", "traced"))
    try:
        model = convert_onnx(traced)
    finally:
        traced.unlink(missing_ok=True)
    xml = job.staged_file(staging, "openvino")
    record = save_ir(job, model, xml)
    verification = verify_ir(job, xml, record, progress=job.progress)
    details = {"opset": OPSET, "exporter": "torch.onnx.export (TorchScript), then openvino.convert_model"}
    return result(job, xml, record, verification, details)

