"""LiteRT (TensorFlow Lite) backend: the Android targets, run here on the CPU with XNNPACK.

Uses `ai_edge_litert.interpreter` and falls back to `tflite_runtime.interpreter` where only
that is installed. Quantized (int8/uint8) inputs and outputs are handled with the model's own
scale and zero point: `infer` takes the batch the manifest's input spec describes (float, raw
uint8 pixels, or already-quantized int8/uint8; a float batch for a quantized input is quantized
here) and returns float logits (dequantized) or the uint8 class mask.

A `.tflite` without an edgeseg manifest runs from its TFLite Model Metadata (`manifest_from_metadata`:
MediaPipe's segmenters, any model with NormalizationOptions and output labels); a manifest's labels
must agree with the labels file inside the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.errors import BackendUnavailableError, ConfigError, ManifestError, first_line
from edgeseg.formats.tflite import INTERPRETERS, TFLITE_RUNTIME
from edgeseg.formats.tflite.runtime.metadata import LABELS_FILE, METADATA_NAME, read_io, read_metadata
from edgeseg.input_spec import PIXEL_SCALE
from edgeseg.manifest import Manifest, manifest_path_for, sha256_file
from edgeseg.optional import require, try_import
from edgeseg.runtime.backend import Backend, batch_shape
from edgeseg.runtime.model_io import TensorDecl, check_declared
from edgeseg.runtime.model_metadata import tflite_summary

TFLITE_FILE_IDENTIFIER = b"TFL3"
FOREGROUND_LABEL_BACKGROUND = "background"  # class 0 of a one-channel (foreground score) model


def interpreter_module():
    """The first LiteRT interpreter module that imports here (ai-edge-litert, else tflite-runtime)."""
    preferred, *others = INTERPRETERS
    try:
        return require(f"{preferred.module}.interpreter", purpose="the LiteRT backend", error=BackendUnavailableError)
    except BackendUnavailableError as missing:
        for package in others:
            if (module := try_import(f"{package.module}.interpreter").module) is not None:
                return module
        raise BackendUnavailableError(f"{missing} (or '{TFLITE_RUNTIME.distribution}', with numpy<2)") from None


def embedded_labels(path: Path) -> tuple[str, ...] | None:
    """The output labels in a `.tflite`'s TFLite Model Metadata (its TENSOR_AXIS_LABELS file), if any."""
    metadata = read_metadata(path)
    return metadata.labels if metadata is not None else None


def _metadata_input(path: Path, metadata, tensor) -> dict:
    """The manifest's input entry from the input tensor and its metadata (NormalizationOptions in 0..255)."""
    shape = tensor.shape
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise ManifestError(f"{path}: takes input {list(shape)}; edgeseg runs one NHWC RGB image (1xHxWx3)")
    image = metadata.inputs[0] if metadata.inputs else None
    if image is not None and image.color_space not in (None, "RGB", "UNKNOWN"):
        raise ManifestError(f"{path}: its TFLite metadata says the input is {image.color_space}, not RGB")
    entry = {"height": int(shape[1]), "width": int(shape[2]), "layout": "NHWC", "dtype": tensor.dtype,
             "color_order": "RGB", "resize": "stretch"}
    if image is None or image.mean is None:
        if tensor.dtype != "uint8":  # uint8 without it: raw pixels, as MediaPipe feeds them
            raise ManifestError(f"{path}: its TFLite metadata has no NormalizationOptions for its {tensor.dtype} "
                                f"input; edgeseg cannot tell how to scale the pixels (write a manifest, "
                                f"{manifest_path_for(path).name})")
        entry["normalization"] = "in_model"
        return entry
    mean, std = (np.broadcast_to(np.asarray(v, np.float64), 3) / 255.0 for v in (image.mean, image.std))
    entry["normalization"] = {"mean": mean.tolist(), "std": std.tolist(), "scale": PIXEL_SCALE}
    if tensor.dtype in ("int8", "uint8") and tensor.quantization is not None:
        entry["quantization"] = {"scale": tensor.quantization[0], "zero_point": tensor.quantization[1]}
    return entry


