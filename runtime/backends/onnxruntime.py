"""ONNX Runtime backend (the workstation's CPU, and the accuracy check of Q/DQ INT8 models)."""

from __future__ import annotations

import numpy as np

from edgeseg.errors import ManifestError
from edgeseg.manifest import Manifest
from edgeseg.runtime.backends import Backend, batch_shape, require


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
                                f"({str(exc).splitlines()[0][:200]})") from None
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        spec = manifest.input_spec()
        expected = list(batch_shape(spec))
        if list(inputs[0].shape) != expected:
            raise ManifestError(
                f"{manifest.path}: says input {expected} but {manifest.artifact_path.name} takes {inputs[0].shape}"
            )
        self.output_name = self.session.get_outputs()[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]


BACKEND = OnnxRuntimeBackend
