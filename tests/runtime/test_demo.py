"""The demo end to end: a converted sample model on a generated video, for every backend CI has.

The frames the demo writes are checked against the mask the model gives for the same decoded
frame: coloured where the model sees an object, untouched elsewhere; the video has every frame.
"""

from __future__ import annotations

import _thread
import importlib.util
import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.palette import voc_palette_bgr
from edgeseg.runtime import sinks
from edgeseg.runtime.backend import open_backend
from edgeseg.runtime.capture import SourceOptions, open_source
from edgeseg.runtime.demo import DemoConfig, run_demo
from edgeseg.runtime.frame_sources import FrameSource
from edgeseg.runtime.postprocess import output_to_mask, resize_mask
from edgeseg.runtime.preprocess import preprocess_bgr
from edgeseg.runtime.render import RenderOptions
from tests.constants import HOST_CPU, SMALL_RESOLUTION

pytestmark = pytest.mark.slow  # every test runs the converted sample model

FRAME_W, FRAME_H = 192, 144  # not the model's 128x128: the mask is resized back to the frame
VIDEO_FRAMES = 6
ALPHA = 0.5


@pytest.fixture(scope="module")
def onnx_model(sample_checkpoint, tmp_path_factory) -> Path:
    """The sample model as a host-cpu FP32 ONNX at 128, converted (and verified) once."""
    from edgeseg.convert.pipeline import ConvertRequest, convert

    manifest = convert(ConvertRequest(target=HOST_CPU, precision="fp32", resolution=SMALL_RESOLUTION,
                                      weights=str(sample_checkpoint), out=tmp_path_factory.mktemp("onnx"),
                                      verify_images=2, progress=False))
    return Path(manifest["manifest_path"])


@pytest.fixture(scope="module")
def pytorch_model(onnx_model, sample_checkpoint, tmp_path_factory) -> Path:
    """A manifest that runs the sample checkpoint itself through the PyTorch backend, same input spec."""
    from edgeseg.manifest import sha256_file

    data = json.loads(onnx_model.read_text())
    data.update(artifact=str(sample_checkpoint.resolve()), artifact_sha256=sha256_file(sample_checkpoint),
                external_artifact=True, backend="pytorch")
    path = tmp_path_factory.mktemp("pytorch") / "sample-pytorch-128.pt.json"
    path.write_text(json.dumps(data))
    return path


