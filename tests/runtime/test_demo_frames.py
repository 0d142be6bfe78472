"""The demo's heads-up FPS from the first frame on, and image folders saved under their own names and sizes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime import demo
from edgeseg.runtime.demo import DemoConfig, RollingFps, run_demo
from edgeseg.runtime.render import RenderOptions
from edgeseg.scenes import generate_scene, scene_rng


@pytest.fixture(scope="module")
def model(host_cpu_fp32_tiny: dict) -> Path:
    """The manifest of the sample model for host-cpu at 64 px (tests/runtime/conftest.py, one per session)."""
    return Path(host_cpu_fp32_tiny["manifest_path"])


def test_rolling_fps_counts_from_the_first_frame():
    fps = RollingFps(started_at=10.0, window=3)
    assert fps.rate(10.25) == pytest.approx(4.0)  # the first frame: 1 / its own latency
    fps.add(10.25)
    assert fps.rate(10.5) == pytest.approx(2 / 0.5)
    fps.add(10.5)
    fps.add(10.75)  # the window keeps the last 3 times: 10.25, 10.5, 10.75
    assert fps.rate(11.0) == pytest.approx(3 / 0.75)


def _folder_of_mixed_sizes(folder: Path) -> dict[str, tuple[int, int]]:
    folder.mkdir()
    sizes = {"wide": (96, 160), "tall": (144, 80), "square": (112, 112)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        image, _ = generate_scene(scene_rng(0, "val", i))
        cv2.imwrite(str(folder / f"{name}.jpg"), cv2.resize(image[..., ::-1], (w, h)))
    (folder / "broken.png").write_bytes(b"\x89PNG not really")  # skipped: names must stay aligned after it
    return sizes


@pytest.mark.slow
def test_folder_frames_keep_their_names_and_sizes_and_the_hud_never_shows_zero(model, tmp_path, monkeypatch):
    sizes = _folder_of_mixed_sizes(tmp_path / "images")
    shown = []
    real_hud_line = demo.hud_line
    monkeypatch.setattr(demo, "hud_line", lambda fps, stages: shown.append(fps) or real_hud_line(fps, stages))
    summary = run_demo(DemoConfig(model=model, source=str(tmp_path / "images"), save_frames=tmp_path / "frames",
                                  render=RenderOptions(hud=True), threads=1))
    assert summary.frames == 3
    written = {p.stem: cv2.imread(str(p)).shape[:2] for p in (tmp_path / "frames").glob("*.png")}
    assert written == sizes
    assert len(shown) == 3 and all(fps > 0 for fps in shown), shown


@pytest.mark.slow
def test_video_frames_keep_the_numbered_names(model, tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for i in range(3):
        writer.write(np.full((64, 96, 3), 40 * i, np.uint8))
    writer.release()
    run_demo(DemoConfig(model=model, source=str(clip), save_frames=tmp_path / "frames", threads=1))
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{i:06d}.png" for i in range(3)]
