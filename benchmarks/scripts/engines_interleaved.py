"""Any mix of .tflite and ExecuTorch .pte files timed interleaved in one process: ratios only, on a shared machine.

peers.py converts and times whole tables; this times files already there (two conversions of the same model
before and after a change, a graph cut short with flatbuffer_utils, a peer's cached .pte), each timed once per
round (right after one untimed run of it) on the same scene with the same threads, in a balanced order
(edgeseg.benchmarks.interleaved). It prints each file's median, the ratio of medians to the first file and
the median of the per-round ratios, with the load.

    python benchmarks/scripts/engines_interleaved.py --resolution 640 \\
        peer-executorch-pt2e-int8-640.pte sample-android-cpu-int8-640.tflite ... [--rounds 16] [--threads 2]

ExecuTorch must import (the peers extra). A .tflite takes float NHWC pixels 0..255 (edgeseg's android-cpu
input) or, with 3 channels first, NCHW ImageNet-normalized input (the plain litert-torch peer); a .pte takes
the NCHW normalized input.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

import peer_engines as engines  # beside this script

from edgeseg.benchmarks.interleaved import interleaved_times, report
from edgeseg.runtime.preprocess import InputSpec
from edgeseg.scenes import generate_scene, scene_rng


class TFLiteFile(engines.Runner):
    def __init__(self, path: Path, threads: int, resolution: int) -> None:
        from edgeseg.formats.tflite.runtime.runner import interpreter_module

        self.interpreter = interpreter_module().Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        if int(self.input["shape"][1]) == 3:
            spec = InputSpec(height=resolution, width=resolution)  # NCHW, ImageNet normalization
        else:
            spec = InputSpec(height=resolution, width=resolution, layout="NHWC", dtype="float32",
                             mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
        super().__init__(spec)

    def run(self, batch):
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__ and __doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    spec = InputSpec(height=args.resolution, width=args.resolution)  # NCHW, ImageNet normalization (the sample's)
    runners = [engines.ExecuTorchRunner(f, spec, args.threads, f.name) if f.suffix == ".pte"
               else TFLiteFile(f, args.threads, args.resolution) for f in args.files]
    image = generate_scene(scene_rng(0, "val", 0))[0]
    calls = [functools.partial(r.run, r.prepare(image)) for r in runners]
    load_before = os.getloadavg()
    times = interleaved_times(calls, rounds=args.rounds, warmup=args.warmup)
    print(report([str(path) for path in args.files], times, load_before, os.getloadavg(),
                 f"{args.threads} threads, {args.warmup} + {args.rounds} rounds"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
