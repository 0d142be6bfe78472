"""Side-by-side latency of a few artifacts in one process, interleaved round by round.

`edgeseg bench` measures its rows one after another, so a change in machine load between two rows
shows up as a speed difference. Here every artifact is loaded once and each round times each of
them once on the same frame (right after one untimed run of the same artifact), with the same thread
count: a load change hits all of them alike, and the ratio of their medians stays meaningful on a
shared machine (the absolute times do not).

    python -m edgeseg.benchmarks.interleaved FP32_ARTIFACT INT8_ARTIFACT ... [--rounds 15] [--threads 2]

prints each artifact's median inference time over the rounds, its ratio to the first one and the
median of the per-round ratios, with the load average before and after.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from edgeseg.errors import ConfigError, EdgesegError, first_line
from edgeseg.manifest import load_manifest
from edgeseg.runtime.backend import check_threads
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.scenes import generate_scene, scene_rng


def round_order(index: int, count: int) -> list[int]:
    """The order of round `index`: a Williams design, in which over `count` rounds (`2 * count` when `count` is
    odd) every call runs right after every other call equally often within a round. A fixed order, or one only
    rotated (where a call's predecessor stays the same), biases the rows: the engine right after an ONNX Runtime
    session ran 20-25 % slower (measured at 640: LiteRT INT8 138 ms after it, 112 ms after ExecuTorch, same
    process), because ORT's idle workers spin for a while after each run on the cores the next engine needs."""
    first, low, high = [0], 1, count - 1
    while len(first) < count:  # 0, 1, n-1, 2, n-2, ...: each difference between neighbours once
        first.append(low)
        low += 1
        if len(first) < count:
            first.append(high)
            high -= 1
    order = [(k + index) % count for k in first]
    return order[::-1] if count % 2 and (index // count) % 2 else order


# Untimed runs of a call right before its timed one. With none, every timed run followed another engine's
# run, which no deployment does: at 320 px (2 threads, 15 engines, 30 rounds) ExecuTorch PT2E INT8 read 0.52-0.62
# of ONNX Runtime FP32 that way and 0.95-0.98 with one lead-in run, as it does alone, back to back (0.98);
# NNCF's INT8 read 0.33-0.36 against edgeseg intel-cpu INT8's 0.42-0.45, and 0.42 against 0.42-0.48 with a
# lead-in (alone: 0.45 against 0.42). One is enough: with it the interleaved ratios match each engine run alone.
LEAD_IN = 1


def interleaved_times(calls: Sequence[Callable[[], object]], *, rounds: int, warmup: int,
                      lead_in: int = LEAD_IN) -> list[list[float]]:
    """Each call's wall time in ms, per timed round: every round gives every call a turn, in the order
    `round_order` gives, after `warmup` untimed rounds (the same machinery for edgeseg's artifacts here and
    for the peers' engines in benchmarks/scripts). A turn is `lead_in` untimed runs and one timed run, so
    the timed run meets the engine as a loop that runs only it does (its own threads awake, its own data in
    the caches), not as the previous engine left the cores; the round-by-round interleaving still spreads
    any change in machine load over all the calls alike."""
    times: list[list[float]] = [[] for _ in calls]
    for index in range(warmup + rounds):
        for k in round_order(index, len(calls)):
            for _ in range(lead_in):
                calls[k]()
            start = time.perf_counter()
            calls[k]()
            if index >= warmup:
                times[k].append((time.perf_counter() - start) * 1000)
    return times


def artifact_times(artifacts: list[Path], *, rounds: int = 15, warmup: int = 2,
                   threads: int | None = None) -> list[list[float]]:
    """`interleaved_times` of the artifacts' inference (through the one frame path, `Segmenter`) on one scene."""
    manifests = [load_manifest(a) for a in artifacts]
    image = generate_scene(scene_rng(0, "val", 0))[0]  # one real scene, preprocessed per artifact's spec
    with ExitStack() as opened:  # closed in reverse order, also when a later one fails to open
        segmenters = [opened.enter_context(Segmenter.open(m, threads=threads)) for m in manifests]
        calls = [functools.partial(s.infer, s.preprocess_rgb(image)) for s in segmenters]
        return interleaved_times(calls, rounds=rounds, warmup=warmup)


def interleaved_medians(artifacts: list[Path], *, rounds: int = 15, warmup: int = 2,
                        threads: int | None = None) -> list[float]:
    """Median inference ms of each artifact over `rounds` rounds that time every artifact once (after its lead-in)."""
    return [statistics.median(t) for t in artifact_times(artifacts, rounds=rounds, warmup=warmup, threads=threads)]


def report(names: Sequence[str], times: Sequence[Sequence[float]], load_before: tuple[float, ...],
           load_after: tuple[float, ...], settings: str) -> str:
    """The side-by-side table every interleaved command prints: each median, its ratio to the first row's, and
    the median of the per-round ratios (which moves less on a busy machine), then the load and the settings."""
    medians = [statistics.median(t) for t in times]
    lines = [f"{median:8.1f} ms  {median / medians[0]:5.2f}x  "
             f"per-round {statistics.median(a / b for a, b in zip(t, times[0])):5.2f}x  {name}"
             for name, median, t in zip(names, medians, times)]
    lines.append(f"load average (1/5/15 min) before {tuple(round(x, 2) for x in load_before)}, after "
                 f"{tuple(round(x, 2) for x in load_after)}; {settings}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeseg.benchmarks.interleaved", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifacts", nargs="+", type=Path, help="artifacts (or manifests); ratios are to the first")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="default: each manifest's target profile")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    try:
        if args.rounds < 1:
            raise ConfigError(f"--rounds {args.rounds}: must be 1 or more")
        check_threads(args.threads)
        times = artifact_times(args.artifacts, rounds=args.rounds, threads=args.threads)
    except EdgesegError as exc:  # a missing or damaged artifact, a manifest that does not describe it: one line
        print(f"{parser.prog}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    print(report([path.name for path in args.artifacts], times, load_before, os.getloadavg(),
                 f"{os.cpu_count()} cores, {args.rounds} rounds"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
