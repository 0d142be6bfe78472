"""`edgeseg build-engine`: build a bundle's TensorRT engine on the device (Jetson or NVIDIA GPU)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeseg.formats.tensorrt.runtime.engine import BUNDLE_DLA, DlaRequest


def _dla_core(value: str) -> DlaRequest:
    if value == BUNDLE_DLA:  # argparse passes a string default through `type` too
        return BUNDLE_DLA
    if value.lower() in ("none", "gpu", "-1"):
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}': a DLA core number, or 'gpu' for the GPU only") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-engine", help="build (or reuse) the TensorRT engine of a Jetson bundle on this machine's GPU",
        description="Parse the bundle's ONNX with TensorRT, configure the builder from the bundle's manifest "
                    "(strongly typed Q/DQ network on TensorRT 10, else precision flags; workspace; DLA core with GPU "
                    "fallback), build with a timing cache on disk, and write the engine, named by what binds it "
                    "(precision, DLA core, GPU, TensorRT version, a key over every build option), with its manifest. "
                    "An engine already built here from the same ONNX with the same options is reused. "
                    "Needs TensorRT, pycuda and an NVIDIA GPU.")
    p.add_argument("bundle", help="the bundle's ONNX, its manifest, or the folder holding it")
    p.add_argument("--dla-core", type=_dla_core, default=BUNDLE_DLA, metavar="N",
                   help="DLA core to build for (FP16 bundles), or 'gpu' for the GPU only "
                        "(default: the bundle's choice: DLA core 0 for FP16 on boards with a DLA)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where the engine and the timing cache go (default: $EDGESEG_ENGINE_CACHE, else the bundle's "
                        "folder, else ~/.cache/edgeseg/engines: the first writable one; engines are looked for in "
                        "the same order)")
    p.add_argument("--force", action="store_true", help="rebuild even when a matching engine exists")
    p.add_argument("--register", type=Path, default=None, metavar="ENGINE",
                   help="do not build: record ENGINE, built here by the bundle's trtexec script, under the engine "
                        "name and manifest build-engine would give it")
    p.add_argument("--names", action="store_true",
                   help="do not build: print the engine file name and the timing cache name for this machine "
                        "(the trtexec script uses them)")
    p.add_argument("--json", action="store_true", help="print the engine manifest as JSON")
    p.set_defaults(run=_build_engine)


def _build_engine(args: argparse.Namespace) -> int:
    from edgeseg.formats.tensorrt.runtime.engine_build import (
        build_engine,
        register_engine,
        this_machine_plan,
    )

    if args.names:
        plan = this_machine_plan(args.bundle, args.dla_core)
        print(plan.name)
        print(plan.timing_cache)
        return 0
    if args.register is not None:
        engine = register_engine(args.bundle, args.register, dla_core=args.dla_core)
    else:
        engine = build_engine(args.bundle, dla_core=args.dla_core, cache_dir=args.cache_dir, force=args.force)
    if args.json:
        print(json.dumps(engine.data, indent=2))
    else:
        info = engine.data["engine"]
        print(f"engine {engine.artifact_path}")
        print(f"  {info['precision']} on {info['gpu']} (compute {info['compute_capability']}), TensorRT "
              f"{info['tensorrt']}"
              + (f", DLA core {info['dla_core']}" if info["dla_core"] is not None else "")
              + (f", built in {info['build_seconds']} s" if info.get("build_seconds") is not None else "")
              + f" by {info.get('built_by', 'edgeseg build-engine')}")
    return 0
