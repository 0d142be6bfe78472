"""How long `edgeseg` takes to answer requests that cannot succeed (and --help), end to end.

Each case runs as a fresh process (`python -m edgeseg ...`), as a user would type it, several times
interleaved with the other cases; the median wall time per case is printed with the exit status and
the first line of stderr. Not a test: absolute times depend on the machine's load.

    python benchmarks/scripts/convert_answer_latency.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "--help": ["--help"],
    "convert --help": ["convert", "--help"],
    "unknown target": ["convert", "--target", "jetson-nano-2gb", "--out", "{tmp}"],
    "bad resolution": ["convert", "--resolution", "333", "--out", "{tmp}"],
    "int8 without --calib": ["convert", "--target", "android-cpu", "--precision", "int8", "--out", "{tmp}"],
    "missing weights": ["convert", "--weights", "missing.pth", "--out", "{tmp}"],
    "train: unknown --init": ["train", "--data", "{tmp}", "--init", "imagenet", "--out", "{tmp}/m.pt"],
}


def run_once(args: list[str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    first = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or [""])[0]
    return elapsed, result.returncode, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, list[float]] = {name: [] for name in CASES}
        last: dict[str, tuple[int, str]] = {}
        for _ in range(args.repeats):  # interleaved: a burst of load hits every case alike
            for name, case in CASES.items():
                elapsed, code, first = run_once([a.replace("{tmp}", tmp) for a in case])
                times[name].append(elapsed)
                last[name] = (code, first)
    print(f"{'case':<24}{'median s':>9}{'max s':>8}  exit  first line")
    for name, values in times.items():
        code, first = last[name]
        print(f"{name:<24}{statistics.median(values):9.3f}{max(values):8.3f}  {code:>4}  {first[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
