"""A peer through the same door: Google's VOC-trained DeepLabV3 TFLite, run by the LiteRT backend
from a hand-written manifest and scored with the project's metric, must reproduce its known figure.

Protocol (issue 4): whole image stretched to 257x257 (bilinear), x/127.5 - 1, argmax brought back
to the image's size with nearest neighbour, one confusion matrix over the 22 images of val.txt,
255 ignored, mIoU over classes present in ground truth or prediction.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the LiteRT backend needs ai-edge-litert (pip install 'edgeseg[tflite]')")

from edgeseg.datasets import VOC_LABELS, open_dataset  # noqa: E402
from edgeseg.errors import ManifestError  # noqa: E402
from edgeseg.manifest import load_manifest, sha256_file  # noqa: E402
from edgeseg.metrics import ConfusionMatrix  # noqa: E402
from edgeseg.runtime.backend import open_backend  # noqa: E402
from edgeseg.runtime.postprocess import output_to_mask, resize_mask  # noqa: E402
from edgeseg.runtime.preprocess import preprocess_rgb  # noqa: E402
from tests.constants import REPO  # noqa: E402

PEER_MANIFEST = REPO / "benchmarks" / "peers" / "deeplabv3_257_mv_gpu.tflite.json"
PEER_FILE = "deeplabv3_257_mv_gpu.tflite"


@pytest.fixture(scope="module")
def peer_manifest(shared_data: Path, tmp_path_factory) -> Path:
    """The repository's peer manifest; when $EDGESEG_SHARED_DATA moves the data away from
    ../shared/data, a copy whose artifact path points there."""
    model = shared_data / "tflite-peers" / PEER_FILE
    if not model.is_file():
        pytest.skip(f"needs {model}")
    if load_manifest(PEER_MANIFEST, check_artifact=False).artifact_path.resolve() == model.resolve():
        return PEER_MANIFEST
    data = json.loads(PEER_MANIFEST.read_text())
    data["artifact"] = str(model)
    moved = tmp_path_factory.mktemp("peer") / PEER_MANIFEST.name
    moved.write_text(json.dumps(data))
    return moved


def test_peer_manifest_names_the_genuine_google_file(peer_manifest: Path) -> None:
    manifest = load_manifest(peer_manifest)
    assert sha256_file(manifest.artifact_path) == manifest.data["artifact_sha256"]
    assert manifest.backend == "litert" and manifest.labels == VOC_LABELS
    spec = manifest.input_spec()
    # x/127.5 - 1 written as the manifest's mean/std: (x - 127.5) / 127.5.
    pixels = np.array([[[0, 127, 255]]], dtype=np.uint8).repeat(spec.height, 0).repeat(spec.width, 1)
    assert np.allclose(preprocess_rgb(pixels, spec)[0, 0, 0], [0 / 127.5 - 1, 127 / 127.5 - 1, 255 / 127.5 - 1],
                       atol=1e-6)


def test_peer_reproduces_its_voc_val_miou(peer_manifest: Path, voc_sample: Path) -> None:
    dataset = open_dataset(voc_sample, "val")
    assert len(dataset) == 22
    matrix = ConfusionMatrix(21)
    with open_backend(peer_manifest, threads=2) as backend:
        spec = backend.manifest.input_spec()
        for i in range(len(dataset)):
            image, truth = dataset.pair(i)
            logits = backend.infer(preprocess_rgb(image, spec))
            assert logits.shape == (1, 257, 257, 21) and logits.dtype == np.float32
            mask = output_to_mask(logits, "logits", "NHWC")
            matrix.update(truth, resize_mask(mask, *truth.shape))
    scores = matrix.compute()
    assert abs(scores.miou - 51.0) <= 1.0, scores.miou
    assert abs(scores.pixel_accuracy - 91.0) <= 1.0, scores.pixel_accuracy
    # Over the classes present in the ground truth only, the independent measurements gave 54.0-54.7.
    assert 53.5 <= scores.miou_gt_classes <= 55.2, scores.miou_gt_classes


def test_manifest_whose_input_shape_disagrees_is_refused(peer_manifest: Path, tmp_path: Path) -> None:
    data = json.loads(peer_manifest.read_text())
    data["artifact"] = str(load_manifest(peer_manifest).artifact_path.resolve())
    data["input"]["height"] = data["input"]["width"] = 256
    bad = tmp_path / "peer-256.tflite.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"says input \[1, 256, 256, 3\].*takes \[1, 257, 257, 3\]"):
        open_backend(bad)


def test_file_that_is_not_a_flatbuffer_is_refused(peer_manifest: Path, tmp_path: Path) -> None:
    data = json.loads(peer_manifest.read_text())
    data["artifact"] = "broken.tflite"
    (tmp_path / "broken.tflite").write_bytes(b"PK\x03\x04 this is not a model" * 8)
    data["artifact_sha256"] = sha256_file(tmp_path / "broken.tflite")  # past the sha256 check, to the backend's own
    (tmp_path / "broken.tflite.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="broken.tflite: not a TFLite flatbuffer"):
        open_backend(tmp_path / "broken.tflite")


def test_truncated_flatbuffer_is_refused_in_one_line(peer_manifest: Path, tmp_path: Path) -> None:
    model = load_manifest(peer_manifest).artifact_path
    data = json.loads(peer_manifest.read_text())
    data["artifact"] = "truncated.tflite"
    (tmp_path / "truncated.tflite").write_bytes(model.read_bytes()[:4096])
    data["artifact_sha256"] = sha256_file(tmp_path / "truncated.tflite")
    (tmp_path / "truncated.tflite.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="truncated.tflite: LiteRT cannot load it") as info:
        open_backend(tmp_path / "truncated.tflite")
    assert "\n" not in str(info.value)


def test_float_batch_of_wrong_dtype_is_refused(peer_manifest: Path) -> None:
    from edgeseg.errors import ConfigError

    with open_backend(peer_manifest, threads=1) as backend, \
            pytest.raises(ConfigError, match="takes float32 input, got uint8"):
        backend.infer(np.zeros((1, 257, 257, 3), np.uint8))


def test_peer_manifest_copy_keeps_working_beside_a_copied_model(peer_manifest: Path, tmp_path: Path) -> None:
    """A relative artifact path is read relative to the manifest, wherever both are copied."""
    model = load_manifest(peer_manifest).artifact_path
    shutil.copy(model, tmp_path / PEER_FILE)
    data = json.loads(peer_manifest.read_text())
    data["artifact"] = PEER_FILE
    (tmp_path / f"{PEER_FILE}.json").write_text(json.dumps(data))
    with open_backend(tmp_path, threads=1) as backend:
        out = backend.infer(np.zeros((1, 257, 257, 3), np.float32))
    assert out.shape == (1, 257, 257, 21) and np.isfinite(out).all()
