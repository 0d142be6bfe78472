"""Read TFLite Model Metadata on the device: needs only the `flatbuffers` package (no MediaPipe, no torch).

A `.tflite` keeps its metadata as a flatbuffer (file identifier `M001`, schema `metadata_schema.fbs`
of MediaPipe / TFLite Support) in the model buffer named by the model's `TFLITE_METADATA` entry, and
its associated files (labels) in a zip appended to the model. Neither ai-edge-litert nor tflite-runtime
ships a reader for that schema, so this module reads the few tables edgeseg needs with flatbuffers'
own `Table` accessors; a field is addressed by its id in the schema (flatbuffers schemas only ever
append fields, so ids never change). tests/formats/tflite/test_tflite_mediapipe.py checks it against MediaPipe's
generated schema classes on every artifact it converts.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeseg.errors import BackendUnavailableError, ManifestError
from edgeseg.formats.tflite import LITERT
from edgeseg.optional import require

METADATA_NAME = "TFLITE_METADATA"  # the model's metadata entry holding the buffer
METADATA_IDENTIFIER = b"M001"
TFLITE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"  # what edgeseg names the output's TENSOR_AXIS_LABELS file
TENSOR_AXIS_LABELS = 2  # AssociatedFileType
COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
ACTIVATIONS = {0: "NONE", 1: "SIGMOID", 2: "SOFTMAX"}  # MediaPipe's ImageSegmenterOptions (SEGMENTER_METADATA)
SEGMENTER_METADATA = "SEGMENTER_METADATA"
# TFLite TensorType values (schema.fbs) of the tensor types a segmenter's input or output may have.
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions
_IMAGE_PROPERTIES = 2  # ContentProperties


class _Table:
    """A flatbuffer table with its fields addressed by schema id."""

    def __init__(self, buf: bytes, pos: int) -> None:
        from flatbuffers.table import Table

        self.buf = buf
        self.tab = Table(buf, pos)

    def _offset(self, field_id: int) -> int:
        return self.tab.Offset(4 + 2 * field_id)

    def string(self, field_id: int) -> str | None:
        o = self._offset(field_id)
        return self.tab.String(o + self.tab.Pos).decode("utf-8") if o else None

    def scalar(self, field_id: int, flags, default=0):
        o = self._offset(field_id)
        return self.tab.Get(flags, o + self.tab.Pos) if o else default

    def table(self, field_id: int) -> _Table | None:
        o = self._offset(field_id)
        return _Table(self.buf, self.tab.Indirect(o + self.tab.Pos)) if o else None

    def tables(self, field_id: int) -> list[_Table]:
        o = self._offset(field_id)
        if not o:
            return []
        start = self.tab.Vector(o)
        return [_Table(self.buf, self.tab.Indirect(start + 4 * i)) for i in range(self.tab.VectorLen(o))]

    def vector(self, field_id: int, flags) -> list:
        o = self._offset(field_id)
        if not o:
            return []
        start = self.tab.Vector(o)
        return [self.tab.Get(flags, start + i * flags.bytewidth) for i in range(self.tab.VectorLen(o))]

    def raw(self, field_id: int) -> bytes:
        o = self._offset(field_id)
        if not o:
            return b""
        start = self.tab.Vector(o)
        return bytes(self.buf[start:start + self.tab.VectorLen(o)])


def _root(buf: bytes, identifier: bytes, what: str) -> _Table:
    # flatbuffers comes with ai-edge-litert (the `litert` extra).
    require("flatbuffers", purpose=f"{what}: reading TFLite metadata", extra=LITERT.extra,
            error=BackendUnavailableError)
    from flatbuffers import encode, packer

    if len(buf) < 8 or buf[4:8] != identifier:
        raise ManifestError(f"{what}: not a {identifier.decode()} flatbuffer")
    return _Table(buf, encode.Get(packer.uoffset, buf, 0))


@dataclass(frozen=True)
class TensorMetadata:
    name: str | None
    description: str | None
    color_space: str | None = None
    default_size: tuple[int, int] | None = None  # (height, width)
    mean: tuple[float, ...] | None = None  # NormalizationOptions, 0..255 pixel domain
    std: tuple[float, ...] | None = None
    label_files: tuple[str, ...] = ()  # TENSOR_AXIS_LABELS associated files, in order


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output as the flatbuffer declares it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: tuple[float, int] | None  # (scale, zero point) of a per-tensor quantized tensor


@dataclass(frozen=True)
class ModelMetadata:
    """The parts of a model's TFLite Model Metadata that edgeseg uses, with the labels resolved."""

    name: str | None
    description: str | None
    version: str | None
    author: str | None
    license: str | None
    min_parser_version: str | None
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    custom_metadata: dict[str, bytes] = field(default_factory=dict, repr=False)
    associated_files: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def activation(self) -> str | None:
        """MediaPipe's segmenter activation (NONE, SIGMOID, SOFTMAX), where the model says."""
        from flatbuffers import number_types as n

        data = self.custom_metadata.get(SEGMENTER_METADATA)
        if not data:
            return None
        options = _root(data, b"V001", SEGMENTER_METADATA)
        return ACTIVATIONS.get(options.scalar(0, n.Int8Flags), "UNKNOWN")

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The output's labels: its first TENSOR_AXIS_LABELS file, one name a line."""
        if not self.outputs or not self.outputs[0].label_files:
            return None
        data = self.associated_files.get(self.outputs[0].label_files[0])
        if data is None:
            return None
        return tuple(line.strip() for line in data.decode("utf-8").splitlines() if line.strip())


