"""Shared fixtures: the real data beside the repository, the sample model, small generated sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeseg.conventions import SAMPLE_NAME
from tests.constants import REPO

SHARED_DATA = Path(os.environ.get("EDGESEG_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLE_CHECKPOINT = REPO / "edgeseg" / "sample" / SAMPLE_NAME


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


@pytest.fixture
def unreachable_int8_budget_job(sample_checkpoint: Path, monkeypatch):
    """A 128-pixel INT8 export job of the sample model for a target, under an INT8 budget no artifact can meet
    (agreement above 1): the sensitive-layer search runs to its limit of 2 layers kept in float."""
    from edgeseg.convert import verify
    from edgeseg.convert.export import ExportJob
    from edgeseg.models.weights import load_weights
    from edgeseg.targets import get_target

    monkeypatch.setitem(verify.BUDGETS, "int8", {"min_agreement": 1.01, "max_miou_drop": 1.0})
    weights = load_weights(str(sample_checkpoint))

    def job(target: str) -> ExportJob:
        return ExportJob(weights=weights, model=weights.build(), target=get_target(target), precision="int8",
                         height=128, width=128, output_kind="logits", fuse_preprocessing=False, basename="search",
                         calibration="synthetic:4", progress=False,
                         options={"calib_images": 4, "verify_images": 2, "int8_max_float_layers": 2,
                                  "int8_sensitivity_images": 1})

    return job


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory) -> Path:
    """A small VOC-layout set of synthetic scenes (16 train, 8 val, 256 px: native 1024 would slow every
    test that trains or evaluates on it), written once per session."""
    from edgeseg.scenes import SceneConfig, write_voc_dataset

    return write_voc_dataset(tmp_path_factory.mktemp("scenes"), train=16, val=8, seed=0, progress=False,
                             config=SceneConfig(height=256, width=256))


@pytest.fixture(scope="session")
def traced_once():
    """Memoize the TFLite exporter's `convert_float` for the session: one litert-torch trace per graph
    variant, shared by every test file that converts for android-* (tracing is the slow step)."""
    from edgeseg.formats.tflite.convert import export as tflite_export
    from edgeseg.formats.tflite.convert.region_split import RegionSplitConv2d

    def split_layers(model) -> tuple[str, ...]:  # a graph variant of its own: the XNNPACK export's region split
        return tuple(name for name, module in model.named_modules() if isinstance(module, RegionSplitConv2d))

    cache: dict[tuple, bytes] = {}
    original = tflite_export.convert_float

    def cached(job, spec):
        key = (job.weights.sha256, job.height, job.width, job.output_kind, job.fuse_preprocessing,
               *split_layers(job.model))
        if key not in cache:
            cache[key] = original(job, spec)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tflite_export, "convert_float", cached)
        yield cache


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory) -> dict:
    """A device install, once per session: a fresh venv with `edgeseg[onnxruntime,litert,openvino]` installed from a
    copy of the source tree the way pip installs it on a board (no torch, onnx, matplotlib or Pillow).
    Used by tests/runtime/test_device_install.py and, as the device at the far end of SSH,
    tests/benchmarks/test_bench_device.py."""
    import subprocess
    import sys
    import time

    from tests.device_kit import copy_source_tree, venv_env

    root = tmp_path_factory.mktemp("device-install")
    source = copy_source_tree(root / "src")
    venv = root / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = venv_env(venv)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--progress-bar", "off",
                              f"{source}[onnxruntime,litert,openvino]"], env=env, capture_output=True, text=True,
                             timeout=600,
                             check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    seconds = time.perf_counter() - started
    print(f"\ndevice venv created and installed in {seconds:.1f} s")
    return {"python": str(venv / "bin" / "python"), "edgeseg": str(venv / "bin" / "edgeseg"), "env": env,
            "install_s": seconds, "venv": str(venv)}
