"""The one frame path (`runtime.segmenter.Segmenter`): the masks the hand-assembled path gave, the checks on
the way, and the output spec read from the manifest once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.errors import ManifestError, ModelOutputError
from edgeseg.manifest import MANIFEST_SUFFIX, Manifest, OutputSpec, load_manifest
from edgeseg.runtime.backend import Backend, open_backend
from edgeseg.runtime.postprocess import output_to_mask, resize_mask
from edgeseg.runtime.preprocess import preprocess_bgr, preprocess_rgb
from edgeseg.runtime.segmenter import Segmenter
from tests.fault_kit import CLASSES, SIZE, tiny_onnx_bytes, write_tiny_pair

VOC_IMAGES = 4


@pytest.fixture(scope="module")
def artifact(host_cpu_fp32_tiny: dict) -> Path:
    """The sample model for host-cpu at 64 px, the one predict runs (tests/runtime/conftest.py)."""
    return Path(host_cpu_fp32_tiny["manifest_path"][: -len(MANIFEST_SUFFIX)])


@pytest.fixture(scope="module")
def voc_frames(voc_sample) -> list[np.ndarray]:
    """Real photos as OpenCV reads them (BGR, each its own size, none the model's)."""
    return [cv2.imread(str(p)) for p in sorted((voc_sample / "JPEGImages").glob("*.jpg"))[:VOC_IMAGES]]


def hand_assembled(artifact: Path, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(raw output, model-size mask, frame-size mask) per frame, the way demo/predict/bench built them before."""
    with open_backend(artifact) as backend:
        spec, out = backend.manifest.input_spec(), backend.manifest.output
        results = []
        for frame in frames:
            output = backend.infer(preprocess_bgr(frame, spec))
            small = output_to_mask(output, out["kind"], out.get("layout", "NCHW"))
            results.append((output, small, resize_mask(small, *frame.shape[:2])))
        return results


@pytest.mark.slow
def test_segment_gives_the_hand_assembled_masks_on_real_photos(artifact, voc_frames):
    expected = hand_assembled(artifact, voc_frames)
    with Segmenter.open(artifact, threads=1) as segmenter:
        for frame, (output, small, full) in zip(voc_frames, expected):
            mask = segmenter.segment(frame)
            assert mask.dtype == np.uint8 and mask.shape == frame.shape[:2]
            np.testing.assert_array_equal(mask, full)
            np.testing.assert_array_equal(segmenter.last_model_mask, small)
            np.testing.assert_array_equal(segmenter.last_output, output)
    assert any(len(np.unique(small)) > 1 for _, small, _ in expected)  # the photos give real masks, not one class


@pytest.mark.slow
def test_segment_rgb_at_a_given_size_is_the_bench_accuracy_path(artifact, voc_frames):
    with Segmenter.open(artifact, threads=1) as segmenter:
        for frame in voc_frames:
            image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            size = (frame.shape[0] // 2, frame.shape[1] // 3)
            small = output_to_mask(segmenter.backend.infer(preprocess_rgb(image, segmenter.input_spec)), "logits",
                                   "NCHW")
            np.testing.assert_array_equal(segmenter.segment_rgb(image, size), resize_mask(small, *size))
            np.testing.assert_array_equal(segmenter.last_model_mask, small)


@pytest.mark.slow
def test_the_steps_one_by_one_give_what_segment_gives(artifact, voc_frames):
    # The demo runs the steps on three threads; they must add up to `segment`.
    frame = voc_frames[0]
    with Segmenter.open(artifact, threads=1) as segmenter:
        stepped = segmenter.to_mask(segmenter.infer(segmenter.preprocess(frame)), frame.shape[:2]).copy()
        np.testing.assert_array_equal(segmenter.segment(frame), stepped)


@pytest.mark.slow
def test_each_stage_is_timed_and_the_total_spans_them(artifact, voc_frames):
    with Segmenter.open(artifact, threads=1) as segmenter:
        assert math.isnan(segmenter.times.total_ms)  # nothing measured yet
        segmenter.segment(voc_frames[0])
        t = segmenter.times
        assert all(ms > 0 for ms in (t.preprocess_ms, t.inference_ms, t.postprocess_ms, t.total_ms))
        assert t.inference_ms == segmenter.last_inference_ms
        assert t.total_ms >= t.preprocess_ms + t.inference_ms + t.postprocess_ms


@pytest.mark.slow
def test_the_frame_sized_mask_reuses_one_buffer_while_the_frame_size_holds(artifact, voc_frames):
    frame = voc_frames[0]
    other = cv2.resize(frame, (frame.shape[1] + 10, frame.shape[0] + 6))
    with Segmenter.open(artifact, threads=1) as segmenter:
        first = segmenter.segment(frame)
        assert segmenter.segment(frame) is first  # no allocation per frame
        resized = segmenter.segment(other)
        assert resized.shape == other.shape[:2] and resized is not first


def test_the_segmenter_it_opened_is_closed_with_it_and_a_handed_in_backend_is_not(tmp_path):
    closed = []
    model = write_tiny_pair(tmp_path)
    backend = open_backend(model, threads=1)
    real_close, backend.close = backend.close, lambda: closed.append("handed in")  # type: ignore[method-assign]
    with Segmenter(backend):
        pass
    assert closed == []  # its caller closes it
    real_close()
    with Segmenter.open(model, threads=1) as segmenter:
        segmenter.backend.close = lambda: closed.append("opened")  # type: ignore[method-assign]
    assert closed == ["opened"]


# -- the checks on the way --------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_output_stops_segment_in_one_line(tmp_path, value):
    model = write_tiny_pair(tmp_path, model=tiny_onnx_bytes(bias0=value))
    with Segmenter.open(model, threads=1) as segmenter, pytest.raises(ModelOutputError) as info:
        segmenter.segment(np.zeros((48, 80, 3), np.uint8))
    assert str(info.value) == (f"tiny.onnx: the model output holds {SIZE * SIZE} non-finite values (NaN/Inf) out of "
                               f"{CLASSES * SIZE * SIZE}; no mask can be taken from it (diverged or corrupted "
                               "weights, an FP16/INT8 overflow?)")


def test_class_ids_past_the_labels_stop_to_mask(tmp_path):
    model = write_tiny_pair(tmp_path, model=tiny_onnx_bytes(mask_offset=CLASSES),
                            output={"kind": "mask", "layout": "NHW", "dtype": "int64"})
    with Segmenter.open(model, threads=1) as segmenter:
        output = segmenter.infer(segmenter.preprocess(np.zeros((48, 80, 3), np.uint8)))
        with pytest.raises(ModelOutputError, match=rf"^tiny\.onnx: the model output holds class id \d+, but the model "
                                                   rf"has {CLASSES} classes \(0\.\.{CLASSES - 1}\)$"):
            segmenter.to_mask(output, (48, 80))


class PlantedBackend(Backend):
    """Returns the given output whatever the input, under an in-memory manifest."""

    name = "planted"

    def __init__(self, output: np.ndarray, output_entry: dict) -> None:
        super().__init__(Manifest(Path("/models/planted.onnx.json"), {
            "artifact": "planted.onnx", "backend": "planted", "output": output_entry,
            "input": {"height": 4, "width": 5, "layout": "NCHW", "dtype": "float32", "normalization": "in_model"},
            "model": {"num_classes": 3, "labels": ["a", "b", "c"]}}))
        self.output = output

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.output


def test_nhwc_scores_come_back_nchw_and_decode_like_nchw():
    nchw = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    nhwc = Segmenter(PlantedBackend(nchw.transpose(0, 2, 3, 1).copy(), {"kind": "logits", "layout": "NHWC"}))
    output = nhwc.infer(np.zeros((1, 3, 4, 5), np.float32))
    np.testing.assert_array_equal(nhwc.scores(output), nchw)
    np.testing.assert_array_equal(nhwc.decode(output), nchw[0].argmax(axis=0))


# -- the output spec, read and checked in one place -------------------------------------


@pytest.mark.parametrize("entry, spec", [
    ({"name": "out", "kind": "logits", "layout": "NHWC", "dtype": "float32"},
     OutputSpec(kind="logits", layout="NHWC", dtype="float32", name="out")),
    ({"kind": "logits"}, OutputSpec(kind="logits", layout="NCHW")),
    ({"kind": "mask", "dtype": "uint8"}, OutputSpec(kind="mask", layout="NHW", dtype="uint8")),
    ({"kind": "foreground", "layout": "NHWC"}, OutputSpec(kind="foreground", layout="NHWC")),
])
def test_the_output_spec_is_read_from_the_manifest(entry, spec):
    assert Manifest(Path("m.onnx.json"), {"output": entry}).output_spec() == spec


@pytest.mark.parametrize("entry, message", [
    ({"kind": "logits", "layout": "NWHC"}, "manifest output.layout 'NWHC' is not one of NCHW, NHWC (the layouts "
                                           "of a 'logits' output)"),
    ({"kind": "mask", "layout": "NCHW"}, "manifest output.layout 'NCHW' is not one of NHW (the layouts of a 'mask' "
                                         "output)"),
    ({"kind": "foreground", "layout": "NHWC"}, "manifest output.kind 'foreground' is not one of logits, mask"),
])
def test_a_manifest_file_with_a_bad_output_is_refused_on_load_in_one_line(tmp_path, entry, message):
    path = write_tiny_pair(tmp_path, output=entry)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value) == f"{path}: {message}"
    with pytest.raises(ManifestError, match="^" + str(path)):  # and before a segmenter loads anything
        Segmenter.open(path)


def test_a_bad_layout_in_a_manifest_read_without_checks_is_refused_by_the_segmenter():
    backend = PlantedBackend(np.zeros((1, 3, 4, 5), np.float32), {"kind": "logits", "layout": "CHW"})
    with pytest.raises(ManifestError) as info:
        Segmenter(backend)
    assert str(info.value) == ("/models/planted.onnx.json: manifest output.layout 'CHW' is not one of NCHW, NHWC "
                               "(the layouts of a 'logits' output)")


@pytest.mark.slow
def test_the_converted_manifest_says_what_the_segmenter_reads(artifact):
    data = json.loads(Path(f"{artifact}.json").read_text())
    with Segmenter.open(artifact, threads=1) as segmenter:
        assert segmenter.output_spec == OutputSpec(kind=data["output"]["kind"], layout=data["output"]["layout"],
                                                   dtype=data["output"]["dtype"], name=data["output"]["name"])
