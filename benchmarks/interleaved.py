"""Side-by-side latency of a few artifacts in one process, interleaved round by round.

`edgeseg bench` measures its rows one after another, so a change in machine load between two rows
shows up as a speed difference. Here every artifact is loaded once and each round runs each of
them once on the same frame, with the same thread count: a load change hits all of them alike,
and the ratio of their medians stays meaningful on a shared machine (the absolute times do not).

    python -m edgeseg.benchmarks.interleaved FP32_ARTIFACT INT8_ARTIFACT ... [--rounds 15] [--threads 2]

prints each artifact's median inference time over the rounds and its ratio to the first one, with
the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
from contextlib import ExitStack
from pathlib import Path

from edgeseg.manifest import load_manifest
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.scenes import generate_scene, scene_rng


def interleaved_medians(artifacts: list[Path], *, rounds: int = 15, warmup: int = 2,
                        threads: int | None = None) -> list[float]:
    """Median inference ms of each artifact over `rounds` rounds that run every artifact once."""
    manifests = [load_manifest(a) for a in artifacts]
    image = generate_scene(scene_rng(0, "val", 0))[0]  # one real scene, preprocessed per artifact's spec
    with ExitStack() as opened:  # closed in reverse order, also when a later one fails to open
        segmenters = [opened.enter_context(Segmenter.open(m, threads=threads)) for m in manifests]
        batches = [s.preprocess_rgb(image) for s in segmenters]
        times: list[list[float]] = [[] for _ in segmenters]
        for round_index in range(warmup + rounds):
            for k, (segmenter, batch) in enumerate(zip(segmenters, batches)):
                segmenter.infer(batch)
                if round_index >= warmup:
                    times[k].append(segmenter.last_inference_ms)
    return [statistics.median(t) for t in times]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeseg.benchmarks.interleaved", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifacts", nargs="+", type=Path, help="artifacts (or manifests); ratios are to the first")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="default: each manifest's target profile")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    medians = interleaved_medians(args.artifacts, rounds=args.rounds, threads=args.threads)
    load_after = os.getloadavg()
    for path, median in zip(args.artifacts, medians):
        print(f"{median:8.1f} ms  {median / medians[0]:5.2f}x  {path.name}")
    print(f"load average (1/5/15 min) before {tuple(round(x, 2) for x in load_before)}, "
          f"after {tuple(round(x, 2) for x in load_after)}; {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