BACKENDS = [
    pytest.param("onnxruntime",
                 marks=pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                          reason="onnxruntime not installed")),
    pytest.param("pytorch",
                 marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")),
]


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory) -> Path:
    """A short video of synthetic scenes (the sample model's domain), written with OpenCV."""
    from edgeseg.scenes import SceneConfig, generate_scene, scene_rng

    path = tmp_path_factory.mktemp("video") / "scenes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (FRAME_W, FRAME_H))
    assert writer.isOpened()
    for i in range(VIDEO_FRAMES):
        rgb, _ = generate_scene(scene_rng(7, "val", i),
                                SceneConfig(height=FRAME_H, width=FRAME_W, max_objects=3, min_object_px=40))
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def expected_masks(model: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """What the model says for each frame, computed here without the demo."""
    with open_backend(model) as backend:
        spec = backend.manifest.input_spec()
        out = backend.manifest.output
        return [resize_mask(output_to_mask(backend.infer(preprocess_bgr(f, spec)), out["kind"], out["layout"]),
                            *f.shape[:2]) for f in frames]


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_writes_every_frame_with_the_overlay_where_the_mask_says(backend, onnx_model, pytorch_model, scene_video,
                                                                      tmp_path):
    model = onnx_model if backend == "onnxruntime" else pytorch_model
    config = DemoConfig(model=model, source=str(scene_video), save=tmp_path / "out.mp4",
                        save_frames=tmp_path / "frames",
                        render=RenderOptions(alpha=ALPHA, outlines=True, legend=False, hud=False), threads=1)
    summary = run_demo(config)

    assert summary.backend == backend
    assert summary.frames == VIDEO_FRAMES and summary.dropped == 0 and summary.end_reason == "end of source"
    written = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert [p.name for p in written] == [f"frame_{i:06d}.png" for i in range(VIDEO_FRAMES)]
    video = decoded_frames(tmp_path / "out.mp4")
    assert len(video) == VIDEO_FRAMES and all(f.shape == (FRAME_H, FRAME_W, 3) for f in video)

    sources = decoded_frames(scene_video)
    masks = expected_masks(model, sources)
    palette = voc_palette_bgr()
    kernel = np.ones((3, 3), np.uint8)
    object_pixels = 0
    for path, source, mask, from_video in zip(written, sources, masks, video):
        out = cv2.imread(str(path))
        assert out.shape == (FRAME_H, FRAME_W, 3)
        # Away from outlines (a pixel whose 3x3 neighbourhood is one class), exact arithmetic holds.
        interior = cv2.dilate(mask, kernel) == cv2.erode(mask, kernel)
        objects = interior & (mask > 0)
        background = interior & (mask == 0)
        blend = np.round(source * (1 - ALPHA) + palette[mask] * ALPHA)
        assert np.abs(out[objects].astype(int) - blend[objects]).max(initial=0) <= 1
        assert np.array_equal(out[background], source[background])
        object_pixels += int(objects.sum())
        # The video holds the same pictures (lossy codec: close, not equal).
        assert np.abs(from_video.astype(int) - out).mean() < 8
    assert object_pixels > 0.02 * VIDEO_FRAMES * FRAME_W * FRAME_H, "the sample model found (almost) no objects"


def test_demo_command_prints_end_to_end_and_inference_fps_from_the_same_run(onnx_model, scene_video, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    rc = main(["demo", "--model", str(onnx_model), "--source", str(scene_video), "--headless", "--save", str(out),
               "--max-frames", "4", "--threads", "1", "--mode", "side-by-side"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "4 frames" in text and "ended: reached --max-frames 4" in text
    end_to_end = float(text.split("end-to-end")[1].split("FPS")[0])
    inference = float(text.split("inference")[1].split("FPS")[0])
    assert end_to_end > 0 and inference > 0 and end_to_end <= inference * 1.05
    for stage in ("capture", "preprocess", "inference", "postprocess", "render", "write"):
        assert f"    {stage}" in text
    video = decoded_frames(out)
    assert len(video) == 4 and video[0].shape == (FRAME_H, 2 * FRAME_W, 3)


class VanishingCamera(FrameSource):
    """A live source that plays some frames of a file, then stops delivering and never comes back."""

    live = True

    def __init__(self, path: Path, frames: int) -> None:
        self.uri = "fake://vanishing"
        self.inner = open_source(str(path))
        self.fps = self.inner.fps
        self.left = frames
        self.reopen_calls = 0

    def read(self):
        if self.left <= 0:
            return None
        self.left -= 1
        return self.inner.read()

    def reopen(self) -> bool:
        self.reopen_calls += 1
        return False

    def close(self) -> None:
        self.inner.close()


def test_source_that_stops_delivering_ends_the_demo_cleanly_with_the_video_intact(onnx_model, scene_video, tmp_path):
    camera = VanishingCamera(scene_video, frames=4)
    messages = []
    config = DemoConfig(model=onnx_model, source="fake://vanishing", save=tmp_path / "out.mp4",
                        source_options=SourceOptions(reconnect_attempts=2, reconnect_delay_s=0.01), threads=1)
    summary = run_demo(config, source=camera, on_message=messages.append)

    assert summary.source_lost and summary.end_reason.startswith("source lost: fake://vanishing")
    assert camera.reopen_calls == 2 and len(messages) == 2
    assert 1 <= summary.frames <= 4 and summary.frames + summary.dropped == summary.source_frames == 4
    video = decoded_frames(tmp_path / "out.mp4")
    assert len(video) == summary.frames and video[0].shape == (FRAME_H, FRAME_W, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left behind


class InterruptingSource(FrameSource):
    """A looping file that presses Ctrl-C (interrupts the main thread) on its Nth read."""

    def __init__(self, path: Path, interrupt_on: int) -> None:
        self.uri = str(path)
        self.inner = open_source(str(path))
        self.fps = self.inner.fps
        self.reads = 0
        self.interrupt_on = interrupt_on

    def read(self):
        self.reads += 1
        if self.reads == self.interrupt_on:
            _thread.interrupt_main()
        frame = self.inner.read()
        if frame is None and self.inner.rewind():
            frame = self.inner.read()
        return frame

    def close(self) -> None:
        self.inner.close()


def test_ctrl_c_finishes_the_video_with_every_frame_written_so_far(onnx_model, scene_video, tmp_path):
    config = DemoConfig(model=onnx_model, source=str(scene_video), save=tmp_path / "out.mp4", threads=1)
    summary = run_demo(config, source=InterruptingSource(scene_video, interrupt_on=10))
    assert summary.interrupted and summary.end_reason == "interrupted (Ctrl-C)"
    assert summary.frames >= 3
    assert len(decoded_frames(tmp_path / "out.mp4")) == summary.frames


def test_ctrl_c_while_a_frame_is_written_counts_that_frame(onnx_model, scene_video, tmp_path, monkeypatch):
    """Ctrl-C right after the video took frame 5 (before the demo counted it): 5 frames, in both."""
    write = sinks.VideoFileSink.write

    def write_then_interrupt(sink, canvas):
        write(sink, canvas)
        if sink.frames == 5:
            _thread.interrupt_main()

    monkeypatch.setattr(sinks.VideoFileSink, "write", write_then_interrupt)
    config = DemoConfig(model=onnx_model, source=str(scene_video), save=tmp_path / "out.mp4", threads=1)
    summary = run_demo(config)
    assert summary.interrupted and summary.frames == 5
    assert len(decoded_frames(tmp_path / "out.mp4")) == 5


def test_kill_of_the_demo_command_finishes_the_video_and_restores_the_handlers(onnx_model, scene_video, tmp_path,
                                                                            monkeypatch, capsys):
    """`kill PID` (SIGTERM) right after the video took frame 3: exit 130, 3 frames counted and in the video."""
    write = sinks.VideoFileSink.write

    def write_then_terminate(sink, canvas):
        write(sink, canvas)
        if sink.frames == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(sinks.VideoFileSink, "write", write_then_terminate)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    rc = main(["demo", "--model", str(onnx_model), "--source", str(scene_video), "--headless", "--threads", "1",
               "--save", str(tmp_path / "out.mp4")])
    out, err = capsys.readouterr()
    assert rc == 130 and "interrupted (SIGTERM)" in out and err.strip().endswith("edgeseg demo: interrupted")
    assert len(decoded_frames(tmp_path / "out.mp4")) == 3
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_missing_source_is_one_line_and_writes_nothing(onnx_model, tmp_path, capsys):
    rc = main(["demo", "--model", str(onnx_model), "--source", str(tmp_path / "nope.mp4"), "--headless",
               "--save", str(tmp_path / "out.mp4")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == f"edgeseg demo: error: {tmp_path / 'nope.mp4'}: no such file or folder"
    assert not list(tmp_path.glob("*out.mp4*"))


def test_artifact_without_manifest_is_one_line(onnx_model, scene_video, tmp_path, capsys):
    lonely = tmp_path / "model.onnx"
    lonely.write_bytes((onnx_model.parent / json.loads(onnx_model.read_text())["artifact"]).read_bytes())
    rc = main(["demo", "--model", str(lonely), "--source", str(scene_video), "--headless"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err.startswith(f"edgeseg demo: error: {lonely}: has no manifest beside it")


def test_unsupported_video_type_is_one_line(onnx_model, scene_video, tmp_path, capsys):
    rc = main(["demo", "--model", str(onnx_model), "--source", str(scene_video), "--headless",
               "--save", str(tmp_path / "out.gif")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "unsupported video type '.gif'" in err
