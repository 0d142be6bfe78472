"""Fault injection, issue 30 family 1: the runtime does not believe whatever the model outputs.

Planted: tiny ONNX models whose output is NaN or +-Inf (class 0's bias), whose argmax mask holds ids
past the labels or past 255, or whose score planes outnumber the manifest's classes. Each must stop
`predict`, `demo`, a bench row (stage `run`) and verification in one line, through the one decoder
they all call (`runtime.postprocess.MaskDecoder`), and leave no result behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.errors import ModelOutputError
from edgeseg.manifest import load_manifest
from edgeseg.runtime.postprocess import MaskDecoder, output_to_mask
from tests.fault_kit import CLASSES, SIZE, tiny_onnx_bytes, write_tiny_pair

VALUES = CLASSES * SIZE * SIZE
NON_FINITE = (f"tiny.onnx: the model output holds {SIZE * SIZE} non-finite values (NaN/Inf) out of {VALUES}; "
              "no mask can be taken from it (diverged or corrupted weights, an FP16/INT8 overflow?)")
PROGRESS = re.compile(r"^(demo|predict|bench): .*\[\d\d:\d\d")
MASK_OUTPUT = {"kind": "mask", "layout": "NHW", "dtype": "int64"}


def run(capsys, *argv: str) -> tuple[int, str]:
    """The exit code and stderr, less tqdm's progress bar (cleared on exit in a terminal, kept in a capture)."""
    code = main(list(argv))
    err = capsys.readouterr().err.replace("\r", "\n")
    return code, "\n".join(line for line in err.splitlines() if line.strip() and not PROGRESS.match(line))


def predict(model: Path, source: Path, out: Path, capsys) -> tuple[int, str]:
    return run(capsys, "predict", "--model", str(model), "--source", str(source), "--out", str(out),
               "--no-progress", "--threads", "1")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_predict_stops_on_a_non_finite_output_and_leaves_no_result(tmp_path, images, capsys, value):
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(bias0=value))
    out = tmp_path / "out"
    code, err = predict(model, images, out, capsys)
    assert code == 2
    assert err == f"edgeseg predict: error: {NON_FINITE}; stopped at {images / '00.png'}"
    assert not out.exists()  # not even the folder: nothing of this run is a result


def test_predict_refuses_class_ids_past_the_labels(tmp_path, images, capsys):
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(mask_offset=CLASSES), output=MASK_OUTPUT)
    out = tmp_path / "out"
    code, err = predict(model, images, out, capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("edgeseg predict: error: tiny.onnx: the model output holds class id ")
    assert err.endswith(f", but the model has {CLASSES} classes (0..{CLASSES - 1}); stopped at {images / '00.png'}")
    assert not out.exists()


def test_predict_refuses_ids_above_255_instead_of_wrapping_them(tmp_path, images, capsys):
    # 256 + k would be written as k by an 8-bit mask: a plausible, wrong result.
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(mask_offset=256), output=MASK_OUTPUT)
    out = tmp_path / "out"
    code, err = predict(model, images, out, capsys)
    assert code == 2 and "the model output holds class id 2" in err and len(err.splitlines()) == 1
    id_text = err.split("class id ")[1].split(",")[0]
    assert 256 <= int(id_text) < 256 + CLASSES
    assert not out.exists()


def test_more_score_planes_than_the_manifest_has_classes_is_refused(tmp_path, images, capsys):
    # Refused when the model loads, from the output it declares (runtime.model_io), before any image is read.
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(classes=CLASSES + 2))
    out = tmp_path / "out"
    code, err = predict(model, images, out, capsys)
    assert code == 2
    assert err == (f"edgeseg predict: error: {model}: manifest field model.num_classes contradicts the artifact: the "
                   f"manifest says {CLASSES} classes; tiny.onnx outputs {CLASSES + 2} score planes")
    assert not out.exists()


def test_a_manifest_with_more_classes_than_an_8_bit_mask_holds_is_refused_before_loading(tmp_path, images, capsys):
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(classes=300))
    data = json.loads(model.read_text())
    data["model"].update(num_classes=300, labels=[f"c{i}" for i in range(300)])
    model.write_text(json.dumps(data))
    out = tmp_path / "out"
    code, err = predict(model, images, out, capsys)
    assert code == 2
    assert err == ("edgeseg predict: error: tiny.onnx: its manifest says 300 classes, but masks are 8-bit class ids "
                   "(palette PNGs): at most 256 classes")
    assert not out.exists()


def test_demo_stops_on_a_nan_output_and_leaves_no_video(tmp_path, images, capsys):
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(bias0=np.nan))
    video = tmp_path / "demo.mp4"
    code, err = run(capsys, "demo", "--model", str(model), "--source", str(images), "--headless", "--threads", "1",
                    "--save", str(video))
    assert code == 2
    assert err == f"edgeseg demo: error: {NON_FINITE}"
    assert not video.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "model"]


