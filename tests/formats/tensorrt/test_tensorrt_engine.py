"""The TensorRT engine logic without TensorRT: names and cache keys, the lookup of an engine built by
`edgeseg build-engine` or by the bundle's trtexec script, the compatibility check, the DLA rules,
and the backend's call sequence (DLA core applied at deserialization, buffers released in order)
against *recorded* `tensorrt` and `pycuda.driver` modules: objects that log the calls the code makes
and return fixed answers. Nothing here builds an engine; tests/formats/tensorrt/test_tensorrt_gpu.py does, on a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgeseg.conventions import DEFAULT_ARCH
from edgeseg.errors import BackendUnavailableError, ConfigError, ManifestError
from edgeseg.formats.tensorrt.runtime import engine as eng
from edgeseg.formats.tensorrt.runtime.engine import GpuInfo
from edgeseg.manifest import MANIFEST_SUFFIX, load_manifest, sha256_file

ORIN = GpuInfo("Orin (nvgpu)", "8.7")
_TENSORRT_SPEC = importlib.util.find_spec("tensorrt")  # tensorrt-stubs alone: a namespace package, origin None
REAL_TENSORRT = _TENSORRT_SPEC is not None and _TENSORRT_SPEC.origin not in (None, "namespace")


def _bundle(folder: Path, precision: str = "fp16", dla_core: int | None = 0) -> Path:
    onnx_path = folder / f"m-{precision}-64.onnx"
    onnx_path.write_bytes(b"the bundle's onnx " + precision.encode())
    data = {
        "format_version": 1, "artifact": onnx_path.name, "artifact_sha256": sha256_file(onnx_path),
        "backend": "tensorrt", "target": "jetson-orin-nx", "precision": precision,
        "model": {"architecture": DEFAULT_ARCH, "num_classes": 7,
                  "labels": [f"c{i}" for i in range(7)]},
        "input": {"height": 64, "width": 64, "layout": "NCHW", "dtype": "float32",
                  "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3, "scale": 1 / 255}},
        "output": {"name": "output", "kind": "logits", "layout": "NCHW", "dtype": "float32"},
        "conversion": {"tensorrt": {"build": {"precision": precision, "workspace_mb": 2048, "dla_core": dla_core,
                                              "dla_cores_on_board": 2, "gpu_fallback": dla_core is not None}}},
    }
    manifest = onnx_path.with_name(onnx_path.name + MANIFEST_SUFFIX)
    manifest.write_text(json.dumps(data))
    return manifest


# -- names, keys, rules ------------------------------------------------------------------------------

def test_cache_key_covers_every_build_option(tmp_path):
    bundle = load_manifest(_bundle(tmp_path))
    base = eng.plan_engine(bundle, eng.BUNDLE_DLA, ORIN, "10.3.0")
    assert base.name == f"m-fp16-64.fp16.dla0.orin-nvgpu.trt10.3.0.{base.key}.engine"
    assert base.options.builder_flags == ("FP16", "GPU_FALLBACK") and base.options.dla_core == 0
    settings = eng.bundle_settings(bundle)
    variants = {
        "workspace": eng.cache_key(eng.build_options({**settings, "workspace_mb": 1024}, 0, "10.3.0"), ORIN, "10.3.0",
                                   base.onnx_sha256),
        "no fallback": eng.cache_key(eng.build_options({**settings, "gpu_fallback": False}, 0, "10.3.0"), ORIN,
                                     "10.3.0", base.onnx_sha256),
        "dla core": eng.plan_engine(bundle, 1, ORIN, "10.3.0").key,
        "gpu only": eng.plan_engine(bundle, None, ORIN, "10.3.0").key,
        "tensorrt": eng.plan_engine(bundle, eng.BUNDLE_DLA, ORIN, "10.3.1").key,
        "gpu": eng.plan_engine(bundle, eng.BUNDLE_DLA, GpuInfo("Orin (nvgpu)", "8.6"), "10.3.0").key,
        "precision": eng.plan_engine(load_manifest(_bundle(tmp_path, "fp32", None)), eng.BUNDLE_DLA, ORIN,
                                     "10.3.0").key,
    }
    assert len(set(variants.values()) | {base.key}) == len(variants) + 1, variants


def test_int8_is_strongly_typed_from_tensorrt_10_and_flagged_before():
    settings = {"precision": "int8", "workspace_mb": 1024, "gpu_fallback": True}
    ten, eight = eng.build_options(settings, None, "10.3.0"), eng.build_options(settings, None, "8.6.2")
    assert ten.strongly_typed and ten.builder_flags == ()
    assert not eight.strongly_typed and eight.builder_flags == ("FP16", "INT8")
    fp16 = eng.build_options({**settings, "precision": "fp16"}, None, "10.3.0")
    assert not fp16.strongly_typed and fp16.builder_flags == ("FP16",)


def test_dla_rules(tmp_path):
    assert eng.default_dla_core(2, "fp16")[0] == 0 and eng.default_dla_core(0, "fp16")[0] is None
    assert eng.default_dla_core(2, "int8")[0] is None and eng.default_dla_core(2, "fp32")[0] is None
    fp16 = load_manifest(_bundle(tmp_path))
    assert eng.resolve_dla_core(fp16) == 0 and eng.resolve_dla_core(fp16, None) is None
    assert eng.resolve_dla_core(fp16, 1) == 1
    with pytest.raises(ConfigError, match="2 DLA cores"):
        eng.resolve_dla_core(fp16, 2)
    int8 = load_manifest(_bundle(tmp_path, "int8", None))
    with pytest.raises(ConfigError, match="Q/DQ"):
        eng.resolve_dla_core(int8, 0)


def test_cache_folders_are_searched_env_then_bundle_then_home(tmp_path, monkeypatch):
    bundle = load_manifest(_bundle(tmp_path))
    monkeypatch.setenv(eng.CACHE_ENV, str(tmp_path / "env"))
    assert eng.cache_dirs(bundle) == [tmp_path / "env", tmp_path, Path.home() / ".cache" / "edgeseg" / "engines"]
    assert eng.writable_cache_dir(bundle) == tmp_path / "env"
    monkeypatch.delenv(eng.CACHE_ENV)
    assert eng.cache_dirs(bundle)[0] == tmp_path


# -- finding an engine, whichever path built it ------------------------------------------------------

def _fake_engine(plan: eng.EnginePlan, folder: Path, built_by: str) -> Path:
    from edgeseg.formats.tensorrt.runtime.engine_build import write_engine_manifest

    path = folder / plan.name
    path.write_bytes(b"serialized engine")
    write_engine_manifest(plan, path, built_by=built_by, build_seconds=1.0 if "build-engine" in built_by else None)
    return path


@pytest.mark.parametrize("built_by", ["edgeseg build-engine", "trtexec script"])
def test_engine_is_found_whichever_path_built_it(tmp_path, built_by):
    bundle = load_manifest(_bundle(tmp_path))
    plan = eng.plan_engine(bundle, eng.BUNDLE_DLA, ORIN, "10.3.0")
    assert eng.find_engine(plan, eng.cache_dirs(bundle)) is None
    path = _fake_engine(plan, tmp_path, built_by)
    found = eng.find_engine(plan, eng.cache_dirs(bundle))
    assert found is not None and found.artifact_path == path and eng.is_engine_manifest(found)
    assert found.data["engine"]["built_by"] == built_by and found.data["engine"]["dla_core"] == 0
    assert eng.is_engine_manifest(load_manifest(path))  # `--model <engine>` reads the same manifest
    # Another build option is another engine: not this one.
    assert eng.find_engine(eng.plan_engine(bundle, None, ORIN, "10.3.0"), eng.cache_dirs(bundle)) is None
    path.write_bytes(b"half-copied")
    assert eng.find_engine(plan, eng.cache_dirs(bundle)) is None


def test_trtexec_script_names_and_records_the_engine_like_build_engine():
    from edgeseg.formats.tensorrt.convert.bundle import build_settings, trtexec_script
    from edgeseg.targets import get_target

    nx = get_target("jetson-orin-nx")
    script = trtexec_script("m.onnx", "m.onnx.json", build_settings(nx, "fp16"), nx)
    assert "edgeseg build-engine m.onnx.json --names" in script
    assert 'edgeseg build-engine m.onnx.json --register "$ENGINE"' in script
    assert '--saveEngine="$ENGINE" --timingCacheFile="$TIMING"' in script
    assert eng.trtexec_engine_name("m.onnx", "fp16", 0) in script
    for arg in ("--fp16", "--useDLACore=0", "--allowGPUFallback", "--memPoolSize=workspace:2048"):
        assert arg in script
    int8 = trtexec_script("m.onnx", "m.onnx.json", build_settings(nx, "int8"), nx)
    assert "--stronglyTyped" in int8 and '"--int8 --fp16"' in int8 and "--useDLACore" not in int8


def test_engine_of_another_gpu_or_tensorrt_is_refused_in_one_line(tmp_path):
    bundle = load_manifest(_bundle(tmp_path))
    engine = load_manifest(_fake_engine(eng.plan_engine(bundle, eng.BUNDLE_DLA, ORIN, "8.6.2"), tmp_path, "x"))
    eng.check_engine_compatible(engine, ORIN, "8.6.2")
    for gpu, version, pattern in [(ORIN, "10.3.0", r"TensorRT 8\.6\.2.*TensorRT 10\.3\.0.*rebuild.*build-engine"),
                                  (GpuInfo("Xavier", "7.2"), "8.6.2", r"Orin.*compute 8\.7.*Xavier.*compute 7\.2"),
                                  (GpuInfo("Orin (nvgpu)", "8.6"), "8.6.2", r"compute 8\.7.*compute 8\.6")]:
        with pytest.raises(ManifestError, match=pattern) as excinfo:
            eng.check_engine_compatible(engine, gpu, version)
        assert "\n" not in str(excinfo.value)


@pytest.mark.skipif(REAL_TENSORRT, reason="TensorRT is installed here")
def test_type_stubs_are_not_taken_for_tensorrt():
    with pytest.raises(BackendUnavailableError, match="TensorRT") as excinfo:
        eng.require_tensorrt()
    assert "\n" not in str(excinfo.value)


# -- the backend's call sequence on recorded API objects ---------------------------------------------

class _Recorded:
    """`tensorrt` and `pycuda.driver` as modules that log each call the code makes."""

    def __init__(self, gpu: GpuInfo = ORIN, version: str = "10.3.0") -> None:
        self.calls: list[str] = []
        self.trt = self._tensorrt(version)
        self.cuda = self._pycuda(gpu)

    def _tensorrt(self, version: str) -> types.ModuleType:
        log = self.calls.append
        trt = types.ModuleType("tensorrt")
        io_mode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        shapes = {"input": [1, 3, 64, 64], "output": [1, 7, 64, 64]}

        class Context:
            def set_tensor_address(self, name, address):
                log(f"set_tensor_address {name}")
                return True

            def execute_async_v3(self, stream_handle):
                log("execute_async_v3")
                return True

        class Engine:
            num_io_tensors = 2

            def get_tensor_name(self, i):
                return ["input", "output"][i]

            def get_tensor_mode(self, name):
                return io_mode.INPUT if name == "input" else io_mode.OUTPUT

            def get_tensor_shape(self, name):
                return shapes[name]

            def get_tensor_dtype(self, name):
                return "FLOAT"

            def create_execution_context(self):
                log("create_execution_context")
                return Context()

        class Runtime:
            def __init__(self, logger):
                log("Runtime")

            def __setattr__(self, name, value):
                log(f"Runtime.{name} = {value}")
                object.__setattr__(self, name, value)

            def deserialize_cuda_engine(self, data):
                log("deserialize_cuda_engine")
                return Engine()

        trt.__dict__.update(__version__=version, Runtime=Runtime, TensorIOMode=io_mode, nptype=lambda _: np.float32,
                            Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}))
        return trt

    def _pycuda(self, gpu: GpuInfo) -> types.ModuleType:
        log = self.calls.append
        cuda = types.ModuleType("pycuda.driver")

        class PrimaryContext:
            def push(self):
                log("push")

            def detach(self):
                log("detach")

        class Device:
            def __init__(self, index):
                pass

            count = staticmethod(lambda: 1)
            def name(self):
                return gpu.name

            def compute_capability(self):
                return tuple(int(p) for p in gpu.compute_capability.split("."))

            def retain_primary_context(self):
                return PrimaryContext()

        class Pinned(bytearray):
            def free(self):
                log(f"free pinned {len(self)}")

        class DeviceAllocation:
            def __init__(self, nbytes):
                self.nbytes = nbytes

            def __int__(self):
                return 4096 + self.nbytes

            def free(self):
                log(f"free device {self.nbytes}")

        class Stream:
            handle = 7

            def synchronize(self):
                log("synchronize")

            def __del__(self):
                log("stream destroyed")

        def pagelocked_empty(shape, dtype):
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            return np.ndarray(shape, dtype, buffer=Pinned(size))

        cuda.__dict__.update(
            init=lambda: None, Device=Device, Error=RuntimeError, Stream=Stream, pagelocked_empty=pagelocked_empty,
            mem_alloc=DeviceAllocation, Context=types.SimpleNamespace(pop=lambda: log("pop")),
            memcpy_htod_async=lambda dst, src, stream: log("htod"),
            memcpy_dtoh_async=lambda dst, src, stream: log("dtoh"))
        return cuda

    def install(self, monkeypatch) -> None:
        pycuda = types.ModuleType("pycuda")
        pycuda.driver = self.cuda  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", self.trt)
        monkeypatch.setitem(sys.modules, "pycuda", pycuda)
        monkeypatch.setitem(sys.modules, "pycuda.driver", self.cuda)


def _engine_for(tmp_path: Path, dla_core: int | None, version: str = "10.3.0") -> Path:
    bundle = load_manifest(_bundle(tmp_path))
    return _fake_engine(eng.plan_engine(bundle, dla_core, ORIN, version), tmp_path, "edgeseg build-engine")


def test_backend_runs_the_engine_on_the_dla_core_it_was_built_for(tmp_path, monkeypatch):
    from edgeseg.runtime.backend import open_backend

    api = _Recorded()
    api.install(monkeypatch)
    with open_backend(_engine_for(tmp_path, 1)) as backend:
        out = backend.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert out.shape == (1, 7, 64, 64)
    calls = api.calls
    assert calls.index("Runtime.DLA_core = 1") < calls.index("deserialize_cuda_engine")
    api.calls.clear()
    with open_backend(_engine_for(tmp_path, None)):
        pass
    assert not [c for c in api.calls if "DLA_core" in c]  # a GPU engine leaves the runtime's default


def test_backend_frees_device_then_pinned_buffers_then_stream_before_the_context(tmp_path, monkeypatch):
    from edgeseg.runtime.backend import open_backend

    api = _Recorded()
    api.install(monkeypatch)
    backend = open_backend(_engine_for(tmp_path, 0))
    backend.infer(np.zeros((1, 3, 64, 64), np.float32))
    api.calls.clear()
    backend.close()
    input_bytes, output_bytes = 3 * 64 * 64 * 4, 7 * 64 * 64 * 4
    assert api.calls == ["push", f"free device {input_bytes}", f"free device {output_bytes}",
                         f"free pinned {input_bytes}", f"free pinned {output_bytes}", "stream destroyed", "pop",
                         "detach"]
    with pytest.raises(BackendUnavailableError, match="already closed"):
        backend.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        backend.infer(np.zeros((1, 3, 64, 64), np.float32))


@pytest.mark.parametrize("gpu, version", [(GpuInfo("Xavier", "7.2"), "10.3.0"), (ORIN, "8.6.2")])
def test_backend_refuses_another_machines_engine_in_one_line(tmp_path, monkeypatch, gpu, version):
    from edgeseg.runtime.backend import open_backend

    api = _Recorded(gpu, version)
    api.install(monkeypatch)
    with pytest.raises(ManifestError, match="rebuild it here") as excinfo:
        open_backend(_engine_for(tmp_path, 0))
    assert "\n" not in str(excinfo.value)
    assert "deserialize_cuda_engine" not in api.calls and api.calls[-2:] == ["pop", "detach"]


def test_engine_built_by_the_script_without_edgeseg_is_recorded_on_first_use(tmp_path, monkeypatch):
    """The script's fallback file beside the bundle is deserialized on its DLA core, renamed to the
    engine name build-engine gives, and gets its manifest; the bundle then opens it."""
    from edgeseg.runtime.backend import open_backend

    api = _Recorded()
    api.install(monkeypatch)
    monkeypatch.delenv(eng.CACHE_ENV, raising=False)
    bundle = load_manifest(_bundle(tmp_path))
    by_script = tmp_path / eng.trtexec_engine_name(bundle.data["artifact"], "fp16", 0)
    by_script.write_bytes(b"engine from trtexec")
    with open_backend(bundle.path) as backend:
        engine = backend.engine_manifest
    plan = eng.plan_engine(bundle, eng.BUNDLE_DLA, ORIN, "10.3.0")
    assert engine.artifact_path == tmp_path / plan.name and not by_script.exists()
    assert engine.data["engine"]["built_by"] == "trtexec script" and engine.data["engine"]["cache_key"] == plan.key
    first = api.calls.index("deserialize_cuda_engine")
    assert "Runtime.DLA_core = 0" in api.calls[:first]
