"""TensorRT engines from a bundle: the rules, the names, the cache and the checks, in one place.

An engine only runs on the GPU and the TensorRT version that built it, and only does what its build
options said, so:

- the DLA and precision rules (`default_dla_core`, `resolve_dla_core`) and the TensorRT-version gate
  (`build_options`: a strongly typed network for Q/DQ INT8 from TensorRT 10, precision flags before)
  live here, and the bundle exporter reads them from here;
- an engine's file name carries a cache key over everything that changes the engine (`cache_key`),
  and the same name is used by `edgeseg build-engine` and by the bundle's trtexec script
  (`build-engine --names` prints it, `build-engine --register` records what trtexec built);
- the engine's manifest records the GPU, compute capability and TensorRT version, and
  `check_engine_compatible` refuses another machine's engine in one line.

Nothing here imports TensorRT: the builder is `runtime.engine_build`, the runner the backend.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from edgeseg.errors import BackendUnavailableError, ConfigError, ManifestError
from edgeseg.formats.tensorrt import FORMAT
from edgeseg.manifest import Manifest, load_manifest, manifest_path_for, sha256_file

NEEDS_TENSORRT = ("TensorRT engines are built and run on an NVIDIA GPU with the 'tensorrt' and 'pycuda' "
                  "Python packages (a Jetson with JetPack, or a CUDA machine)")
BUNDLE_DLA: Literal["default"] = "default"  # build for the DLA core the bundle chose
DlaRequest = int | Literal["default"] | None  # a core, the bundle's choice, or None: GPU only
ENGINE_SUFFIX = ".engine"
CACHE_ENV = "EDGESEG_ENGINE_CACHE"
# First TensorRT major version whose parser builds Q/DQ networks strongly typed (and deprecates, from
# 10.12, the FP16/INT8 builder flags for them).
STRONGLY_TYPED_FROM = 10


def require_tensorrt() -> str:
    """The TensorRT version, once the real `tensorrt` and `pycuda` are importable and the CUDA driver
    sees a GPU; else one line saying what is missing. (`tensorrt-stubs` alone makes `import tensorrt`
    succeed as an empty namespace package, hence the check for a version.)"""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailableError(f"{NEEDS_TENSORRT}; this machine has no 'tensorrt' package") from None
    version = getattr(trt, "__version__", None)
    if not isinstance(version, str) or not hasattr(trt, "Runtime"):
        raise BackendUnavailableError(f"{NEEDS_TENSORRT}; this machine's 'tensorrt' is only type stubs, not TensorRT")
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
    return version


def major_version(tensorrt_version: str) -> int:
    return int(tensorrt_version.split(".")[0])


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7" for Orin

    @property
    def slug(self) -> str:
        return slug(self.name)


def current_gpu(index: int = 0) -> GpuInfo:
    """The GPU pycuda sees (call `require_tensorrt` first)."""
    import pycuda.driver as cuda

    device = cuda.Device(index)
    major, minor = device.compute_capability()
    return GpuInfo(name=device.name(), compute_capability=f"{major}.{minor}")


def slug(text: str) -> str:
    """A file-name-safe form of a GPU name ("Orin (nvgpu)" -> "orin-nvgpu")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


# -- the DLA and precision rules ---------------------------------------------------------------------

def dla_refusal(precision: str) -> str | None:
    """Why the DLA cannot run an engine of `precision`, or None when it can."""
    if precision == "fp32":
        return "the DLA runs FP16 and INT8 only"
    if precision == "int8":
        return "the DLA does not run explicitly quantized (Q/DQ) INT8 networks"
    return None


def default_dla_core(dla_cores_on_board: int, precision: str) -> tuple[int | None, str]:
    """The DLA core an engine targets by default, and why."""
    if dla_cores_on_board <= 0:
        return None, "no DLA on this board: the engine runs on the GPU"
    refusal = dla_refusal(precision)
    if refusal:
        return None, f"{refusal}: the {precision.upper()} engine runs on the GPU (pass --dla-core only for FP16)"
    return 0, "DLA core 0, with GPU fallback for the layers the DLA cannot run"


def bundle_settings(bundle: Manifest) -> dict:
    """The build settings a converted bundle carries (`conversion.tensorrt.build`)."""
    try:
        return dict(bundle.data["conversion"]["tensorrt"]["build"])
    except (KeyError, TypeError):
        raise ManifestError(f"{bundle.path}: not a TensorRT bundle (no conversion.tensorrt.build); "
                            "convert it with `edgeseg convert --target jetson-...`") from None


def resolve_dla_core(bundle: Manifest, requested: DlaRequest = BUNDLE_DLA) -> int | None:
    """The DLA core to build for: the bundle's choice, `requested`, or None (GPU only)."""
    settings = bundle_settings(bundle)
    if requested == BUNDLE_DLA:
        return settings.get("dla_core")
    if requested is None:
        return None
    cores = int(settings.get("dla_cores_on_board", 0))
    if not 0 <= requested < cores:
        raise ConfigError(f"--dla-core {requested}: {bundle.data.get('target')} has {cores} DLA cores")
    refusal = dla_refusal(settings["precision"])
    if refusal:
        raise ConfigError(f"--dla-core: {refusal}; use the FP16 bundle on the DLA")
    return requested


# -- build options, the version gate, names ----------------------------------------------------------

@dataclass(frozen=True)
class BuildOptions:
    """Everything the builder is told, for one bundle on one TensorRT version."""

    precision: str
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    builder_flags: tuple[str, ...]  # trt.BuilderFlag member names
    workspace_mb: int
    dla_core: int | None
    gpu_fallback: bool

    def to_dict(self) -> dict:
        return {**asdict(self), "builder_flags": list(self.builder_flags)}