def _metadata_output(path: Path, metadata, tensor) -> tuple[dict, tuple[str, ...]]:
    """The manifest's output entry and the class labels, from the output tensor and its labels file."""
    labels = metadata.labels
    if not labels:
        raise ManifestError(f"{path}: its TFLite metadata has no labels file (TENSOR_AXIS_LABELS) for the output")
    shape = tensor.shape
    entry = {"name": tensor.name, "dtype": tensor.dtype}
    if len(shape) == 4 and shape[3] == 1:
        if metadata.activation not in (None, "NONE"):
            raise ManifestError(f"{path}: a one-channel output with activation {metadata.activation} is not supported")
        # MediaPipe's rule for one channel: a foreground probability, foreground where it exceeds 0.5.
        return {**entry, "kind": "foreground", "layout": "NHWC"}, (FOREGROUND_LABEL_BACKGROUND, labels[0])
    if len(shape) == 4:
        entry.update(kind="logits", layout="NHWC")
        if tensor.quantization is not None:
            entry["quantization"] = {"scale": tensor.quantization[0], "zero_point": tensor.quantization[1]}
        classes = int(shape[3])
    elif len(shape) == 3 and tensor.dtype in ("uint8", "int32", "int64"):
        entry.update(kind="mask", layout="NHW")
        classes = len(labels)
    else:
        raise ManifestError(f"{path}: output {list(shape)} is neither NHWC scores nor an NHW class mask")
    if len(labels) != classes:
        raise ManifestError(f"{path}: its labels file names {len(labels)} classes but the output has {classes}")
    return entry, labels


def manifest_from_metadata(path: Path) -> Manifest:
    """An in-memory manifest for a `.tflite` that has TFLite Model Metadata but no edgeseg manifest.

    One line names what is missing when the model cannot be configured from its metadata."""
    path = Path(path)
    metadata = read_metadata(path)
    if metadata is None:
        raise ManifestError(f"{path}: has no manifest beside it ({manifest_path_for(path).name}) and no TFLite Model "
                            f"Metadata ({METADATA_NAME}) to take its input normalization and labels from")
    inputs, outputs = read_io(path)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ManifestError(f"{path}: has {len(inputs)} inputs and {len(outputs)} outputs; edgeseg runs one of each")
    input_entry = _metadata_input(path, metadata, inputs[0])
    output_entry, labels = _metadata_output(path, metadata, outputs[0])
    data = {
        "artifact": path.name, "artifact_sha256": sha256_file(path), "size_mb": round(path.stat().st_size / 2**20, 3),
        "backend": "litert", "target": "android-cpu", "precision": "unknown",
        "model": {"architecture": metadata.name or path.stem, "num_classes": len(labels), "labels": list(labels),
                  "weights_source": f"{path.name}: TFLite Model Metadata ({metadata.description or 'no description'})"},
        "input": input_entry, "output": output_entry, "runtime": {},
        "from_metadata": True,  # written by edgeseg from the model itself, not a converted artifact's manifest
    }
    return Manifest(manifest_path_for(path), data)


def _declared(detail: dict) -> TensorDecl:
    """An interpreter's tensor detail as the tensor the model declares."""
    return TensorDecl(tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name)


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
            self.interpreter = module.Interpreter(model_path=str(path),
                                                  num_threads=int(self.threads) if self.threads else None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ManifestError(f"{path}: LiteRT cannot load it ({first_line(exc)[:200]})") from None
        self._check_against_manifest(path)

    def _check_against_manifest(self, path: Path) -> None:
        manifest = self.manifest
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ManifestError(f"{path}: has {len(inputs)} inputs and {len(outputs)} outputs; "
                                "edgeseg runs one of each")
        self.input, self.output = inputs[0], outputs[0]
        spec = manifest.input_spec()
        expected = list(batch_shape(spec))
        if list(self.input["shape"]) != expected:
            raise ManifestError(
                f"{manifest.path}: says input {expected} ({spec.layout}) but {path.name} takes "
                f"{self.input['shape'].tolist()}"
            )
        model_dtype = np.dtype(self.input["dtype"]).name
        if model_dtype != spec.dtype:
            raise ManifestError(f"{manifest.path}: says input dtype {spec.dtype} but {path.name} takes {model_dtype}")
        self.input_quant = _quantization(self.input)
        if spec.quant_scale is not None and self.input_quant is not None:
            scale, zero_point = self.input_quant
            if not np.isclose(spec.quant_scale, scale, rtol=1e-5) or spec.quant_zero_point != zero_point:
                raise ManifestError(
                    f"{manifest.path}: says input quantization scale {spec.quant_scale} zero point "
                    f"{spec.quant_zero_point} "
                    f"but {path.name} uses {scale} and {zero_point}"
                )
        self.output_kind = manifest.output_spec().kind
        self.output_quant = _quantization(self.output) if self.output_kind == "logits" else None
        if not manifest.data.get("from_metadata"):
            labels = embedded_labels(path)
            if labels is not None and labels != manifest.labels:
                raise ManifestError(f"{manifest.path}: its labels differ from the {LABELS_FILE} "
                                    f"in {path.name}'s TFLite metadata")
        # The rest of the manifest against the tensors and the TFLite Model Metadata the model declares.
        check_declared(manifest, [_declared(self.input)], [_declared(self.output)], tflite_summary(path))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if batch.dtype != dtype:
            if self.input_quant is None or batch.dtype.kind != "f":
                raise ConfigError(f"{self.manifest.artifact_path.name}: takes {np.dtype(dtype).name} input, got "
                                  f"{batch.dtype}")
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
