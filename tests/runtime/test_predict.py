"""`edgeseg predict`: masks under the sources' names and sizes, equal to the runtime's own masks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edgeseg.cli import main
from edgeseg.manifest import MANIFEST_SUFFIX
from edgeseg.palette import voc_palette_rgb
from edgeseg.runtime.backend import open_backend
from edgeseg.runtime.postprocess import output_to_mask, resize_mask
from edgeseg.runtime.predict_output import RESULT_FILE
from edgeseg.runtime.preprocess import preprocess_bgr


@pytest.fixture(scope="module")
def artifact(host_cpu_fp32_tiny: dict) -> Path:
    """The sample model for host-cpu at 64 px: small and fast (tests/runtime/conftest.py, one per session)."""
    return Path(host_cpu_fp32_tiny["manifest_path"][: -len(MANIFEST_SUFFIX)])


def runtime_masks(artifact: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The masks the runtime computes for these frames: the reference every predict output must equal."""
    with open_backend(artifact) as backend:
        spec, out = backend.manifest.input_spec(), backend.manifest.output
        return [resize_mask(output_to_mask(backend.infer(preprocess_bgr(frame, spec)), out["kind"],
                                           out.get("layout", "NCHW")), *frame.shape[:2]) for frame in frames]


def _png_ids(path: Path) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "P" and image.getpalette()[:3 * 8] == voc_palette_rgb().ravel().tolist()[:3 * 8]
    return np.asarray(image)


@pytest.mark.slow
def test_folder_masks_match_the_runtime_and_bad_files_are_named(tmp_path, voc_sample, artifact, capsys):
    source = tmp_path / "voc"
    shutil.copytree(voc_sample, source)
    images = source / "JPEGImages"
    good = sorted(images.glob("*.jpg"))
    jpeg = good[0].read_bytes()
    (images / "cut_short.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # a download that stopped half-way
    (images / "notes.txt").write_text("not a picture\n")
    out = tmp_path / "pred"

    code = main(["predict", "--model", str(artifact), "--source", str(source), "--out", str(out),
                 "--save", "mask,probs", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    for bad, reason in (("cut_short.jpg", "a corrupt"), ("notes.txt", "not an image")):
        assert f"skipped {images / bad}: {reason}" in captured.err
        assert f"skipped {images / bad}: {reason}" in captured.out
    assert f"{len(good)} inputs from {source}" in captured.out and "2 skipped" in captured.out

    assert sorted(p.name for p in (out / "masks").iterdir()) == [p.stem + ".png" for p in good]
    predictions = json.loads((out / RESULT_FILE).read_text())
    assert predictions["processed"] == len(good)
    assert {s["path"] for s in predictions["skipped"]} == {str(images / "cut_short.jpg"), str(images / "notes.txt")}
    by_name = {entry["name"]: entry for entry in predictions["inputs"]}
    labels = predictions["labels"]
    frames = [cv2.imread(str(path)) for path in good]
    for path, frame, expected in zip(good, frames, runtime_masks(artifact, frames)):
        ids = _png_ids(out / "masks" / f"{path.stem}.png")
        assert ids.shape == frame.shape[:2]
        np.testing.assert_array_equal(ids, expected)
        entry = by_name[path.name]
        counts = np.bincount(ids.ravel(), minlength=len(labels))
        assert (entry["height"], entry["width"]) == ids.shape
        assert entry["classes_present"] == [labels[i] for i in np.flatnonzero(counts)]
        for i in np.flatnonzero(counts):
            assert entry["pixel_share"][labels[i]] == pytest.approx(counts[i] / ids.size, abs=1e-6)
        assert entry["inference_ms"] > 0
    probs = np.load(out / "probs" / f"{good[0].stem}.npy")
    assert probs.shape == (len(labels), 64, 64) and probs.dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32).sum(axis=0), 1.0, atol=2e-2)


def test_truncated_jpeg_is_recognised_whatever_the_decoder_does(voc_sample):
    # Some OpenCV builds (the Jetson's system one) decode half a JPEG into a half-grey picture with
    # only a warning; the missing end-of-image marker after the last scan tells it apart.
    from edgeseg.runtime.image_files import jpeg_truncated as _jpeg_truncated

    whole = next((voc_sample / "JPEGImages").glob("*.jpg")).read_bytes()
    assert not _jpeg_truncated(whole)
    assert _jpeg_truncated(whole[: len(whole) // 2]) and _jpeg_truncated(whole[:-2])


def _clip(tmp_path: Path, shared_data: Path, frames: int) -> Path:
    capture = cv2.VideoCapture(str(shared_data / "video" / "vtest.avi"))
    clip = tmp_path / "clip.avi"
    writer = None
    for _ in range(frames):
        ok, frame = capture.read()
        assert ok
        frame = cv2.resize(frame, (160, 120))  # small: the test is about files, not pixels per second
        if writer is None:
            writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
        writer.write(frame)
    writer.release()
    capture.release()
    return clip


def _video_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.mark.slow
def test_video_writes_frame_masks_and_one_video_per_rendering(tmp_path, shared_data, artifact, capsys):
    clip = _clip(tmp_path, shared_data, 4)
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(artifact), "--source", str(clip), "--out", str(out),
                 "--save", "overlay,side-by-side", "--no-progress"]) == 0
    assert "4 inputs" in capsys.readouterr().out
    source_frames = _video_frames(clip)
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"clip_{i:06d}.png" for i in range(4)]
    for i, expected in enumerate(runtime_masks(artifact, source_frames)):
        np.testing.assert_array_equal(_png_ids(out / "masks" / f"clip_{i:06d}.png"), expected)
    overlay, side = _video_frames(out / "overlay" / "clip.mp4"), _video_frames(out / "side-by-side" / "clip.mp4")
    assert len(overlay) == len(side) == 4
    assert overlay[0].shape == (120, 160, 3) and side[0].shape == (120, 320, 3)
    predictions = json.loads((out / RESULT_FILE).read_text())
    assert predictions["videos"] == ["overlay/clip.mp4", "side-by-side/clip.mp4"]
    assert [e["name"] for e in predictions["inputs"]] == [f"clip.avi#{i}" for i in range(4)]


