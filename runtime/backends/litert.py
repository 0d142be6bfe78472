"""LiteRT (TensorFlow Lite) backend: the Android targets, run here on the CPU with XNNPACK.

Uses `ai_edge_litert.interpreter` and falls back to `tflite_runtime.interpreter` where only
that is installed. Quantized (int8/uint8) inputs and outputs are handled with the model's own
scale and zero point: `infer` takes the batch the manifest's input spec describes (float, raw
uint8 pixels, or already-quantized int8/uint8; a float batch for a quantized input is quantized
here) and returns float logits (dequantized) or the uint8 class mask.
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

import numpy as np

from edgeseg.errors import BackendUnavailableError, ConfigError, ManifestError
from edgeseg.manifest import Manifest
from edgeseg.runtime.backends import Backend

TFLITE_FILE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"  # associated file inside the model (a zip appended to the flatbuffer)
_RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def interpreter_module():
    """The first LiteRT interpreter module that imports here (ai-edge-litert, else tflite-runtime)."""
    for name in _RUNTIMES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BackendUnavailableError(
        "the LiteRT backend needs 'ai-edge-litert' (pip install 'edgeseg[litert]') or 'tflite-runtime' (numpy<2), "
        "neither is installed here"
    )


def embedded_labels(path: Path) -> tuple[str, ...] | None:
    """Label names stored inside a `.tflite` as the associated file `labels.txt`, if any.

    TFLite keeps associated files in a zip appended to the flatbuffer (the TFLite Support
    convention); the interpreter ignores the trailing bytes, any zip reader finds the file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            if LABELS_FILE not in archive.namelist():
                return None
            text = archive.read(LABELS_FILE).decode("utf-8")
    except (zipfile.BadZipFile, OSError):
        return None
    return tuple(line for line in text.splitlines() if line)


def _quantization(detail: dict) -> tuple[float, int] | None:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero_point)) if scale else None


class LiteRTBackend(Backend):
    name = "litert"

    def __init__(self, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(manifest, threads=threads)
        path = manifest.artifact_path
        with open(path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[4:8] != TFLITE_FILE_IDENTIFIER:
            raise ManifestError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
        module = interpreter_module()
        self.runtime = module.__name__.split(".")[0]
        try:
            # The default op resolver applies the XNNPACK delegate on the CPU, as android-cpu does.
            self.interpreter = module.Interpreter(model_path=str(path), num_threads=int(self.threads) if self.threads else None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ManifestError(f"{path}: LiteRT cannot load it ({str(exc).splitlines()[0][:200]})") from None
        self._check_against_manifest(path)

    def _check_against_manifest(self, path: Path) -> None:
        manifest = self.manifest
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ManifestError(f"{path}: has {len(inputs)} inputs and {len(outputs)} outputs; edgeseg runs one of each")
        self.input, self.output = inputs[0], outputs[0]
        spec = manifest.input_spec()
        expected = [1, spec.height, spec.width, 3] if spec.layout == "NHWC" else [1, 3, spec.height, spec.width]
        if list(self.input["shape"]) != expected:
            raise ManifestError(
                f"{manifest.path}: says input {expected} ({spec.layout}) but {path.name} takes {self.input['shape'].tolist()}"
            )
        model_dtype = np.dtype(self.input["dtype"]).name
        if model_dtype != spec.dtype:
            raise ManifestError(f"{manifest.path}: says input dtype {spec.dtype} but {path.name} takes {model_dtype}")
        self.input_quant = _quantization(self.input)
        if spec.quant_scale is not None and self.input_quant is not None:
            scale, zero_point = self.input_quant
            if not np.isclose(spec.quant_scale, scale, rtol=1e-5) or spec.quant_zero_point != zero_point:
                raise ManifestError(
                    f"{manifest.path}: says input quantization scale {spec.quant_scale} zero point {spec.quant_zero_point} "
                    f"but {path.name} uses {scale} and {zero_point}"
                )
        self.output_kind = manifest.output.get("kind", "logits")
        self.output_quant = _quantization(self.output) if self.output_kind == "logits" else None
        labels = embedded_labels(path)
        if labels is not None and labels != manifest.labels:
            raise ManifestError(f"{manifest.path}: its labels differ from the {LABELS_FILE} inside {path.name}")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if batch.dtype != dtype:
            if self.input_quant is None or batch.dtype.kind != "f":
                raise ConfigError(f"{self.manifest.artifact_path.name}: takes {np.dtype(dtype).name} input, got {batch.dtype}")
            scale, zero_point = self.input_quant
            info = np.iinfo(dtype)
            batch = np.clip(np.round(batch / scale) + zero_point, info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])  # a copy, safe across invokes
        if self.output_quant is not None:
            scale, zero_point = self.output_quant
            out = (out.astype(np.float32) - zero_point) * scale
        return out


BACKEND = LiteRTBackend
