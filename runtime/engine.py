"""TensorRT engines from a bundle: build once on the device, name them by what binds them, reuse.

An engine only runs on the GPU and the TensorRT version that built it, so the file name and the
engine's own manifest record both (with the precision and DLA core), and `find_engine` only
returns an engine built here, from this bundle's ONNX. The demo and the benchmark call
`ensure_engine`: the first run builds (minutes on a Jetson), later runs load the cached file.

Written against the `tensorrt` Python API of 8.5/8.6 (JetPack 5/6.0) and 10.x (JetPack 6.1+):
`Builder`, `OnnxParser.parse_from_file`, `IBuilderConfig.set_memory_pool_limit(WORKSPACE)`,
`BuilderFlag.FP16/INT8/GPU_FALLBACK`, `default_device_type`/`DLA_core`, the timing cache
(`create_timing_cache`/`set_timing_cache`/`get_timing_cache().serialize()`) and
`build_serialized_network`. Nothing here imports TensorRT until a build or a load is asked for.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.atomic import write_bytes_atomic, write_json_atomic
from edgeseg.errors import BackendUnavailableError, ConfigError, ManifestError
from edgeseg.manifest import Manifest, load_manifest, manifest_path_for, sha256_file

NEEDS_TENSORRT = ("TensorRT engines are built and run on an NVIDIA GPU with the 'tensorrt' and 'pycuda' "
                  "Python packages (a Jetson with JetPack, or a CUDA machine)")
DEFAULT_DLA = "default"  # use the bundle's own choice
ENGINE_SUFFIX = ".engine"


def require_tensorrt() -> tuple[Any, Any]:
    """(tensorrt, pycuda.driver) with the CUDA driver initialised, or one line saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailableError(f"{NEEDS_TENSORRT}; this machine has no 'tensorrt' package") from None
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise BackendUnavailableError(f"{NEEDS_TENSORRT}; this machine has no 'pycuda' package") from None
    try:
        cuda.init()
        count = cuda.Device.count()
    except cuda.Error as exc:
        raise BackendUnavailableError(f"{NEEDS_TENSORRT}; the CUDA driver found no usable GPU ({exc})") from None
    if count < 1:
        raise BackendUnavailableError(f"{NEEDS_TENSORRT}; the CUDA driver found no GPU")
    return trt, cuda


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7" for Orin

    @property
    def slug(self) -> str:
        return slug(self.name)


def current_gpu(cuda: Any, index: int = 0) -> GpuInfo:
    device = cuda.Device(index)
    major, minor = device.compute_capability()
    return GpuInfo(name=device.name(), compute_capability=f"{major}.{minor}")


def slug(text: str) -> str:
    """A file-name-safe form of a GPU name ("Orin (nvgpu)" -> "orin-nvgpu")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def engine_file_name(onnx_name: str, gpu: GpuInfo, tensorrt_version: str, precision: str, dla_core: int | None) -> str:
    """`<bundle>.<gpu>.trt<version>.<precision>[.dla<N>].engine`: everything that binds an engine."""
    stem = onnx_name[: -len(".onnx")] if onnx_name.endswith(".onnx") else onnx_name
    dla = f".dla{dla_core}" if dla_core is not None else ""
    return f"{stem}.{gpu.slug}.trt{tensorrt_version}.{precision}{dla}{ENGINE_SUFFIX}"


def bundle_settings(bundle: Manifest) -> dict:
    """The build settings a converted bundle carries (`conversion.tensorrt.build`)."""
    try:
        return dict(bundle.data["conversion"]["tensorrt"]["build"])
    except (KeyError, TypeError):
        raise ManifestError(f"{bundle.path}: not a TensorRT bundle (no conversion.tensorrt.build); "
                            "convert it with `edgeseg convert --target jetson-...`") from None


def is_engine_manifest(manifest: Manifest) -> bool:
    return "engine" in manifest.data and manifest.data["artifact"].endswith(ENGINE_SUFFIX)


def resolve_dla_core(bundle: Manifest, requested: int | str | None = DEFAULT_DLA) -> int | None:
    """The DLA core to build for: the bundle's default, or `requested` (None: GPU only)."""
    settings = bundle_settings(bundle)
    if requested == DEFAULT_DLA:
        return settings.get("dla_core")
    if requested is None:
        return None
    core = int(requested)
    cores = int(settings.get("dla_cores_on_board", 0))
    if not 0 <= core < cores:
        raise ConfigError(f"--dla-core {core}: {bundle.data.get('target')} has {cores} DLA cores")
    if settings["precision"] == "fp32":
        raise ConfigError("--dla-core: the DLA runs FP16 and INT8 only; convert with --precision fp16")
    if settings["precision"] == "int8":
        raise ConfigError("--dla-core: the DLA does not run explicitly quantized (Q/DQ) INT8 networks; "
                          "use the FP16 bundle on the DLA")
    return core


