"""How fast the `edgeseg` command answers what needs no model: help, and requests it must refuse.

Each case runs as a fresh process (what a user waits for: interpreter start, imports, parsing,
validation), several times, interleaved so that machine load spreads over every case; the report
is the median and the spread of the wall times. A benchmark, not a test: on a loaded machine the
absolute numbers move, so read them beside the load they were measured under.

    python benchmarks/scripts/cli_latency.py [--runs 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (name, arguments after `edgeseg`, expected exit status). {out} is a fresh, writable folder.
CASES: list[tuple[str, list[str], int]] = [
    ("--help", ["--help"], 0),
    ("convert --resolution 333", ["convert", "--resolution", "333", "--out", "{out}"], 2),
    ("convert --target no-such-board", ["convert", "--target", "no-such-board", "--out", "{out}"], 2),
    ("convert --no-such-flag", ["convert", "--no-such-flag", "--out", "{out}"], 2),
    # Refused by the request check before any weights load (it used to answer after the ASPP check).
    ("convert int8 without --calib",
     ["convert", "--target", "android-cpu", "--precision", "int8", "--out", "{out}"], 2),
    ("convert --weights missing.pth", ["convert", "--weights", "missing.pth", "--out", "{out}"], 2),
    ("train --init imagenet", ["train", "--data", "{out}", "--init", "imagenet", "--out", "{out}/m.pt"], 2),
]


def edgeseg_command() -> list[str]:
    """The `edgeseg` entry point beside this interpreter, else `python -m edgeseg`."""
    script = Path(sys.executable).with_name("edgeseg")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgeseg"]


def time_once(argv: list[str], expected: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != expected:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}, expected {expected}\n{done.stderr[-2000:]}")
    return seconds


def measure(runs: int) -> dict[str, dict[str, float]]:
    base = edgeseg_command()
    walls: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(runs):  # interleaved: every case sees the same load
            for name, args, expected in CASES:
                walls[name].append(time_once(base + [a.format(out=out) for a in args], expected))
    return {name: {"median_s": round(statistics.median(w), 3), "min_s": round(min(w), 3), "max_s": round(max(w), 3),
                   "runs": len(w)} for name, w in walls.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__ and __doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per case (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    results = measure(args.runs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if args.json:
        print(json.dumps({"cases": results, "load_average_1min": load, "cores": os.cpu_count()}, indent=2))
        return 0
    print(f"edgeseg CLI wall time, {args.runs} runs per case, interleaved; "
          f"load average {load} on {os.cpu_count()} cores")
    print(f"{'case':36} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, r in results.items():
        print(f"{name:36} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
