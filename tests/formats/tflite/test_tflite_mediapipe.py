"""Android's own tools load edgeseg's `.tflite` as it is: MediaPipe's ImageSegmenter reads the TFLite
Model Metadata (normalization, labels) and segments like edgeseg's own runtime.

Images are given to both at the model's resolution (160 px here), so MediaPipe's resize and edgeseg's
are out of the comparison: what is compared is the metadata-driven preprocessing, the model and the
argmax. The artifacts are the session's (conftest `make`, shared with test_tflite.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("litert_torch", reason="TFLite conversion needs litert-torch (pip install 'edgeseg[tflite]')")
pytest.importorskip("ai_edge_litert", reason="the LiteRT backend needs ai-edge-litert")
mp = pytest.importorskip("mediapipe", reason="the check needs MediaPipe (pip install 'edgeseg[dev]')")

from mediapipe.tasks.python import vision  # noqa: E402
from mediapipe.tasks.python.core.base_options import BaseOptions  # noqa: E402

from edgeseg.cli import main  # noqa: E402
from edgeseg.datasets import open_dataset  # noqa: E402
from edgeseg.errors import ManifestError  # noqa: E402
from edgeseg.formats.tflite.runtime.metadata import read_metadata  # noqa: E402
from edgeseg.manifest import MANIFEST_SUFFIX  # noqa: E402
from edgeseg.runtime.backend import load_model_manifest, open_backend  # noqa: E402
from edgeseg.runtime.postprocess import output_to_mask  # noqa: E402
from edgeseg.runtime.preprocess import preprocess_rgb  # noqa: E402
from edgeseg.scenes import SYNTHETIC_LABELS, generate_scene, scene_rng  # noqa: E402
from tests.constants import REPO  # noqa: E402

pytestmark = pytest.mark.slow

VARIANTS = {  # artifact suffix -> how conftest's `make` builds it
    "fp32": ("fp32", {}),
    "fp16": ("fp16", {}),
    "int8-dynamic": ("int8-dynamic", {}),
    "int8": ("int8", {}),
    "fp32-u8in": ("fp32", {"fuse_preprocessing": True}),
}
MIN_AGREEMENT = 0.995


def artifact(manifest: dict) -> Path:
    return Path(manifest["manifest_path"][: -len(MANIFEST_SUFFIX)])


def segmenter(path: Path):
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           output_category_mask=True, output_confidence_masks=False)
    return vision.ImageSegmenter.create_from_options(options)


@pytest.fixture(scope="module")
def images(shared_data: Path) -> list[np.ndarray]:
    """Three VOC sample photos and three synthetic scenes, RGB."""
    dataset = open_dataset(shared_data / "voc-sample", "val")
    photos = [dataset.pair(i)[0] for i in range(3)]
    scenes = [generate_scene(scene_rng(11, "val", i))[0] for i in range(3)]
    return photos + scenes


def _agreement_script():
    """benchmarks/scripts/mediapipe_agreement.py: the test and the numbers in docs/android.md share its measure."""
    import importlib.util

    path = REPO / "benchmarks" / "scripts" / "mediapipe_agreement.py"
    spec = importlib.util.spec_from_file_location("mediapipe_agreement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


agreement_with_mediapipe = _agreement_script().agreement


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mediapipe_image_segmenter_agrees_with_the_runtime(make, images, variant: str) -> None:
    precision, request = VARIANTS[variant]
    path = artifact(make(precision, **request))
    assert path.name.endswith(f"-{precision}-160{'-u8in' if request else ''}.tflite")
    agreement, labels = agreement_with_mediapipe(path, images)
    assert labels == list(SYNTHETIC_LABELS)
    assert agreement >= MIN_AGREEMENT, f"{variant}: {agreement:.5f}"


def test_metadata_says_what_the_manifest_says(make) -> None:
    float_manifest, fused_manifest = make("fp32"), make("fp32", fuse_preprocessing=True)
    md, fused = read_metadata(artifact(float_manifest)), read_metadata(artifact(fused_manifest))
    assert md.name == artifact(float_manifest).stem
    assert md.version.startswith("edgeseg ") and float_manifest["model"]["weights_sha256"][:16] in md.version
    assert md.labels == SYNTHETIC_LABELS == fused.labels and md.outputs[0].label_files == ("labels.txt",)
    image = md.inputs[0]
    # Float input: RGB pixels 0..255 (the ImageNet normalization is inside the model), one mean/std for all.
    assert (image.color_space, image.default_size, image.mean, image.std) == ("RGB", (160, 160), (0.0,) * 3, (1.0,) * 3)
    assert float_manifest["input"]["normalization"]["std"] == pytest.approx([1 / 255] * 3)
    assert fused.inputs[0].mean is None and fused_manifest["input"]["normalization"] == "in_model"
    assert md.activation == "NONE" and md.outputs[0].description.startswith("logits 1x160x160x7")
    assert md.min_parser_version == "1.5.0"  # SEGMENTER_METADATA is a 1.5.0 schema member


def test_reader_agrees_with_mediapipes_schema_classes(make) -> None:
    """The device-side reader (flatbuffers only) reads what MediaPipe's generated classes read."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    from edgeseg.formats.tflite.runtime.metadata import _metadata_buffer

    path = artifact(make("int8"))
    buffer = _metadata_buffer(path.read_bytes(), path.name)
    theirs = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(buffer, 0))
    ours = read_metadata(path)
    assert (ours.name, ours.version, ours.min_parser_version) == (
        theirs.name.decode(), theirs.version.decode(), theirs.minParserVersion.decode())
    tensor = theirs.subgraphMetadata[0].inputTensorMetadata[0]
    options = tensor.processUnits[0].options
    assert ours.inputs[0].mean == tuple(options.mean) and ours.inputs[0].std == tuple(options.std)
    size = tensor.content.contentProperties.defaultSize
    assert ours.inputs[0].default_size == (size.height, size.width)
    files = theirs.subgraphMetadata[0].outputTensorMetadata[0].associatedFiles
    axis_labels = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    assert ours.outputs[0].label_files == tuple(f.name.decode() for f in files if f.type == axis_labels)