@pytest.mark.slow
def test_video_frames_as_images_and_max_frames(tmp_path, shared_data, artifact):
    clip = _clip(tmp_path, shared_data, 4)
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(artifact), "--source", str(clip), "--out", str(out),
                 "--save", "overlay", "--video-frames", "--max-frames", "3", "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "overlay").iterdir()) == [f"clip_{i:06d}.png" for i in range(3)]
    assert cv2.imread(str(out / "overlay" / "clip_000000.png")).shape == (120, 160, 3)


@pytest.mark.slow
def test_classes_keeps_only_the_named_classes(tmp_path, voc_sample, artifact):
    source = tmp_path / "img"
    source.mkdir()
    for path in sorted((voc_sample / "JPEGImages").glob("*.jpg"))[:4]:
        shutil.copy(path, source)
    full, kept = tmp_path / "full", tmp_path / "kept"
    assert main(["predict", "--model", str(artifact), "--source", str(source), "--out", str(full),
                 "--no-progress"]) == 0
    assert main(["predict", "--model", str(artifact), "--source", str(source), "--out", str(kept),
                 "--classes", "star,6", "--no-progress"]) == 0
    for mask in sorted((full / "masks").iterdir()):
        everything, only = _png_ids(mask), _png_ids(kept / "masks" / mask.name)
        expected = np.where(np.isin(everything, (4, 6)), everything, 0)
        np.testing.assert_array_equal(only, expected)


@pytest.mark.slow
def test_nothing_readable_fails_in_one_line_and_writes_nothing(tmp_path, artifact, capsys):
    source = tmp_path / "bad"
    source.mkdir()
    (source / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(artifact), "--source", str(source), "--out", str(out), "--no-progress"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("edgeseg predict: error:") and "nothing could be processed (1 skipped" in last
    assert not (out / RESULT_FILE).exists()


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--save", "mask,heatmap"], "--save mask,heatmap: unknown heatmap"),
    (["--classes", "dog"], "--classes dog: the model has no such class"),
    (["--source", "no/such/dir"], "no/such/dir: no such file or folder"),
])
def test_bad_requests_fail_before_any_output(tmp_path, artifact, capsys, args, message):
    # argparse keeps an option's last value: `args` overrides the defaults before it.
    argv = ["predict", "--model", str(artifact), "--source", str(tmp_path), "--out", str(tmp_path / "pred"), *args]
    assert main([*argv, "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "pred" / RESULT_FILE).exists()


def test_masks_are_palette_pngs_written_without_pillow(tmp_path):
    # A device install has OpenCV but no Pillow: the mask writer must not need it, and Pillow (an
    # independent decoder) must read back the same ids and the VOC colours.
    import subprocess
    import sys

    from edgeseg.palette_png import read_class_ids_png

    ids = np.random.default_rng(0).integers(0, 21, size=(37, 53), dtype=np.uint8)
    np.save(tmp_path / "ids.npy", ids)
    code = ("import sys; sys.modules['PIL'] = None\n"
            "import numpy as np\nfrom pathlib import Path\n"
            "from edgeseg.palette import voc_palette_rgb\nfrom edgeseg.runtime.predict import write_palette_png\n"
            f"ids = np.load({str(tmp_path / 'ids.npy')!r})\n"
            f"write_palette_png(Path({str(tmp_path / 'm.png')!r}), ids, voc_palette_rgb())\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert np.array_equal(_png_ids(tmp_path / "m.png"), ids)
    assert Image.open(tmp_path / "m.png").getpalette() == voc_palette_rgb().ravel().tolist()
    assert np.array_equal(read_class_ids_png(tmp_path / "m.png"), ids)


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_done(tmp_path, voc_sample, artifact, monkeypatch):
    from edgeseg.runtime import predict

    source = tmp_path / "img"
    source.mkdir()
    for path in sorted((voc_sample / "JPEGImages").glob("*.jpg"))[:3]:
        shutil.copy(path, source)
    real_image = predict._Predictor.image

    def image(self, path):
        if len(self.summary.results) == 2:
            raise KeyboardInterrupt
        real_image(self, path)

    monkeypatch.setattr(predict._Predictor, "image", image)
    out = tmp_path / "pred"
    with pytest.raises(KeyboardInterrupt):
        predict.run_predict(predict.PredictConfig(model=artifact, source=str(source), out=out, progress=False))
    predictions = json.loads((out / RESULT_FILE).read_text())
    assert predictions["processed"] == 2 and len(list((out / "masks").iterdir())) == 2
