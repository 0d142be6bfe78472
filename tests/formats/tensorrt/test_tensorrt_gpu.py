"""TensorRT engines on a real GPU: build from a bundle, cache, run, compare with ONNX Runtime.

Runs wherever `tensorrt`, `pycuda` and an NVIDIA GPU exist (a Jetson, a CUDA workstation) and
skips with the reason elsewhere. Nothing here fakes TensorRT.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import BackendUnavailableError

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# Argmax agreement of the engine with ONNX Runtime on the same ONNX: FP32 is the same math;
# FP16 rounds every layer; INT8 runs the same Q/DQ scales with TensorRT's integer kernels.
MIN_AGREEMENT = {"fp32": 0.999, "fp16": 0.99, "int8": 0.97}


@pytest.fixture(scope="module")
def tensorrt_gpu():
    for module in ("tensorrt", "pycuda"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs the '{module}' package and an NVIDIA GPU (TensorRT engines build only there)")
    from edgeseg.formats.tensorrt.runtime.engine import current_gpu, require_tensorrt

    try:
        version = require_tensorrt()
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    return version, current_gpu()


@pytest.fixture(scope="module")
def bundles(tensorrt_gpu, sample_checkpoint: Path, tmp_path_factory) -> dict[str, Path]:
    from edgeseg.convert.pipeline import ConvertRequest, convert

    out = {}
    for precision in MIN_AGREEMENT:
        m = convert(ConvertRequest(
            target="jetson-orin-nano", precision=precision, resolution="160", weights=str(sample_checkpoint),
            out=tmp_path_factory.mktemp(precision), calibration="synthetic:8" if precision == "int8" else None,
            verify_images=2, progress=False, options={"calib_images": 8, "verify_images": 2}))
        out[precision] = Path(m["manifest_path"])
    return out


def _onnxruntime_twin(bundle_path: Path):
    from edgeseg.formats.onnx.runtime import OnnxRuntimeBackend
    from edgeseg.manifest import Manifest, load_manifest

    bundle = load_manifest(bundle_path)
    return OnnxRuntimeBackend(Manifest(bundle.path, {**bundle.data, "backend": "onnxruntime"}))


@pytest.mark.parametrize("precision", list(MIN_AGREEMENT))
def test_engine_agrees_with_onnxruntime(bundles, tmp_path, precision):
    from edgeseg.convert.verify import synthetic_set
    from edgeseg.formats.tensorrt.runtime.engine_build import build_engine
    from edgeseg.manifest import load_manifest
    from edgeseg.runtime.backend import open_backend
    from edgeseg.runtime.postprocess import output_to_mask
    from edgeseg.runtime.preprocess import preprocess_rgb

    engine = build_engine(bundles[precision], cache_dir=tmp_path)
    spec = load_manifest(bundles[precision]).input_spec()
    agree = pixels = 0
    with open_backend(engine) as trt_backend, _onnxruntime_twin(bundles[precision]) as ort_backend:
        for image in synthetic_set(4).images:
            batch = preprocess_rgb(image, spec)
            ours, ref = trt_backend.infer(batch), ort_backend.infer(batch)
            assert ours.shape == ref.shape
            a, b = output_to_mask(ours, "logits", "NCHW"), output_to_mask(ref, "logits", "NCHW")
            agree += int((a == b).sum())
            pixels += a.size
        assert trt_backend.last_inference_ms > 0
    assert agree / pixels >= MIN_AGREEMENT[precision]


def test_engine_is_named_recorded_and_reused(bundles, tensorrt_gpu, tmp_path):
    from edgeseg.formats.tensorrt.runtime.engine_build import build_engine

    version, gpu = tensorrt_gpu
    first = build_engine(bundles["fp32"], cache_dir=tmp_path)
    assert gpu.slug in first.artifact_path.name and f"trt{version}" in first.artifact_path.name
    assert first.data["engine"]["gpu"] == gpu.name and first.data["engine"]["tensorrt"] == version
    assert any(tmp_path.glob("timing-*.cache"))
    mtime = first.artifact_path.stat().st_mtime_ns
    again = build_engine(bundles["fp32"], cache_dir=tmp_path)
    assert again.artifact_path == first.artifact_path and again.artifact_path.stat().st_mtime_ns == mtime


def test_backend_builds_lazily_from_a_bundle(bundles, tmp_path, monkeypatch):
    from edgeseg.runtime.backend import open_backend

    monkeypatch.setenv("EDGESEG_ENGINE_CACHE", str(tmp_path))
    with open_backend(bundles["fp16"]) as backend:
        out = backend.infer(np.zeros((1, 3, 160, 160), np.float32))
    assert out.shape[-2:] == (160, 160) and list(tmp_path.glob("*.engine"))