def _tensor(t: _Table) -> TensorMetadata:
    from flatbuffers import number_types as n

    color_space = default_size = mean = std = None
    content = t.table(3)
    if content is not None and content.scalar(0, n.Uint8Flags) == _IMAGE_PROPERTIES:
        image = content.table(1)
        if image is not None:
            color_space = COLOR_SPACES.get(image.scalar(0, n.Int8Flags), "UNKNOWN")
            size = image.table(1)
            if size is not None:
                default_size = (size.scalar(1, n.Uint32Flags), size.scalar(0, n.Uint32Flags))
    for unit in t.tables(4):
        options = unit.table(1)
        if unit.scalar(0, n.Uint8Flags) == _NORMALIZATION_OPTIONS and options is not None:
            mean = tuple(options.vector(0, n.Float32Flags))
            std = tuple(options.vector(1, n.Float32Flags))
    labels = tuple(f.string(0) or "" for f in t.tables(6) if f.scalar(2, n.Int8Flags) == TENSOR_AXIS_LABELS)
    return TensorMetadata(name=t.string(0), description=t.string(1), color_space=color_space,
                          default_size=default_size, mean=mean, std=std, label_files=labels)


def _metadata_buffer(model: bytes, what: str) -> bytes | None:
    """The bytes of the model buffer that its TFLITE_METADATA entry names, or None."""
    from flatbuffers import number_types as n

    root = _root(model, TFLITE_IDENTIFIER, what)
    entries = [m for m in root.tables(6) if m.string(0) == METADATA_NAME]
    if not entries:
        return None
    index = entries[0].scalar(1, n.Uint32Flags)
    buffers = root.tables(4)
    if index >= len(buffers):
        raise ManifestError(f"{what}: its {METADATA_NAME} entry names buffer {index} of {len(buffers)}")
    buffer = buffers[index]
    data = buffer.raw(0)
    if not data:  # large models keep buffers after the flatbuffer (offset/size)
        offset, size = buffer.scalar(1, n.Uint64Flags), buffer.scalar(2, n.Uint64Flags)
        data = bytes(model[offset:offset + size])
    return data


def _tensor_info(t: _Table) -> TensorInfo:
    from flatbuffers import number_types as n

    quantization = None
    q = t.table(4)
    if q is not None:
        scales, zero_points = q.vector(2, n.Float32Flags), q.vector(3, n.Int64Flags)
        if len(scales) == 1 and scales[0]:
            quantization = (float(scales[0]), int(zero_points[0]) if zero_points else 0)
    kind = t.scalar(1, n.Int8Flags)
    return TensorInfo(name=t.string(3) or "", shape=tuple(t.vector(0, n.Int32Flags)),
                      dtype=TENSOR_TYPES.get(kind, f"type {kind}"), quantization=quantization)


def read_io(path: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The inputs and outputs of the model's first subgraph, read from the flatbuffer (no interpreter)."""
    from flatbuffers import number_types as n

    root = _root(Path(path).read_bytes(), TFLITE_IDENTIFIER, str(path))
    subgraphs = root.tables(2)
    if not subgraphs:
        raise ManifestError(f"{path}: the model has no subgraph")
    sub = subgraphs[0]
    tensors = sub.tables(0)
    inputs, outputs = sub.vector(1, n.Int32Flags), sub.vector(2, n.Int32Flags)
    return tuple(_tensor_info(tensors[i]) for i in inputs), tuple(_tensor_info(tensors[i]) for i in outputs)


def read_metadata(path: Path) -> ModelMetadata | None:
    """The TFLite Model Metadata of `path`, or None when it has none."""
    model = Path(path).read_bytes()
    data = _metadata_buffer(model, str(path))
    if data is None:
        return None
    md = _root(data, METADATA_IDENTIFIER, f"{path}: {METADATA_NAME}")
    subgraphs = md.tables(3)
    sub = subgraphs[0] if subgraphs else None
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        files = {}
    return ModelMetadata(
        name=md.string(0), description=md.string(1), version=md.string(2), author=md.string(4),
        license=md.string(5), min_parser_version=md.string(7),
        inputs=tuple(_tensor(t) for t in sub.tables(2)) if sub else (),
        outputs=tuple(_tensor(t) for t in sub.tables(3)) if sub else (),
        custom_metadata={c.string(0) or "": c.raw(1) for c in sub.tables(9)} if sub else {},
        associated_files=files,
    )
