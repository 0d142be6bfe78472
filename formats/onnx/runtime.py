"""ONNX Runtime backend (the workstation's CPU, and the accuracy check of Q/DQ INT8 models)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseg.errors import ManifestError, first_line
from edgeseg.formats.onnx import ONNXRUNTIME
from edgeseg.manifest import Manifest
from edgeseg.runtime.backend import Backend, require
from edgeseg.runtime.model_io import check_declared
from edgeseg.runtime.model_metadata import onnx_tensor, summary_of_props
from edgeseg.runtime.probing import broken_or_missing, package_line, probe_import, public
from edgeseg.targets import TargetProfile, engine_floor_problem


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(manifest, threads=threads)
        ort = require("onnxruntime", "the ONNX Runtime backend")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(manifest.artifact_path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ManifestError(f"{manifest.artifact_path}: ONNX Runtime cannot load it "
                                f"({first_line(exc)[:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        # The manifest against the model's own tensors and metadata_props: one line naming the field.
        check_declared(manifest, [onnx_tensor(a) for a in inputs], [onnx_tensor(a) for a in outputs],
                       summary_of_props(dict(self.session.get_modelmeta().custom_metadata_map)))
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]


BACKEND = OnnxRuntimeBackend


# --------------------------------------------------------------------------- what doctor asks

def probe() -> dict[str, dict[str, Any]]:
    """doctor's `onnxruntime` entry: the version and the execution providers."""
    found = probe_import("onnxruntime")
    if found["status"] != "ok":
        return {"onnxruntime": public(found)}
    ort = found["module"]
    return {"onnxruntime": {"status": "ok", "version": ort.__version__,
                            "providers": list(ort.get_available_providers())}}


def run_verdict(target: TargetProfile, report: dict[str, Any]) -> tuple[bool, str]:
    """doctor's (can run, why) for an ONNX Runtime target."""
    ort = report["onnxruntime"]
    if ort["status"] != "ok":
        return False, "cannot run, because " + broken_or_missing(ort, ONNXRUNTIME.distribution, ONNXRUNTIME)
    too_old = engine_floor_problem(target.format, ort.get("version"))
    return (False, f"cannot run, because {too_old}") if too_old else \
        (True, "can run (ONNX Runtime, CPUExecutionProvider)")


def report_lines(report: dict[str, Any]) -> list[str]:
    ort = report["onnxruntime"]
    return [package_line("onnxruntime", ort, f"; providers {', '.join(ort.get('providers', []))}")]