def build_options(settings: dict, dla_core: int | None, tensorrt_version: str) -> BuildOptions:
    """The one TensorRT-version gate. Q/DQ INT8 on TensorRT >= 10 builds a strongly typed network with
    no precision flags (the Q/DQ nodes say what runs in INT8, everything else keeps the graph's type;
    BuilderFlag.INT8/FP16 are deprecated for it from 10.12); on 8.5/8.6, which have no strong typing,
    INT8 + FP16 flags. FP16 engines come from the FP32 graph, so they need the FP16 flag everywhere."""
    precision = settings["precision"]
    strongly_typed = precision == "int8" and major_version(tensorrt_version) >= STRONGLY_TYPED_FROM
    flags = {"fp32": (), "fp16": ("FP16",), "int8": () if strongly_typed else ("FP16", "INT8")}[precision]
    gpu_fallback = dla_core is not None and bool(settings.get("gpu_fallback", True))
    if gpu_fallback:
        flags += ("GPU_FALLBACK",)
    return BuildOptions(precision=precision, strongly_typed=strongly_typed, builder_flags=tuple(flags),
                        workspace_mb=int(settings["workspace_mb"]), dla_core=dla_core, gpu_fallback=gpu_fallback)


def cache_key(options: BuildOptions, gpu: GpuInfo, tensorrt_version: str, onnx_sha256: str) -> str:
    """12 hex digits over the ONNX, every build option, the GPU and the TensorRT version."""
    facts = {"onnx_sha256": onnx_sha256, "options": options.to_dict(), "gpu": gpu.name,
             "compute_capability": gpu.compute_capability, "tensorrt": tensorrt_version}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]


def engine_file_name(onnx_name: str, options: BuildOptions, gpu: GpuInfo, tensorrt_version: str, key: str) -> str:
    """`<bundle>.<precision>[.dla<N>].<gpu>.trt<version>.<key>.engine`, the one engine name."""
    stem = onnx_name.removesuffix(FORMAT.suffix)
    dla = f".dla{options.dla_core}" if options.dla_core is not None else ""
    return f"{stem}.{options.precision}{dla}.{gpu.slug}.trt{tensorrt_version}.{key}{ENGINE_SUFFIX}"


def trtexec_engine_name(onnx_name: str, precision: str, dla_core: int | None) -> str:
    """What the bundle's trtexec script writes when edgeseg is not there to name the engine: it is
    recorded (`build-engine --register`, or on first use) under `engine_file_name`."""
    stem = onnx_name.removesuffix(FORMAT.suffix)
    return f"{stem}.{precision}" + (f".dla{dla_core}" if dla_core is not None else "") + ".trtexec" + ENGINE_SUFFIX


def timing_cache_name(gpu: GpuInfo, tensorrt_version: str) -> str:
    """One timing cache per GPU and TensorRT version, shared by every build (both build paths)."""
    return f"timing-{gpu.slug}-trt{tensorrt_version}.cache"


def cache_dirs(bundle: Manifest) -> list[Path]:
    """Where engines are looked for, in order: `$EDGESEG_ENGINE_CACHE`, the bundle's folder,
    ~/.cache/edgeseg/engines. New engines go to the first of them that is writable."""
    env = os.environ.get(CACHE_ENV)
    folders = [Path(env)] if env else []
    return folders + [bundle.path.parent, Path.home() / ".cache" / "edgeseg" / "engines"]


def writable_cache_dir(bundle: Manifest) -> Path:
    for folder in cache_dirs(bundle):
        probe = folder if folder.exists() else folder.parent
        if os.access(probe, os.W_OK):
            return folder
    raise ConfigError(f"no writable engine folder among {', '.join(map(str, cache_dirs(bundle)))}; set {CACHE_ENV}")


@dataclass(frozen=True)
class EnginePlan:
    """The engine a bundle needs on this machine: options, key, name and timing cache."""

    bundle: Manifest
    options: BuildOptions
    gpu: GpuInfo
    tensorrt_version: str
    onnx_sha256: str
    key: str
    name: str
    timing_cache: str


def plan_engine(bundle: Manifest, dla_core: DlaRequest, gpu: GpuInfo, tensorrt_version: str) -> EnginePlan:
    options = build_options(bundle_settings(bundle), resolve_dla_core(bundle, dla_core), tensorrt_version)
    onnx_sha = sha256_file(bundle.artifact_path)
    key = cache_key(options, gpu, tensorrt_version, onnx_sha)
    return EnginePlan(bundle, options, gpu, tensorrt_version, onnx_sha, key,
                      engine_file_name(bundle.data["artifact"], options, gpu, tensorrt_version, key),
                      timing_cache_name(gpu, tensorrt_version))


def find_engine(plan: EnginePlan, folders: list[Path]) -> Manifest | None:
    """The engine `plan` names, with its manifest, in the first of `folders` holding an intact copy."""
    for folder in folders:
        path = folder / plan.name
        if not (path.is_file() and manifest_path_for(path).is_file()):
            continue
        try:
            engine = load_manifest(path)
        except ManifestError:
            continue  # half-copied or edited by hand (its sha256 no longer matches): build it again
        if engine.data.get("engine", {}).get("cache_key") != plan.key:
            continue  # renamed by hand
        if engine.data.get("artifact_sha256") and engine.data["artifact_sha256"] != sha256_file(path):
            continue  # half-copied or edited by hand
        return engine
    return None


def is_engine_manifest(manifest: Manifest) -> bool:
    return "engine" in manifest.data and manifest.data["artifact"].endswith(ENGINE_SUFFIX)


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


def engine_dla_core(engine: Manifest) -> int | None:
    """The DLA core an engine was built for: the runtime must run it there (IRuntime.DLA_core)."""
    core = engine.data.get("engine", {}).get("dla_core")
    return int(core) if core is not None else None
