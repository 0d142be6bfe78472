"""What the fault files share: a tiny ONNX model with its manifest, and a folder of three small images."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault_kit import write_grey_frames, write_tiny_pair


@pytest.fixture
def model(tmp_path) -> Path:
    """tests/fault_kit.py's tiny ONNX model and its manifest, in `model/`."""
    return write_tiny_pair(tmp_path / "model")


@pytest.fixture
def images(tmp_path) -> Path:
    """`images/00.png` .. `02.png`: 64 x 48 grey frames of three levels."""
    return write_grey_frames(tmp_path / "images", 3)
