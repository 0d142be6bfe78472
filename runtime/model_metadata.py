"""What an artifact says about itself (TFLite Model Metadata, ONNX metadata_props), and whether that
agrees with its edgeseg manifest: `edgeseg info` shows both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.formats import all_formats
from edgeseg.manifest import Manifest


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


def _onnx_props(path: Path) -> dict[str, str] | None:
    """`metadata_props`, read by ONNX Runtime (the device's engine for ONNX: the device side never needs the
    onnx package); None without it."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    # Only the model's metadata is wanted: no graph optimization (seconds on a big model, none of it used).
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def onnx_summary(path: Path) -> dict[str, Any] | None:
    """The `metadata_props` of an `.onnx` (JSON values decoded); None when it has none."""
    props = _onnx_props(path)
    if props is None:
        return {"format": "ONNX metadata_props", "unread": "needs the onnxruntime package"}
    if not props:
        return None
    for key in ("labels", "normalization"):
        if props.get(key, "").startswith(("[", "{")):
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
        for key, value in (("input_layout", spec.layout), ("color_order", spec.color_order),
                           ("output_kind", manifest.output_spec().kind),
                           ("inference_precision", manifest.data.get("runtime", {}).get("inference_precision"))):
            if summary.get(key) not in (None, value):
                found.append(key)
        norm = summary.get("normalization")
        expected = "in_model" if spec.mean is None else {"mean": list(spec.mean), "std": list(spec.std or ())}
        if norm is not None and (norm == "in_model") != (expected == "in_model"):
            found.append("normalization")
        elif isinstance(norm, dict) and isinstance(expected, dict) and not (
                np.allclose(norm["mean"], expected["mean"]) and np.allclose(norm["std"], expected["std"])):
            found.append("normalization mean/std")
    return found
