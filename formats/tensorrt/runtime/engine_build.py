"""Build a bundle's TensorRT engine on this machine, or record one the bundle's trtexec script built.

Written against the `tensorrt` Python API shared by 8.5/8.6 (JetPack 5/6.0) and 10.x (JetPack 6.1+),
checked with pyright against NVIDIA's tensorrt-stubs: `Builder.create_network` (EXPLICIT_BATCH on
8.x, STRONGLY_TYPED for Q/DQ INT8 on 10.x: see `engine.build_options`), `OnnxParser.parse_from_file`,
`IBuilderConfig.set_memory_pool_limit(WORKSPACE)`, `set_flag`, `default_device_type`/`DLA_core`,
the timing cache (`create_timing_cache`, `set_timing_cache`, whose result is checked,
`get_timing_cache().serialize()`) and `build_serialized_network`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgeseg.atomic import write_bytes_atomic, write_json_atomic
from edgeseg.errors import ConfigError, ManifestError
from edgeseg.formats.tensorrt.runtime.engine import (
    BUNDLE_DLA,
    DlaRequest,
    EnginePlan,
    cache_dirs,
    current_gpu,
    find_engine,
    is_engine_manifest,
    major_version,
    plan_engine,
    require_tensorrt,
    trtexec_engine_name,
    writable_cache_dir,
)
from edgeseg.manifest import Manifest, load_manifest, manifest_path_for, sha256_file

if TYPE_CHECKING:
    import tensorrt as trt


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _parse_error(parser: trt.OnnxParser) -> str:
    if parser.num_errors == 0:
        return "no error reported"
    error = parser.get_error(0)
    # TensorRT 10 names the node and its operator; 8.x only gives the node's index.
    named = hasattr(error, "node_name") and error.node_name()
    where = f"{error.node_name()} ({error.node_operator()})" if named else f"node #{error.node()}"
    more = f" (and {parser.num_errors - 1} more)" if parser.num_errors > 1 else ""
    return f"at {where}: {error.desc()}{more}"


def this_machine_plan(bundle: Manifest | Path | str, dla_core: DlaRequest = BUNDLE_DLA) -> EnginePlan:
    """The engine `bundle` needs on this GPU and TensorRT (needs TensorRT and pycuda)."""
    bundle = bundle if isinstance(bundle, Manifest) else load_manifest(bundle)
    version = require_tensorrt()
    return plan_engine(bundle, dla_core, current_gpu(), version)


def _network(plan: EnginePlan, builder: trt.Builder, logger: trt.ILogger) -> tuple[trt.INetworkDefinition,
                                                                                   trt.OnnxParser]:
    import tensorrt as trt

    flags = 0
    if major_version(plan.tensorrt_version) < 10:  # 8.x parses ONNX only into explicit-batch networks
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.options.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.bundle.artifact_path)):
        raise ConfigError(f"{plan.bundle.artifact_path.name}: TensorRT {plan.tensorrt_version} cannot parse it "
                          f"{_parse_error(parser)}")
    return network, parser


def _config(plan: EnginePlan, builder: trt.Builder, timing_path: Path) -> trt.IBuilderConfig:
    import tensorrt as trt

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.options.workspace_mb << 20)
    for flag in plan.options.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    core = plan.options.dla_core
    if core is not None:
        if builder.num_DLA_cores <= core:
            raise ConfigError(f"--dla-core {core}: this machine's TensorRT sees {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = core
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    if not config.set_timing_cache(timing, ignore_mismatch=False):
        raise ConfigError(f"{timing_path}: TensorRT {plan.tensorrt_version} rejects this timing cache "
                          "(written by another GPU or TensorRT?); delete it to start a new one")
    return config


def _serialize(plan: EnginePlan, folder: Path, log: Callable[[str], None]) -> tuple[bytes, float]:
    """Parse, configure and build; save the timing cache. Returns the engine bytes and seconds."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _network(plan, builder, logger)  # the parser must outlive the build
    timing_path = folder / plan.timing_cache
    config = _config(plan, builder, timing_path)
    log(f"building {plan.name} on {plan.gpu.name} with TensorRT {plan.tensorrt_version}; "
        "this takes minutes on a Jetson")
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(f"{plan.bundle.artifact_path.name}: TensorRT {plan.tensorrt_version} built no engine (see "
                          f"its log above; if it mentions memory, the workspace of {plan.options.workspace_mb} MB is "
                          "too small)")
    seconds = time.perf_counter() - start
    write_bytes_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), seconds


