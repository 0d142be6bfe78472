"""OpenVINO backend: IR artifacts (`.xml` + `.bin`) on an Intel CPU, GPU or NPU (the `intel-*` targets).

The manifest names the device and the inference precision the artifact was verified with
(`runtime.device`, `runtime.inference_precision`). The precision is always passed to OpenVINO:
left to itself, the CPU plugin computes in bf16 on CPUs with AVX512_BF16 or AMX, which moves the
argmax of near-tied pixels, so an FP32 artifact would not run as it was verified.

The weights file is pinned by its own sha256 in the manifest (`conversion.openvino.weights`), as
the `.xml` is by `artifact_sha256`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseg.errors import BackendUnavailableError, ManifestError, first_line
from edgeseg.formats.openvino import OPENVINO
from edgeseg.manifest import Manifest, cached_sha256
from edgeseg.runtime.backend import Backend, batch_shape, require
from edgeseg.runtime.model_io import TensorDecl, check_declared
from edgeseg.runtime.model_metadata import openvino_summary
from edgeseg.runtime.probing import broken_or_missing, error_line, package_line, probe_import
from edgeseg.targets import TargetProfile

# The manifest's `runtime.inference_precision` -> OpenVINO's INFERENCE_PRECISION_HINT.
INFERENCE_PRECISIONS = ("f32", "bf16")
RT_INFO_SECTION = "edgeseg"  # the IR's rt_info section that holds the model's own description


def weights_path(manifest: Manifest):
    """The `.bin` beside the `.xml` that the manifest names (and pins by sha256)."""
    record = manifest.data.get("conversion", {}).get("openvino", {}).get("weights")
    if not isinstance(record, dict) or not isinstance(record.get("file"), str) or "/" in record["file"]:
        raise ManifestError(f"{manifest.path}: manifest lacks conversion.openvino.weights (the IR's .bin and its "
                            "sha256)")
    return manifest.path.parent / record["file"], record.get("sha256")


def check_weights(manifest: Manifest) -> None:
    """Raise one line unless the `.bin` exists and matches the manifest's sha256."""
    path, expected = weights_path(manifest)
    if not path.is_file():
        raise ManifestError(f"{path}: the weights of {manifest.artifact_path.name} named by {manifest.path.name} "
                            "are missing")
    actual = cached_sha256(path)
    if actual != expected:
        raise ManifestError(f"{path}: sha256 {actual[:12]}… does not match {manifest.path.name} "
                            f"({str(expected)[:12]}…): the weights changed or belong to another conversion")


def has_bfloat16(core: Any) -> bool:
    """Whether OpenVINO's CPU plugin has bfloat16 kernels on this CPU (AVX512_BF16 or AMX)."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _sees(devices: list[str], device: str) -> bool:
    return any(d == device or d.startswith(f"{device}.") for d in devices)  # "GPU.0", "GPU.1" on two GPUs


def probe() -> dict[str, dict[str, Any]]:
    """doctor's `openvino` entry."""
    return {"openvino": openvino_info()}


def openvino_info() -> dict[str, Any]:
    """What `edgeseg doctor` reports: OpenVINO, the devices it sees, and whether this CPU has the bfloat16
    instructions bf16 artifacts need (from OpenVINO where it is installed, else from /proc/cpuinfo)."""
    from edgeseg.cpu_features import bfloat16_flags

    flags = bfloat16_flags()
    found = probe_import("openvino")
    entry: dict[str, Any] = {k: v for k, v in found.items() if k != "module"}
    bf16 = bool(flags)
    if found["status"] == "ok":
        try:
            core = found["module"].Core()
            entry.update(version=found["module"].__version__.split("-")[0], devices=list(core.available_devices))
            bf16 = has_bfloat16(core)
        except Exception as exc:  # noqa: BLE001 - a plugin that fails to load: reported, not fatal
            entry = {"status": "broken", "error": error_line(exc)}
    entry.update(cpu_bfloat16=bf16, cpu_bfloat16_flags=flags,
                 bf16_text=f"; CPU bfloat16: yes ({', '.join(flags)})" if bf16 else "; CPU bfloat16: no")
    return entry


