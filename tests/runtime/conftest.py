"""The device side's shared artifacts: each conversion several test files run, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeseg.cli import main
from tests.constants import HOST_CPU, TINY_RESOLUTION


@pytest.fixture(scope="session")
def host_cpu_fp32_tiny(tmp_path_factory) -> dict:
    """The sample model for host-cpu, FP32 at 64 px (small and fast), verified on the default sets: its manifest.
    Run by predict, the Segmenter and the demo's frame tests; nothing writes beside it."""
    from edgeseg.convert.pipeline import ConvertRequest, convert

    return convert(ConvertRequest(target=HOST_CPU, precision="fp32", resolution=TINY_RESOLUTION, weights="sample",
                                  out=tmp_path_factory.mktemp("host-cpu-fp32-tiny"), verify_images=2, progress=False))


@pytest.fixture(scope="session")
def host_cpu_onnx_on_scenes(tmp_path_factory, synthetic_voc: Path) -> Path:
    """The same model converted by `edgeseg convert` and verified on the session's synthetic scenes (no real data
    needed): the .onnx that the device installs (pip's OpenCV, the system's) run."""
    out = tmp_path_factory.mktemp("host-cpu-onnx-on-scenes")
    assert main(["convert", "--target", HOST_CPU, "--resolution", TINY_RESOLUTION, "--verify-images", "2",
                 "--verify-data", str(synthetic_voc), "--out", str(out)]) == 0
    (model,) = out.glob("*.onnx")
    return model
