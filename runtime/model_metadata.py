"""What an artifact says about itself (TFLite Model Metadata, ONNX metadata_props), and whether that
agrees with its edgeseg manifest: `edgeseg info` shows both."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import ManifestError, first_line
from edgeseg.formats import all_formats
from edgeseg.manifest import Manifest
from edgeseg.runtime.model_io import TensorDecl


def tflite_summary(path: Path) -> dict[str, Any] | None:
    """The TFLite Model Metadata of a `.tflite`, as plain data; None when it has none."""
    from edgeseg.formats.tflite.runtime.metadata import read_metadata

    md = read_metadata(path)
    if md is None:
        return None
    image = md.inputs[0] if md.inputs else None
    output = md.outputs[0] if md.outputs else None
    return {
        "format": "TFLite Model Metadata", "name": md.name, "description": md.description, "version": md.version,
        "author": md.author, "license": md.license, "min_parser_version": md.min_parser_version,
        "color_space": image.color_space if image else None,
        "size": list(image.default_size) if image and image.default_size else None,
        "normalization": ({"mean": list(image.mean), "std": list(image.std)}
                          if image and image.mean is not None and image.std is not None
                          else None),  # in the 0..255 pixel domain
        "output": output.description if output else None, "activation": md.activation,
        "labels": list(md.labels) if md.labels else None, "associated_files": sorted(md.associated_files),
    }


def _onnx_session(path: Path) -> Any:
    """An ONNX Runtime session that only describes the model (the device's engine for ONNX: the device side
    never needs the onnx package); None without onnxruntime; one line when it cannot read the file."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    # Only the model's description is wanted: no graph optimization (seconds on a big model, none of it used).
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ManifestError(f"{path}: ONNX Runtime cannot read it ({first_line(exc)[:200]})") from None


def _onnx_props(path: Path) -> dict[str, str] | None:
    """`metadata_props`, read by ONNX Runtime; None without it."""
    session = _onnx_session(path)
    return None if session is None else dict(session.get_modelmeta().custom_metadata_map)


ONNX_TYPES = {"float": "float32", "double": "float64"}  # ONNX Runtime's 'tensor(float)' -> numpy's name


def onnx_tensor(arg: Any) -> TensorDecl:
    """An ONNX Runtime NodeArg as a TensorDecl (symbolic dimensions are open)."""
    kind = str(arg.type).removeprefix("tensor(").removesuffix(")")
    return TensorDecl(tuple(d if isinstance(d, int) else None for d in arg.shape), ONNX_TYPES.get(kind, kind))


def _onnx_io(path: Path) -> tuple[list[TensorDecl], list[TensorDecl]] | None:
    session = _onnx_session(path)
    if session is None:
        return None
    return [onnx_tensor(a) for a in session.get_inputs()], [onnx_tensor(a) for a in session.get_outputs()]


def _tflite_io(path: Path) -> tuple[list[TensorDecl], list[TensorDecl]]:
    from edgeseg.formats.tflite.runtime.metadata import read_io

    inputs, outputs = read_io(path)
    return [TensorDecl(t.shape, t.dtype) for t in inputs], [TensorDecl(t.shape, t.dtype) for t in outputs]


OPENVINO_TYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "u8": "uint8", "i8": "int8", "i32": "int32",
                  "i64": "int64"}


def _openvino_io(path: Path) -> tuple[list[TensorDecl], list[TensorDecl]]:
    """The IR's Parameter and Result tensors, from its XML (no OpenVINO needed)."""
    import xml.etree.ElementTree as ET

    layers = ET.parse(path).getroot().iter("layer")
    inputs, outputs = [], []
    for layer in layers:
        if layer.get("type") == "Parameter":
            data = layer.find("data")
            shape = (data.get("shape", "") if data is not None else "").split(",")
            kind = data.get("element_type", "") if data is not None else ""
            inputs.append(TensorDecl(tuple(int(d) if d.strip().isdigit() else None for d in shape),
                                     OPENVINO_TYPES.get(kind, kind)))
        elif layer.get("type") == "Result":
            port = layer.find("input/port")
            dims = [d.text or "" for d in port.findall("dim")] if port is not None else []
            kind = (port.get("precision", "") if port is not None else "").lower()
            outputs.append(TensorDecl(tuple(int(d) if d.isdigit() else None for d in dims),
                                      {"fp32": "float32", "fp16": "float16"}.get(kind, OPENVINO_TYPES.get(kind, kind))))
    return inputs, outputs


def declared_io(path: Path) -> tuple[list[TensorDecl], list[TensorDecl]] | None:
    """The tensors the artifact declares, for the formats that can be read without their engine here (ONNX
    through ONNX Runtime, TFLite's flatbuffer, OpenVINO's XML); None for the others."""
    formats = all_formats()
    readers = {formats["tflite"].suffix: _tflite_io, formats["onnx"].suffix: _onnx_io,
               formats["openvino"].suffix: _openvino_io}
    reader = readers.get(path.suffix)
    return reader(path) if reader is not None else None