def run_verdict(target: TargetProfile, report: dict[str, Any]) -> tuple[bool, str]:
    """Doctor's (can run, why) for an OpenVINO target, from `probe()`'s entry."""
    entry = report["openvino"]
    device = target.openvino.device if target.openvino is not None else "CPU"
    if entry["status"] != "ok":
        return False, "cannot run, because " + broken_or_missing(entry, OPENVINO.distribution, OPENVINO)
    if not _sees(entry["devices"], device):
        return False, (f"cannot run, because OpenVINO sees no Intel {device} here "
                       f"(openvino.Core().available_devices: {', '.join(entry['devices']) or 'none'})")
    bf16 = "" if "bf16" not in target.precisions or device != "CPU" else \
        ("; bf16 too: this CPU has bfloat16 instructions" if entry["cpu_bfloat16"]
         else "; not bf16: this CPU has no bfloat16 instructions")
    return True, f"can run (OpenVINO {entry['version']}, {device}{bf16})"


def report_lines(report: dict[str, Any]) -> list[str]:
    ov = report["openvino"]
    return [package_line("openvino", ov, f"; devices {', '.join(ov.get('devices', []))}") + ov["bf16_text"]]


def _declared(port: Any) -> TensorDecl:
    """An OpenVINO model port as the tensor the IR declares (dynamic dimensions open)."""
    shape = port.get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in shape)
    return TensorDecl(dims, np.dtype(port.get_element_type().to_dtype()).name)


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(self, manifest: Manifest, *, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(manifest, threads=threads)
        runtime = manifest.data.get("runtime", {})
        self.device = device or runtime.get("device", "CPU")
        self.inference_precision = runtime.get("inference_precision", "f32")
        if self.inference_precision not in INFERENCE_PRECISIONS:
            raise ManifestError(f"{manifest.path}: runtime.inference_precision '{self.inference_precision}' is not "
                                f"one of {', '.join(INFERENCE_PRECISIONS)}")
        check_weights(manifest)
        ov = require("openvino", "the OpenVINO backend")
        core = ov.Core()
        available = list(core.available_devices)
        if not _sees(available, self.device):
            raise BackendUnavailableError(f"{manifest.artifact_path.name}: needs the OpenVINO device {self.device}, "
                                          f"which this machine lacks (openvino.Core().available_devices: "
                                          f"{', '.join(available) or 'none'})")
        if self.inference_precision == "bf16" and self.device == "CPU" and not has_bfloat16(core):
            raise BackendUnavailableError(f"{manifest.artifact_path.name}: a bf16 artifact, and this CPU has no "
                                          "bfloat16 instructions (AVX512_BF16 or AMX); use the fp32 or int8 artifact")
        path, _ = weights_path(manifest)
        try:
            model = core.read_model(str(manifest.artifact_path), str(path))
        except RuntimeError as exc:
            raise ManifestError(f"{manifest.artifact_path}: OpenVINO cannot read it "
                                f"({first_line(exc)[:200]})") from None
        self._check_model(model)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.inference_precision,
                                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if self.threads and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        self.compiled = core.compile_model(model, self.device, config)
        self.request = self.compiled.create_infer_request()

    def _check_model(self, model: Any) -> None:
        """The IR takes the manifest's input and carries the manifest's labels (its rt_info)."""
        manifest = self.manifest
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ManifestError(f"{manifest.artifact_path}: has {len(model.inputs)} inputs and {len(model.outputs)} "
                                "outputs; edgeseg runs one of each")
        shape = model.inputs[0].get_partial_shape()
        expected = list(batch_shape(manifest.input_spec()))
        if shape.is_dynamic or [int(d) for d in shape.to_shape()] != expected:
            raise ManifestError(f"{manifest.path}: says input {expected} but {manifest.artifact_path.name} takes "
                                f"{shape}")
        if model.has_rt_info([RT_INFO_SECTION, "labels"]):
            import json

            labels = tuple(json.loads(model.get_rt_info([RT_INFO_SECTION, "labels"]).astype(str)))
            if labels != manifest.labels:
                raise ManifestError(f"{manifest.path}: its labels differ from those in "
                                    f"{manifest.artifact_path.name}'s rt_info")
        # The rest of the manifest against the tensors and the rt_info the IR declares.
        check_declared(manifest, [_declared(port) for port in model.inputs],
                       [_declared(port) for port in model.outputs], openvino_summary(manifest.artifact_path))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.request is None:
            raise BackendUnavailableError(f"{self.manifest.path.name}: the OpenVINO backend was closed; open it again")
        self.request.infer({0: batch}, share_inputs=True)
        # The output tensor's memory is the request's own and is overwritten by the next call: copy it.
        return np.array(self.request.get_output_tensor(0).data, copy=True)

    def close(self) -> None:
        # The request before the compiled model that owns it.
        self.request = None
        self.compiled = None


BACKEND = OpenVINOBackend
