"""TFLite Model Metadata for an image segmenter, written with MediaPipe's metadata writers.

What MediaPipe Tasks (`ImageSegmenter`), Android Studio's ML Model Binding and the TFLite Task Library
read from a `.tflite`: model name, description, version, author and licence; the input image's colour
space, size and NormalizationOptions (mean/std in the 0-255 pixel domain, as those tools apply them;
none for a uint8 input that normalizes inside the model); the output's meaning and its labels as a
`TENSOR_AXIS_LABELS` associated file (background first); and MediaPipe's `SEGMENTER_METADATA` custom
metadata (activation NONE: the output is taken as logits and argmaxed, which is also what a class mask
output means). `formats/tflite/runtime/metadata.py` reads it back on the device without MediaPipe.
"""

from __future__ import annotations

import gc
import io
import sys
import types
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import BackendUnavailableError, VerificationError
from edgeseg.formats.tflite.runtime.metadata import LABELS_FILE, read_metadata
from edgeseg.optional import require, try_import

# The native helper MediaPipe's populator calls for the metadata's min_parser_version; the
# mediapipe 1.2.x wheels do not ship it (importing the populator fails), so a stand-in computes it.
_NATIVE_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


@dataclass(frozen=True)
class SegmenterFacts:
    """Everything the metadata says, gathered by the exporter from the job."""

    name: str
    description: str
    version: str
    labels: tuple[str, ...]
    height: int
    width: int
    output_kind: str  # "logits" or "mask"
    mean: tuple[float, float, float] | None  # 0..1 domain, as the manifest keeps it; None: in the model
    std: tuple[float, float, float] | None
    author: str | None = None
    license: str | None = None


def _minimum_parser_version(metadata_buffer: bytes) -> str:
    """The oldest metadata parser that reads this buffer, by the rule MediaPipe's metadata_version.cc
    applies (each schema member names the parser version that introduced it; 1.0.0 otherwise)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    md = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(metadata_buffer, 0))
    version = (1, 0, 0)

    def need(v: tuple[int, int, int]) -> None:
        nonlocal version
        version = max(version, v)

    def files(entries) -> None:
        for f in entries or []:
            if f.type == fb.AssociatedFileType.VOCABULARY:
                need((1, 0, 1))
            if f.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
                need((1, 4, 0))
            if f.version is not None:
                need((1, 4, 1))

    def units(entries) -> None:
        for unit in entries or []:
            t = unit.optionsType
            if t in (fb.ProcessUnitOptions.BertTokenizerOptions, fb.ProcessUnitOptions.SentencePieceTokenizerOptions):
                need((1, 1, 0))
            if t == fb.ProcessUnitOptions.RegexTokenizerOptions:
                need((1, 2, 1))

    files(md.associatedFiles)
    for sub in md.subgraphMetadata or []:
        files(sub.associatedFiles)
        for tensor in (sub.inputTensorMetadata or []) + (sub.outputTensorMetadata or []):
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            if tensor.content and tensor.content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                need((1, 3, 0))
        if sub.inputProcessUnits or sub.outputProcessUnits:
            need((1, 1, 0))
        units((sub.inputProcessUnits or []) + (sub.outputProcessUnits or []))
        if sub.inputTensorGroups or sub.outputTensorGroups:
            need((1, 2, 0))
        if sub.customMetadata:
            need((1, 5, 0))
    return ".".join(map(str, version))


def _mediapipe_writers():
    """MediaPipe's metadata writer modules (the `tflite` extra brings MediaPipe), importable on every wheel."""
    if try_import(_NATIVE_VERSION_MODULE).module is None:
        require("mediapipe.tasks.metadata.metadata_schema_py_generated", purpose="writing TFLite Model Metadata",
                error=BackendUnavailableError)
        stand_in = types.ModuleType(_NATIVE_VERSION_MODULE)
        stand_in.__dict__["GetMinimumMetadataParserVersion"] = _minimum_parser_version  # the native function's name
        for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python"):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules[_NATIVE_VERSION_MODULE] = stand_in
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    from mediapipe.tasks.python.metadata.metadata_writers import (
        image_segmenter,
        metadata_info,
        metadata_writer,
    )

    return fb, image_segmenter, metadata_info, metadata_writer


