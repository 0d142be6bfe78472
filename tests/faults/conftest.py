"""What the fault files share: a tiny ONNX model with its manifest, and a folder of three small images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.fault_kit import write_tiny_pair


@pytest.fixture
def model(tmp_path) -> Path:
    """tests/fault_kit.py's tiny ONNX model and its manifest, in `model/`."""
    return write_tiny_pair(tmp_path / "model")


@pytest.fixture
def images(tmp_path) -> Path:
    """`images/00.png` .. `02.png`: 64 x 48 grey frames of three levels."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    return folder