def write_engine_manifest(plan: EnginePlan, engine_path: Path, *, built_by: str,
                          build_seconds: float | None) -> Manifest:
    """The engine's manifest: the bundle's, with the engine's facts (what binds it, what built it)."""
    bundle = plan.bundle
    data = {key: value for key, value in bundle.data.items() if key not in ("verification", "manifest_path")}
    data.update(
        artifact=engine_path.name, artifact_sha256=sha256_file(engine_path),
        size_mb=round(engine_path.stat().st_size / 2**20, 3), backend="tensorrt",
        engine={"gpu": plan.gpu.name, "compute_capability": plan.gpu.compute_capability,
                "tensorrt": plan.tensorrt_version, **plan.options.to_dict(), "cache_key": plan.key,
                "timing_cache": plan.timing_cache, "onnx": bundle.artifact_path.name, "onnx_sha256": plan.onnx_sha256,
                "bundle_manifest": str(bundle.path), "built_by": built_by,
                "build_seconds": round(build_seconds, 1) if build_seconds is not None else None,
                "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        bundle_verification=bundle.data.get("verification"),
    )
    write_json_atomic(manifest_path_for(engine_path), data)
    return load_manifest(engine_path)


def build_engine(bundle: Manifest | Path | str, *, dla_core: DlaRequest = BUNDLE_DLA, cache_dir: Path | None = None,
                 force: bool = False, log: Callable[[str], None] = _stderr) -> Manifest:
    """Build (or, unless `force`, reuse) the engine of a bundle on this machine's GPU; its manifest."""
    plan = this_machine_plan(bundle, dla_core)
    folders = [Path(cache_dir)] if cache_dir else cache_dirs(plan.bundle)
    if not force:
        cached = find_engine(plan, folders)
        if cached is not None:
            return cached
        by_script = plan.bundle.path.parent / trtexec_engine_name(plan.bundle.data["artifact"], plan.options.precision,
                                                                   plan.options.dla_core)
        if by_script.is_file():  # the bundle's trtexec script built it on this board, without edgeseg at hand
            return register_engine(plan.bundle, by_script, dla_core=dla_core)
    folder = Path(cache_dir) if cache_dir else writable_cache_dir(plan.bundle)
    folder.mkdir(parents=True, exist_ok=True)
    serialized, seconds = _serialize(plan, folder, log)
    engine_path = folder / plan.name
    write_bytes_atomic(engine_path, serialized)
    engine = write_engine_manifest(plan, engine_path, built_by="edgeseg build-engine", build_seconds=seconds)
    log(f"wrote {engine_path} in {seconds:.0f} s")
    return engine


def register_engine(bundle: Manifest | Path | str, engine_file: Path, *, dla_core: DlaRequest = BUNDLE_DLA) -> Manifest:
    """Record an engine the bundle's trtexec script built here: check that this machine's TensorRT
    deserializes it, move it to the engine name `build-engine` would give it, write its manifest."""
    import tensorrt as trt

    plan = this_machine_plan(bundle, dla_core)
    engine_file = Path(engine_file)
    if not engine_file.is_file():
        raise ManifestError(f"{engine_file}: no such engine file")
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if plan.options.dla_core is not None:
        runtime.DLA_core = plan.options.dla_core
    if runtime.deserialize_cuda_engine(engine_file.read_bytes()) is None:
        raise ManifestError(f"{engine_file.name}: TensorRT {plan.tensorrt_version} cannot deserialize it; "
                            f"build it here with `edgeseg build-engine {plan.bundle.path}`")
    target = engine_file.with_name(plan.name)
    if target != engine_file:
        shutil.move(str(engine_file), str(target))
    return write_engine_manifest(plan, target, built_by="trtexec script", build_seconds=None)


def ensure_engine(manifest: Manifest, *, dla_core: DlaRequest = BUNDLE_DLA, cache_dir: Path | None = None) -> Manifest:
    """The engine manifest to run: `manifest` itself when it is an engine, else the bundle's engine
    for this machine, built on first use."""
    if is_engine_manifest(manifest):
        return manifest
    return build_engine(manifest, dla_core=dla_core, cache_dir=cache_dir)
