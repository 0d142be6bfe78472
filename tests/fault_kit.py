"""Helpers for the fault-injection tests: a tiny real ONNX model with an honest manifest, built in
milliseconds (a 1x1 convolution to the sample model's 7 classes), and byte-level damage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeseg.scenes import SYNTHETIC_LABELS

SIZE = 64
CLASSES = len(SYNTHETIC_LABELS)


def tiny_onnx_bytes(seed: int = 0, *, classes: int = CLASSES, bias0: float | None = None,
                    mask_offset: int | None = None) -> bytes:
    """A 1x1 convolution 3 -> `classes` at SIZE x SIZE, NCHW float32, as ONNX bytes.

    `bias0` replaces class 0's bias (NaN or Inf there poisons class 0's score at every pixel);
    `mask_offset` makes it a mask model instead: argmax plus that offset, int64 ids (1 x SIZE x SIZE).
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((classes, 3, 1, 1)).astype(np.float32), "w")
    biases = rng.standard_normal(classes).astype(np.float32)
    if bias0 is not None:
        biases[0] = bias0
    bias = numpy_helper.from_array(biases, "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logits"])]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, SIZE, SIZE])
    initializers = [weight, bias]
    if mask_offset is not None:
        initializers.append(numpy_helper.from_array(np.array(mask_offset, np.int64), "offset"))
        nodes += [helper.make_node("ArgMax", ["logits"], ["ids"], axis=1, keepdims=0),
                  helper.make_node("Add", ["ids", "offset"], ["mask"])]
        output = helper.make_tensor_value_info("mask", TensorProto.INT64, [1, SIZE, SIZE])
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [1, 3, SIZE, SIZE])],
                              [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def tiny_manifest(artifact: Path) -> dict:
    """The manifest conversion would write for `artifact` (the fields the runtime reads)."""
    from edgeseg.manifest import MANIFEST_VERSION, sha256_file

    return {
        "format_version": MANIFEST_VERSION, "artifact": artifact.name, "artifact_sha256": sha256_file(artifact),
        "backend": "onnxruntime", "target": "host-cpu", "precision": "fp32",
        "model": {"architecture": "tiny", "num_classes": CLASSES, "labels": list(SYNTHETIC_LABELS)},
        "input": {"height": SIZE, "width": SIZE, "layout": "NCHW", "dtype": "float32", "color_order": "RGB",
                  "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": 1 / 255}},
        "output": {"kind": "logits", "layout": "NCHW", "dtype": "float32"},
        "runtime": {"threads": 1},
    }


def write_tiny_pair(folder: Path, name: str = "tiny.onnx", seed: int = 0, *, model: bytes | None = None,
                    output: dict | None = None, runtime: dict | None = None) -> Path:
    """A tiny model (or the ONNX bytes `model`) and its manifest in `folder`, the manifest's `output`
    and `runtime` sections replaced when given; returns the manifest's path."""
    from edgeseg.atomic import write_bytes_atomic, write_json_atomic
    from edgeseg.manifest import manifest_path_for

    artifact = Path(folder) / name
    write_bytes_atomic(artifact, model if model is not None else tiny_onnx_bytes(seed))
    manifest = tiny_manifest(artifact)
    manifest.update({k: v for k, v in (("output", output), ("runtime", runtime)) if v is not None})
    write_json_atomic(manifest_path_for(artifact), manifest)
    return manifest_path_for(artifact)


def write_grey_frames(folder: Path, count: int, step: int = 40, *, name: str = "{:02d}.png") -> Path:
    """`folder` with `count` 64 x 48 grey PNG frames, frame i at level `step * i`, named by `name`."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / name.format(i)), np.full((48, 64, 3), step * i, np.uint8))
    return folder


def flip_byte(path: Path, offset: int) -> None:
    """Flip one byte in place, keeping the size. The mtime is moved on explicitly, so the test does
    not depend on the filesystem's timestamp granularity."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