def onnx_summary(path: Path) -> dict[str, Any] | None:
    """The `metadata_props` of an `.onnx` (JSON values decoded); None when it has none."""
    props = _onnx_props(path)
    if props is None:
        return {"format": "ONNX metadata_props", "unread": "needs the onnxruntime package"}
    return summary_of_props(props)


def summary_of_props(props: dict[str, str]) -> dict[str, Any] | None:
    """ONNX `metadata_props` as `info` shows them (JSON values decoded); None when there are none."""
    if not props:
        return None
    props = dict(props)
    for key in ("labels", "normalization"):
        if props.get(key, "").startswith(("[", "{")):
            with contextlib.suppress(ValueError):  # else shown and compared as written (so found to disagree)
                props[key] = json.loads(props[key])
    return {"format": "ONNX metadata_props", **props}


def openvino_summary(path: Path) -> dict[str, Any] | None:
    """The `edgeseg` section of an OpenVINO IR's `rt_info` (JSON values decoded); None when it has none.

    Read from the `.xml` itself (the IR's documented XML): no OpenVINO needed to describe an artifact."""
    import xml.etree.ElementTree as ET

    from edgeseg.formats.openvino.runtime import RT_INFO_SECTION

    section = ET.parse(path).getroot().find(f"rt_info/{RT_INFO_SECTION}")
    if section is None:
        return None
    props = {child.tag: child.get("value", "") for child in section}
    for key in ("labels", "normalization"):
        if props.get(key, "").startswith(("[", "{")):
            props[key] = json.loads(props[key])
    return {"format": "OpenVINO IR rt_info", **props}


def embedded_summary(path: Path) -> dict[str, Any] | None:
    """The artifact's own metadata, for the formats that carry it (else None)."""
    formats = all_formats()
    readers = {formats["tflite"].suffix: tflite_summary, formats["onnx"].suffix: onnx_summary,
               formats["openvino"].suffix: openvino_summary}
    reader = readers.get(path.suffix)
    return reader(path) if reader is not None else None


def _normalization_0_255(manifest: Manifest) -> tuple[np.ndarray, np.ndarray] | None:
    spec = manifest.input_spec()
    if spec.mean is None:
        return None
    return np.asarray(spec.mean) * 255.0, np.asarray(spec.std) * 255.0


def disagreements(manifest: Manifest, summary: dict[str, Any]) -> list[str]:
    """Where the artifact's own metadata and its manifest say different things (empty: they agree)."""
    spec = manifest.input_spec()
    found = []
    if summary.get("labels") is not None and tuple(summary["labels"]) != manifest.labels:
        found.append("labels")
    if summary["format"] == "TFLite Model Metadata":
        expected = _normalization_0_255(manifest)
        norm = summary.get("normalization")
        if (norm is None) != (expected is None):
            found.append("normalization (present in one, absent in the other)")
        elif norm is not None and expected is not None and not (
                np.allclose(np.broadcast_to(norm["mean"], 3), expected[0], atol=1e-3)
                and np.allclose(np.broadcast_to(norm["std"], 3), expected[1], rtol=1e-4)):
            found.append("normalization mean/std")
        if summary.get("size") is not None and summary["size"] != [spec.height, spec.width]:
            found.append("input size")
        if summary.get("color_space") not in (None, "UNKNOWN", spec.color_order):
            found.append("colour space")
    else:
        if summary.get("resolution") not in (None, f"{spec.height}x{spec.width}"):
            found.append("resolution")
        output = manifest.output_spec()
        runtime = manifest.data.get("runtime")
        for key, value in (("input_layout", spec.layout), ("input_dtype", spec.dtype),
                           ("color_order", spec.color_order), ("output_kind", output.kind),
                           ("output_layout", output.layout), ("num_classes", str(manifest.num_classes)),
                           ("precision", manifest.data.get("precision")),
                           ("architecture", manifest.data["model"].get("architecture")),
                           ("inference_precision", runtime.get("inference_precision")
                            if isinstance(runtime, dict) else None)):
            if value is not None and summary.get(key) not in (None, value):  # where both say something
                found.append(key)
        norm = summary.get("normalization")
        expected = "in_model" if spec.mean is None else {"mean": list(spec.mean), "std": list(spec.std or ())}
        if norm is not None and (norm == "in_model") != (expected == "in_model"):
            found.append("normalization")
        elif isinstance(norm, dict) and isinstance(expected, dict) and not (
                np.allclose(norm["mean"], expected["mean"]) and np.allclose(norm["std"], expected["std"])):
            found.append("normalization mean/std")
    return found