def default_cache_dir(bundle: Manifest) -> Path:
    """`$EDGESEG_ENGINE_CACHE`, else beside the bundle when writable, else ~/.cache/edgeseg/engines."""
    env = os.environ.get("EDGESEG_ENGINE_CACHE")
    if env:
        return Path(env)
    folder = bundle.path.parent
    if os.access(folder, os.W_OK):
        return folder
    return Path.home() / ".cache" / "edgeseg" / "engines"


def check_engine_compatible(engine: Manifest, gpu: GpuInfo, tensorrt_version: str) -> None:
    """Refuse, in one line, an engine built on another GPU or with another TensorRT version."""
    info = engine.data.get("engine", {})
    built_gpu, built_cc, built_trt = info.get("gpu"), info.get("compute_capability"), info.get("tensorrt")
    if built_trt != tensorrt_version or built_gpu != gpu.name or built_cc != gpu.compute_capability:
        bundle = info.get("bundle_manifest", "its bundle")
        raise ManifestError(
            f"{engine.artifact_path.name}: built for {built_gpu} (compute {built_cc}) with TensorRT {built_trt}, "
            f"but this machine has {gpu.name} (compute {gpu.compute_capability}) with TensorRT {tensorrt_version}; "
            f"rebuild it here with `edgeseg build-engine {bundle}`"
        )


def find_engine(bundle: Manifest, *, gpu: GpuInfo, tensorrt_version: str, dla_core: int | None,
                cache_dir: Path) -> Manifest | None:
    """The cached engine for this bundle's ONNX on this GPU and TensorRT version, if one was built."""
    settings = bundle_settings(bundle)
    path = cache_dir / engine_file_name(bundle.data["artifact"], gpu, tensorrt_version, settings["precision"], dla_core)
    if not manifest_path_for(path).is_file() or not path.is_file():
        return None
    try:
        engine = load_manifest(path)
    except ManifestError:
        return None  # half-copied or edited by hand (its sha256 no longer matches): build it again
    if engine.data.get("engine", {}).get("onnx_sha256") != sha256_file(bundle.artifact_path):
        return None  # the bundle was re-converted since: the engine is stale
    if engine.data.get("artifact_sha256") and engine.data["artifact_sha256"] != sha256_file(path):
        return None  # half-copied or edited by hand
    return engine


def _parse_error(parser: Any) -> str:
    if parser.num_errors == 0:
        return "no error reported"
    error = parser.get_error(0)
    where = ""
    for attr in ("node_name", "node_operator"):  # TensorRT 10 adds these; 8.x has only node()
        getter = getattr(error, attr, None)
        if getter is not None and getter():
            where += f" {getter()}"
    if not where:
        where = f" node #{error.node()}"
    more = f" (and {parser.num_errors - 1} more)" if parser.num_errors > 1 else ""
    return f"at{where}: {error.desc()}{more}"


