"""Shared fixtures: the real data beside the repository, the sample model, small generated sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGESEG_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLE_CHECKPOINT = REPO / "edgeseg" / "sample" / "deeplabv3_mobilenet_v3_large_synthetic.pt"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the project's real data at {SHARED_DATA} (../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def voc_sample(shared_data: Path) -> Path:
    path = shared_data / "voc-sample"
    if not path.is_dir():
        pytest.skip(f"needs {path}")
    return path


@pytest.fixture(scope="session")
def sample_checkpoint() -> Path:
    assert SAMPLE_CHECKPOINT.is_file(), f"the sample checkpoint ships in the repository: {SAMPLE_CHECKPOINT}"
    return SAMPLE_CHECKPOINT


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory) -> Path:
    """A small VOC-layout set of synthetic scenes (16 train, 8 val, 256 px: native 1024 would slow every
    test that trains or evaluates on it), written once per session."""
    from edgeseg.scenes import SceneConfig, write_voc_dataset

    return write_voc_dataset(tmp_path_factory.mktemp("scenes"), train=16, val=8, seed=0, progress=False,
                             config=SceneConfig(height=256, width=256))