def _input_md(facts: SegmenterFacts, tensor_type):
    """The image input: RGB, the model's size, NormalizationOptions for float input."""
    fb, _, metadata_info, _ = _mediapipe_writers()

    class SizedImageInput(metadata_info.InputImageTensorMd):
        def create_metadata(self):  # a MediaPipe flatbuffer object (TensorMetadataT)
            tensor = super().create_metadata()
            size = fb.ImageSizeT()
            size.width, size.height = facts.width, facts.height
            tensor.content.contentProperties.defaultSize = size
            return tensor

    if facts.mean is None or facts.std is None:
        mean = std = None
        description = "RGB pixels 0..255 (uint8); the model normalizes them itself."
    else:
        # MediaPipe computes (pixel - mean) / std on 0..255 pixels.
        mean = [round(m * 255.0, 6) for m in facts.mean]
        std = [round(s * 255.0, 6) for s in facts.std]
        description = f"RGB image {facts.width}x{facts.height}, (pixel - mean) / std per channel."
    return SizedImageInput(name="image", description=description, norm_mean=mean, norm_std=std,
                           color_space_type=fb.ColorSpaceType.RGB, tensor_type=tensor_type)


def _output_description(facts: SegmenterFacts) -> str:
    if facts.output_kind == "mask":
        return f"uint8 class mask 1x{facts.height}x{facts.width}: the class id of each pixel (labels in {LABELS_FILE})."
    return (f"logits 1x{facts.height}x{facts.width}x{len(facts.labels)} (NHWC, no softmax): "
            f"the class of a pixel is the argmax over the last axis (labels in {LABELS_FILE}).")


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def populate(model: bytes, facts: SegmenterFacts, *, repack: Callable[[bytes], bytes]) -> bytes:
    """`model` with the image segmenter metadata and its labels file inside.

    MediaPipe's populator re-packs the flatbuffer with its own (unaligned) buffers and appends the
    associated files as a zip; `repack` restores the exporter's buffer layout, then the zip is
    appended again, so the labels are where every reader of TFLite associated files looks.
    """
    _, image_segmenter, _, metadata_writer = _mediapipe_writers()
    from mediapipe.tasks.python.metadata.metadata_writers import writer_utils

    buffer = bytearray(model)
    writer = metadata_writer.MetadataWriter(buffer)
    writer.add_general_info(facts.name, facts.description)
    general = writer._general_md  # the public add_general_info takes only name and description
    general.version, general.author, general.licenses = facts.version, facts.author, facts.license
    # add_image_input cannot set the image size (ImageProperties.default_size): append our own input entry.
    writer._input_mds.append(_input_md(facts, writer_utils.get_input_tensor_types(buffer)[0]))
    writer.add_custom_metadata(image_segmenter.ImageSegmenterOptionsMd(image_segmenter.Activation.NONE))
    writer.add_segmentation_output(metadata_writer.Labels().add(list(facts.labels), exported_filename=LABELS_FILE),
                                   name="segmentation_masks", description=_output_description(facts))
    populated, _ = writer.populate()
    # The writer cleans its temporary folder in __del__, which fails if it first runs at interpreter exit.
    del writer
    gc.collect()
    with zipfile.ZipFile(io.BytesIO(bytes(populated))) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return repack(bytes(populated)) + associated_files_zip(files)


def associated_files_zip(files: dict[str, bytes]) -> bytes:
    """Stored (uncompressed) zip of the associated files, as MediaPipe's populator appends it.

    Each entry carries zip's earliest date (1980-01-01), not the time of writing, so one conversion of the
    same weights gives the same bytes (artifacts compare by sha256)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_EPOCH), data)
    return archive.getvalue()


def verify(path: Path, facts: SegmenterFacts) -> None:
    """Read the written model's metadata back with the device-side reader; refuse it if it says
    anything else than `facts` (labels, normalization, size, colour space, name)."""
    md = read_metadata(path)
    if md is None:
        raise VerificationError(f"{path.name}: no TFLite Model Metadata in the written model")
    image = md.inputs[0] if md.inputs else None
    def rounded(values) -> tuple[float, ...]:
        return tuple(round(float(v), 4) for v in values)

    expected_norm = None if facts.mean is None or facts.std is None else (
        rounded(m * 255.0 for m in facts.mean), rounded(s * 255.0 for s in facts.std))
    found_norm = None if image is None or image.mean is None else (rounded(image.mean), rounded(image.std or ()))
    wrong = [what for what, ok in (
        ("labels", md.labels == facts.labels),
        ("normalization", found_norm == expected_norm),
        ("image size", image is not None and image.default_size == (facts.height, facts.width)),
        ("colour space", image is not None and image.color_space == "RGB"),
        ("name", md.name == facts.name),
    ) if not ok]
    if wrong:
        raise VerificationError(f"{path.name}: its TFLite Model Metadata reads back wrong: {', '.join(wrong)}")