def build_engine(bundle: Manifest | Path | str, *, dla_core: int | str | None = DEFAULT_DLA,
                 cache_dir: Path | None = None, force: bool = False, log=None) -> Manifest:
    """Build (or, unless `force`, reuse) the engine of a bundle on this machine's GPU.

    Returns the engine's manifest. The timing cache lives beside the engines, one per GPU and
    TensorRT version, so rebuilding at another resolution or precision reuses measured tactics.
    """
    bundle = bundle if isinstance(bundle, Manifest) else load_manifest(bundle)
    settings = bundle_settings(bundle)
    core = resolve_dla_core(bundle, dla_core)
    trt, cuda = require_tensorrt()
    gpu = current_gpu(cuda)
    version = trt.__version__
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(bundle)
    if not force:
        cached = find_engine(bundle, gpu=gpu, tensorrt_version=version, dla_core=core, cache_dir=cache_dir)
        if cached is not None:
            return cached
    log = log or (lambda message: print(message, file=sys.stderr))
    engine_path = cache_dir / engine_file_name(bundle.data["artifact"], gpu, version, settings["precision"], core)
    log(f"building {engine_path.name} on {gpu.name} with TensorRT {version} "
        f"({settings['precision']}{f', DLA core {core}' if core is not None else ''}); this takes minutes on a Jetson")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 8.x needs explicit batch for ONNX; 10.x only has explicit batch (the flag is deprecated).
    flags = 0 if int(version.split(".")[0]) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle.artifact_path)):
        raise ConfigError(f"{bundle.artifact_path.name}: TensorRT {version} cannot parse it {_parse_error(parser)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings["workspace_mb"]) << 20)
    if "fp16" in settings["flags"]:
        config.set_flag(trt.BuilderFlag.FP16)
    if "int8" in settings["flags"]:
        # Explicit quantization: the Q/DQ scales come from the ONNX; no calibrator is set. 8.x needs the
        # flag to accept Q/DQ layers; 10.x honours it for weakly typed networks like this one.
        config.set_flag(trt.BuilderFlag.INT8)
    if core is not None:
        if builder.num_DLA_cores <= core:
            raise ConfigError(f"--dla-core {core}: this machine's TensorRT sees {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = core
        if settings.get("gpu_fallback", True):
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    timing_path = cache_dir / f"timing-{gpu.slug}-trt{version}.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(f"{bundle.artifact_path.name}: TensorRT {version} built no engine (see its log above; "
                          f"if it mentions memory, the target's workspace_mb {settings['workspace_mb']} is too small)")
    build_s = time.perf_counter() - start
    write_bytes_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
    write_bytes_atomic(engine_path, bytes(serialized))

    data = {key: value for key, value in bundle.data.items() if key not in ("verification", "manifest_path")}
    data.update(
        artifact=engine_path.name,
        artifact_sha256=sha256_file(engine_path),
        size_mb=round(engine_path.stat().st_size / 2**20, 3),
        backend="tensorrt",
        engine={
            "gpu": gpu.name, "compute_capability": gpu.compute_capability, "tensorrt": version,
            "precision": settings["precision"], "flags": settings["flags"], "dla_core": core,
            "gpu_fallback": bool(core is not None and settings.get("gpu_fallback", True)),
            "workspace_mb": settings["workspace_mb"], "timing_cache": timing_path.name,
            "onnx": bundle.artifact_path.name, "onnx_sha256": sha256_file(bundle.artifact_path),
            "bundle_manifest": str(bundle.path), "build_seconds": round(build_s, 1),
            "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
        bundle_verification=bundle.data.get("verification"),
    )
    write_json_atomic(manifest_path_for(engine_path), data)
    log(f"wrote {engine_path} in {build_s:.0f} s")
    return load_manifest(engine_path)


def ensure_engine(manifest: Manifest, *, dla_core: int | str | None = DEFAULT_DLA, cache_dir: Path | None = None) -> Manifest:
    """The engine manifest to run: `manifest` itself when it is an engine, else the bundle's cached
    engine for this GPU, built on first use."""
    if is_engine_manifest(manifest):
        return manifest
    return build_engine(manifest, dla_core=dla_core, cache_dir=cache_dir)