def test_demo_stops_on_ids_past_the_labels(tmp_path, images, capsys):
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(mask_offset=CLASSES), output=MASK_OUTPUT)
    frames = tmp_path / "frames"
    code, err = run(capsys, "demo", "--model", str(model), "--source", str(images), "--headless", "--threads", "1",
                    "--save-frames", str(frames))
    assert code == 2 and len(err.splitlines()) == 1
    assert err.endswith(f", but the model has {CLASSES} classes (0..{CLASSES - 1})")
    assert not frames.exists() or list(frames.iterdir()) == []


def test_bench_row_with_a_nan_model_fails_at_run_not_ok(tmp_path, synthetic_voc, capsys):
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(bias0=np.nan))
    out = tmp_path / "bench"
    code, _ = run(capsys, "bench", "--artifacts", str(model), "--data", str(synthetic_voc), "--images", "2",
                  "--runs", "2", "--warmup", "0", "--threads", "1", "--out", str(out), "--no-progress")
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 1
    assert (rows[0]["status"], rows[0]["stage"], rows[0]["reason"]) == ("failed", "run", NON_FINITE)
    assert "accuracy" not in rows[0] and "latency" not in rows[0]
    assert code == 2  # family 4: no row produced a number


class WrappingBackend:
    """Answers with the tiny model's own argmax plus `offset` at one pixel (a mask model's output)."""

    def __init__(self, manifest, offset: int) -> None:
        from edgeseg.runtime.backend import open_backend

        self.manifest = manifest
        self.logits = open_backend(load_manifest(write_tiny_pair(manifest.path.parent / "logits")), threads=1)
        self.offset = offset

    def infer(self, batch: np.ndarray) -> np.ndarray:
        ids = self.logits.infer(batch)[0].argmax(axis=0)[None].astype(np.int64)
        ids[0, 3, 5] += self.offset
        return ids


def test_verification_sees_an_id_that_an_8_bit_mask_would_wrap(tmp_path):
    import torch

    from edgeseg.convert.verify import ImageSet, compare

    pair = write_tiny_pair(tmp_path / "mask", model=tiny_onnx_bytes(mask_offset=0), output=MASK_OUTPUT)
    draw = np.random.default_rng(0)  # the tiny model's own weights (seed 0), drawn in its order
    weights = torch.from_numpy(draw.standard_normal((CLASSES, 3, 1, 1)).astype(np.float32))
    bias = torch.from_numpy(draw.standard_normal(CLASSES).astype(np.float32))

    class Reference(torch.nn.Module):
        def forward(self, x):
            return {"out": torch.nn.functional.conv2d(x, weights, bias)}

    rng = np.random.default_rng(1)
    images = ImageSet("real", "planted", [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)], None,
                      ["/data/img_0.jpg"])
    backend = WrappingBackend(load_manifest(pair), 0)
    clean = compare(Reference(), backend, [images], precision="fp32", num_classes=CLASSES, progress=False)
    assert clean["argmax_agreement"] == 1.0  # the reference is the same model
    backend.offset = 256  # id k + 256 is k again in uint8: agreement would stay 1.0
    with pytest.raises(ModelOutputError, match=r"^tiny\.onnx: the model output holds class id 2\d\d, but the model "
                                               r"has 7 classes \(0\.\.6\)$"):
        compare(Reference(), backend, [images], precision="fp32", num_classes=CLASSES, progress=False)


@pytest.mark.parametrize("ids, message", [
    (np.array([[[0, 1], [2, -1]]]), "class id -1, but the model has 7 classes (0..6)"),
    (np.array([[[0, 1], [2, 7]]]), "class id 7, but the model has 7 classes (0..6)"),
    (np.array([[[0, 1], [2, 263]]]), "class id 263, but the model has 7 classes (0..6)"),
])
def test_the_decoder_names_the_first_bad_id(ids, message):
    decoder = MaskDecoder(kind="mask", layout="NHW", num_classes=CLASSES, source="m.onnx")
    with pytest.raises(ModelOutputError) as info:
        decoder(ids)
    assert str(info.value) == f"m.onnx: the model output holds {message}"


def test_the_decoder_passes_clean_outputs_unchanged():
    logits = np.random.default_rng(0).standard_normal((1, CLASSES, 4, 5)).astype(np.float32)
    decoder = MaskDecoder(kind="logits", layout="NCHW", num_classes=CLASSES, source="m.onnx")
    assert np.array_equal(decoder(logits), logits[0].argmax(axis=0).astype(np.uint8))
    assert np.array_equal(decoder(logits), output_to_mask(logits, "logits", "NCHW"))
    nhwc = MaskDecoder(kind="logits", layout="NHWC", num_classes=CLASSES, source="m.onnx")
    assert np.array_equal(nhwc(logits.transpose(0, 2, 3, 1)), decoder(logits))
