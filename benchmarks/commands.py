"""Subcommands of the evaluation side: `bench` and `report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeseg.benchmarks.quick import QUICK_OUT

DEFAULT_OUT = Path("edgeseg-bench")


def register(sub: argparse._SubParsersAction) -> None:
    _register_bench(sub)


def _list(text: str) -> list[str]:
    """`a,b c` -> ['a', 'b', 'c']: lists may be given with commas, spaces or both."""
    return [item for item in text.replace(",", " ").split() if item]


def _add_artifact_and_peer_arguments(p: argparse.ArgumentParser) -> None:
    """What bench measures besides a sweep: given artifacts, the public peers, the ASPP comparison."""
    p.add_argument("--artifacts", nargs="+", type=Path, default=[],
                   help="measure these converted artifacts (or manifests) instead of a sweep")
    p.add_argument("--peer", action="store_true", help="add the public peers (benchmarks/peers/*.json) on VOC val")
    p.add_argument("--peer-manifest", nargs="+", type=Path, default=[],
                   help="peer manifests (default: benchmarks/peers/*.json)")
    p.add_argument("--peer-data", type=Path, default=None,
                   help="VOC folder for the peers (default: ../shared/data/voc-sample)")
    p.add_argument("--aspp-compare", action="store_true", help="each row with and without the ASPP rewrite")


def _register_bench(sub: argparse._SubParsersAction) -> None:
    from edgeseg.benchmarks.config import (
        DEFAULT_CALIB_IMAGES,
        DEFAULT_IMAGES,
        DEFAULT_RUNS,
        DEFAULT_VERIFY_IMAGES,
        DEFAULT_WARMUP,
        QUICK,
    )
    from edgeseg.targets import all_targets  # the YAML profiles only: --help stays light

    p = sub.add_parser(
        "bench", help="latency, mIoU and cost per model x target x resolution x precision, in one report",
        description="Convert on demand (cached by the conversion inputs) or take given artifacts, run each through "
                    "the runtime on a labelled set, and write results.json, results.csv, report.md, pareto.png and "
                    "per_class_iou.png into --out. Every row ends ok, not run (with why) or failed (with where).")
    p.add_argument("--data", type=Path, default=None,
                   help="labelled set: VOC layout or images/ + masks/ (+ labels.txt); with --quick the default is "
                        "a small seeded synthetic set, made once and kept in the cache")
    p.add_argument("--split", default="val", help="split list of a VOC-layout --data (default: %(default)s)")
    p.add_argument("--weights", nargs="+", default=["sample"],
                   help="'sample', 'torchvision' or checkpoint paths; each is a model of the sweep (default: sample)")
    p.add_argument("--models", nargs="+", default=[None],
                   help="zoo architectures of plain state dicts or of --weights torchvision (checkpoints "
                        "carry their own)")
    p.add_argument("--targets", type=_list, default=["host-cpu"],
                   help=f"comma-separated target profiles, of: {', '.join(all_targets())} (`edgeseg targets` "
                        "describes them; default: host-cpu)")
    p.add_argument("--resolutions", type=_list, default=["320"],
                   help="comma-separated, e.g. 320,640 or 480x640 (default: 320)")
    p.add_argument("--precisions", type=_list, default=["fp32"],
                   help="comma-separated: fp32,fp16,int8,int8-dynamic (default: fp32)")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                   help="images scored per set, the first N of the split (default: %(default)s)")
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed frames per row (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help="untimed frames before them (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="inference threads, 1 to this machine's usable cores (default: the target's, at most those "
                        "cores)")
    p.add_argument("--calib", default=None,
                   help="INT8 calibration: folder or synthetic:N (default: --data's train split, else synthetic scenes "
                        "for a model of the synthetic classes)")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES,
                   help="calibration images (default: %(default)s)")
    p.add_argument("--verify-images", type=int, default=DEFAULT_VERIFY_IMAGES,
                   help="images verified at conversion, the first of --data (default: %(default)s)")
    _add_artifact_and_peer_arguments(p)
    p.add_argument("--quick", action="store_true",
                   help=f"CI size: first resolution only, {QUICK['images']} images, {QUICK['runs']} runs, "
                        f"{QUICK['calib_images']} calibration images; runs with no other argument")
    _add_device_arguments(p)
    _add_budget_argument(p)
    _add_output_arguments(p)
    p.set_defaults(run=_bench)
    _register_report(sub)


def _add_device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, metavar="ssh://[USER@]HOST[:PORT][/VENV]",
                   help="measure on this device over SSH (OpenSSH's ssh and scp, your keys and ~/.ssh/config): "
                        "convert here, copy what is missing there, run its edgeseg bench --artifacts; VENV is its "
                        "edgeseg venv (/~/edgeseg: under its home; none: edgeseg on its login PATH)")
    p.add_argument("--ssh-config", type=Path, default=None,
                   help="with --device: this ssh config file instead of ~/.ssh/config (ssh -F)")


def _add_budget_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-ms", type=float, default=None,
                   help="answer which size and precision to deploy: per device and target, the best mIoU whose p90 "
                        "end-to-end time fits this many milliseconds")


def _register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="one report from several bench runs (devices, days): a device column, a panel per device",
        description="Merge results.json files of edgeseg bench runs into one report folder: the table with a device "
                    "column, latency against mIoU with one panel per device, INT8 against FP32 per device. Rows of "
                    "different machines are never put in one ratio.")
    p.add_argument("results", nargs="+", type=Path, help="results.json files (or the report folders holding them)")
    p.add_argument("--out", type=Path, required=True, help="report folder to write")
    _add_budget_argument(p)
    p.set_defaults(run=_report)


def _report(args: argparse.Namespace) -> int:
    from edgeseg.benchmarks.budget import budget_section, check_budget
    from edgeseg.benchmarks.merge import load_results, merge_results, write_merged_report
    from edgeseg.benchmarks.report import main_table

    check_budget(args.budget_ms)
    merged = merge_results([load_results(path) for path in args.results])
    written = write_merged_report(merged, args.out, budget_ms=args.budget_ms)
    print(main_table(merged))
    if args.budget_ms is not None:
        print("\n".join(budget_section(merged, args.budget_ms)))
    devices = ", ".join(run["device"] for run in merged["runs"])
    print(f"wrote {args.out}/ ({', '.join(p.name for p in written)}) from {len(merged['runs'])} runs on {devices}")
    return 0


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """Where bench keeps its work: the artifact cache and the report folder."""
    p.add_argument("--cache", type=Path, default=None,
                   help="converted artifacts by their inputs (default: $EDGESEG_CACHE or ~/.cache/edgeseg/artifacts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, default=None,
                   help=f"report folder (default: {DEFAULT_OUT}/, with --quick {QUICK_OUT}/)")


def _bench(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from edgeseg.benchmarks.bench import BenchConfig, run_bench
    from edgeseg.benchmarks.budget import budget_section, check_budget
    from edgeseg.benchmarks.config import default_cache_dir
    from edgeseg.benchmarks.quick import quick_scenes
    from edgeseg.benchmarks.report import main_table, write_report

    check_budget(args.budget_ms)
    if args.ssh_config is not None and args.device is None:
        from edgeseg.errors import ConfigError

        raise ConfigError("--ssh-config is for --device")
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    data = args.data
    if data is None and args.quick:  # a fresh clone has no labelled set: make the small synthetic one (once)
        data = quick_scenes(args.cache or default_cache_dir(), progress=not args.no_progress)
    config = BenchConfig(
        out=out, data=data, split=args.split, weights=tuple(args.weights), models=tuple(args.models),
        targets=tuple(args.targets), resolutions=tuple(args.resolutions), precisions=tuple(args.precisions),
        images=args.images, runs=args.runs, warmup=args.warmup, threads=args.threads, calibration=args.calib,
        calib_images=args.calib_images, verify_images=args.verify_images, artifacts=tuple(args.artifacts),
        peer=args.peer, peer_manifests=tuple(args.peer_manifest), peer_data=args.peer_data,
        aspp_compare=args.aspp_compare, quick=args.quick, cache=args.cache, progress=not args.no_progress,
        command="edgeseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    # The report is rewritten after every row: an interrupted sweep keeps what it measured
    # (results.json then says "complete": false).
    def on_row(partial: dict) -> None:
        write_report(partial, out, budget_ms=args.budget_ms)

    if args.device is not None:
        from edgeseg.benchmarks.remote import run_device_bench

        results = run_device_bench(config, args.device, args.ssh_config, on_row)
    else:
        results = run_bench(config, on_row=on_row)
    written = write_report(results, out, budget_ms=args.budget_ms)
    print(main_table(results))
    if args.budget_ms is not None:
        print("\n".join(budget_section(results, args.budget_ms)))
    print(f"wrote {out}/ ({', '.join(p.name for p in written)}) in {results['duration_s']} s")
    _require_a_measured_row(results, out)
    return 0


def _require_a_measured_row(results: dict, out: Path) -> None:
    """A sweep in which no row produced a number did not do its job: the report is written (it says why
    per row), and the exit status says so."""
    from edgeseg.benchmarks.rows import STATUS_FAILED, STATUS_NOT_RUN, STATUS_OK
    from edgeseg.errors import NoResultError

    statuses = [row.get("status") for row in results["rows"]]
    if STATUS_OK not in statuses:
        raise NoResultError(f"no row produced a number ({statuses.count(STATUS_FAILED)} failed, "
                            f"{statuses.count(STATUS_NOT_RUN)} not run); {out}/report.md says why for each")