def test_constant_buffers_stay_16_byte_aligned_after_the_metadata(make) -> None:
    from edgeseg.formats.tflite.runtime.metadata import TFLITE_IDENTIFIER, _root

    data = artifact(make("fp16")).read_bytes()
    starts = [b.tab.Vector(b._offset(0)) for b in _root(data, TFLITE_IDENTIFIER, "m").tables(4) if b._offset(0)]
    assert len(starts) > 50 and all(start % 16 == 0 for start in starts)


def test_info_shows_the_metadata_and_catches_a_disagreeing_manifest(make, tmp_path: Path, capsys) -> None:
    manifest = make("fp32")
    assert main(["info", str(artifact(manifest))]) == 0
    out = capsys.readouterr().out
    assert f"TFLite Model Metadata: {artifact(manifest).stem}" in out
    assert "NormalizationOptions mean [0.0, 0.0, 0.0] std [1.0, 1.0, 1.0]" in out and "agrees with the manifest" in out
    data = json.loads(Path(manifest["manifest_path"]).read_text())
    data["artifact"], data["external_artifact"] = str(artifact(manifest)), True
    data["model"]["labels"] = list(reversed(data["model"]["labels"]))
    data["input"]["normalization"]["std"] = [0.229, 0.224, 0.225]
    (tmp_path / "edited.tflite.json").write_text(json.dumps(data))
    assert main(["info", str(tmp_path / "edited.tflite.json")]) == 0
    assert "DISAGREES with the manifest on: labels, normalization mean/std" in capsys.readouterr().out


def test_selfie_segmenter_runs_from_its_metadata_as_mediapipe_reads_it(shared_data: Path, images) -> None:
    path = shared_data / "tflite-peers" / "selfie_segmentation.tflite"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    manifest = load_model_manifest(path)
    assert manifest.labels == ("background", "selfie") and manifest.output["kind"] == "foreground"
    with open_backend(manifest, threads=1) as backend:
        spec = backend.manifest.input_spec()
        task = segmenter(path)
        try:
            for image in images[:3]:
                pixels = cv2.resize(image, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
                ours = output_to_mask(backend.infer(preprocess_rgb(pixels, spec)), "foreground", "NHWC")
                result = task.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
                theirs = result.category_mask.numpy_view()
                # MediaPipe marks the one class 0 and everything else 255 (unlabelled); edgeseg: 1 and 0.
                assert np.mean((theirs.reshape(ours.shape) == 0) == (ours == 1)) >= MIN_AGREEMENT
        finally:
            task.close()


def test_a_tflite_with_neither_manifest_nor_metadata_is_refused_in_one_line(shared_data: Path) -> None:
    path = shared_data / "tflite-peers" / "deeplabv3_257_mv_gpu.tflite"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    with pytest.raises(ManifestError, match=r"has no manifest beside it .* and no TFLite Model Metadata") as info:
        open_backend(path)
    assert "\n" not in str(info.value)


def test_demo_runs_a_metadata_only_model_with_its_labels(shared_data: Path, tmp_path: Path, capsys) -> None:
    model, video = shared_data / "tflite-peers" / "selfie_segmentation.tflite", shared_data / "video" / "vtest.avi"
    if not (model.is_file() and video.is_file()):
        pytest.skip(f"needs {model} and {video}")
    code = main(["demo", "--model", str(model), "--source", str(video), "--headless", "--max-frames", "5",
                 "--save", str(tmp_path / "x.mp4"), "--threads", "1"])
    assert code == 0 and "5 frames" in capsys.readouterr().out
    assert cv2.VideoCapture(str(tmp_path / "x.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 5


def test_metadata_that_reads_back_wrong_is_refused(make) -> None:
    import dataclasses

    from edgeseg.errors import VerificationError
    from edgeseg.formats.tflite.convert.metadata_writer import SegmenterFacts, verify

    path = artifact(make("fp32"))
    facts = SegmenterFacts(name=path.stem, description="", version="", labels=SYNTHETIC_LABELS, height=160, width=160,
                           output_kind="logits", mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)
    verify(path, facts)  # what the exporter wrote
    with pytest.raises(VerificationError, match="reads back wrong: labels, normalization, image size"):
        verify(path, dataclasses.replace(facts, labels=SYNTHETIC_LABELS[::-1], mean=None, height=64))
