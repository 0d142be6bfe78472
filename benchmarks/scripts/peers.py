"""edgeseg's CPU artifacts against the engines a user would pick instead, timed interleaved in one process.

The same weights go through edgeseg (every CPU target: host-cpu, android-cpu, intel-cpu, each precision its
profile lists) and through the paths a user takes on their own, with each tool's defaults:

    ort-int8        ONNX Runtime quantize_static, all defaults, on edgeseg's FP32 ONNX
    openvino        OpenVINO on edgeseg's FP32 ONNX, its default inference precision (bf16 on CPUs that have it)
    openvino-nncf   OpenVINO + NNCF: nncf.quantize with its defaults on the same ONNX
    executorch      ExecuTorch XNNPACK FP32 (torch.export -> to_edge_transform_and_lower)
    executorch-int8 ExecuTorch XNNPACK INT8: PT2E with XNNPACKQuantizer (symmetric, per-channel)
    litert-torch    the plain litert-torch conversion (no ASPP rewrite, no edgeseg recipe), LiteRT XNNPACK

A peer that does not install or convert here is listed with the reason. Every artifact is loaded once; each
round times each of them once, right after one untimed run of it (as a loop that runs only that engine
meets it), on the same image with the same thread count (benchmarks/interleaved.py), so a change in machine
load hits all alike and the ratios to edgeseg's host-cpu FP32 stay meaningful. Agreement is
the share of pixels whose argmax equals edgeseg's FP32 ONNX on the VOC images; mIoU is computed where the
model's classes are the data set's. Calibration uses the same images for every INT8 path.

    python benchmarks/scripts/peers.py [--resolutions 320,640] [--rounds 30] [--threads 2]
        [--write-docs docs/benchmarks.md]

Needs the full install plus the `peers` extra (pip install 'edgeseg[all,peers]').
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import peer_engines as engines  # beside this script

from edgeseg.benchmarks.interleaved import LEAD_IN, interleaved_times
from edgeseg.errors import ConfigError, EdgesegError, first_line

CPU_TARGETS = ("host-cpu", "android-cpu", "intel-cpu")
REFERENCE = ("host-cpu", "fp32")
DOCS_BEGIN, DOCS_END = "<!-- peers-table:begin -->", "<!-- peers-table:end -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__ and __doc__.splitlines()[0],
                                epilog=__doc__ and __doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="sample", help="as `edgeseg convert --weights` (default: %(default)s)")
    p.add_argument("--resolutions", default="320,640", help="comma-separated (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=30, help="timed rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="threads of every engine (default: %(default)s)")
    p.add_argument("--lead-in", type=int, default=LEAD_IN,
                   help="untimed runs of an engine right before each timed one (default: %(default)s; 0 times "
                        "every run right after another engine's, as the tables before 2026-12-06 did)")
    p.add_argument("--voc", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/voc-sample",
                   help="VOC-layout folder: calibration (train split) and agreement/mIoU (val split)")
    p.add_argument("--images", type=int, default=16, help="VOC images scored per row (default: %(default)s)")
    p.add_argument("--calib-images", type=int, default=32, help="calibration images, every INT8 path")
    p.add_argument("--verify-images", type=int, default=8, help="edgeseg's own verification at conversion")
    p.add_argument("--precisions", default=None,
                   help="edgeseg precisions to include, comma-separated (default: every one each target lists)")
    p.add_argument("--peers", default=",".join(engines.PEERS), help="peers to include (default: all)")
    p.add_argument("--work", type=Path, default=Path("/tmp/edgeseg-peers"),
                   help="folder for the converted artifacts, one subfolder per weights, resolution and image counts; "
                        "what is there is reused (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--write-docs", type=Path, default=None,
                   help=f"replace the table between {DOCS_BEGIN} and {DOCS_END} in this Markdown file")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> list[int]:
    """Every option checked before any conversion; one line per problem."""
    from edgeseg.resolution import parse_resolution

    resolutions = [parse_resolution(r.strip())[0] for r in args.resolutions.split(",")]
    if args.rounds < 1 or args.warmup < 0 or args.threads < 1 or args.images < 1 or args.calib_images < 1:
        raise ConfigError("--rounds, --threads, --images and --calib-images must be at least 1, --warmup at least 0")
    if args.lead_in < 0:
        raise ConfigError(f"--lead-in {args.lead_in}: must be 0 or more")
    if not (args.voc / "JPEGImages").is_dir():
        raise ConfigError(f"--voc {args.voc}: not a VOC-layout folder (no JPEGImages/)")
    unknown = set(args.peers.split(",")) - set(engines.PEERS) - {""}
    if unknown:
        raise ConfigError(f"--peers {sorted(unknown)[0]}: choose from {', '.join(engines.PEERS)}")
    if args.write_docs is not None:
        text = args.write_docs.read_text() if args.write_docs.is_file() else ""
        if DOCS_BEGIN not in text or DOCS_END not in text:
            raise ConfigError(f"--write-docs {args.write_docs}: no {DOCS_BEGIN} ... {DOCS_END} markers "
                              "to write between")
    return resolutions


def edgeseg_runners(args: argparse.Namespace, resolution: int, out: Path) -> list[engines.EdgesegRunner]:
    """edgeseg's artifact of every CPU target and precision at `resolution`, converted once into `out`."""
    from edgeseg.cpu_features import bfloat16_flags
    from edgeseg.targets import get_target

    wanted = set(args.precisions.split(",")) if args.precisions else None
    runners = []
    for name in CPU_TARGETS:
        for precision in get_target(name).precisions:
            skipped = (wanted and precision not in wanted) or (precision == "bf16" and not bfloat16_flags())
            if skipped and (name, precision) != REFERENCE:  # the reference every ratio divides by always runs
                continue
            manifest = engines.convert_cached(args, name, precision, resolution, out)
            runners.append(engines.EdgesegRunner(manifest, args.threads))
    return runners


def peer_runners(args: argparse.Namespace, resolution: int, out: Path, reference, calibration,
                 failures: dict[str, str]) -> list[engines.Runner]:
    """Each peer's runner at `resolution`; a peer that cannot run here goes to `failures` with the reason."""
    runners = []
    for peer in [p for p in args.peers.split(",") if p]:
        try:
            runners.append(engines.PEERS[peer](args, resolution, out, reference, calibration))
        except Exception as exc:  # noqa: BLE001 - PeerUnavailable, or a runtime that refuses the converted file
            reason = str(exc) if isinstance(exc, engines.PeerUnavailable) else \
                f"does not load ({type(exc).__name__}: {first_line(exc)[:200]})"
            failures[f"{peer} at {resolution}"] = reason
            print(f"  {peer}: not run: {reason}")
    return runners


def interleaved_medians(runners: list[engines.Runner], image: np.ndarray, rounds: int, warmup: int,
                        lead_in: int = LEAD_IN) -> list[float]:
    """Median inference ms of each runner over `rounds` rounds that time each once on `image` (preprocessed
    per runner outside the timing) after `lead_in` untimed runs of it, in a balanced order
    (edgeseg.benchmarks.interleaved)."""
    calls = [functools.partial(r.run, r.prepare(image)) for r in runners]
    return [statistics.median(t) for t in interleaved_times(calls, rounds=rounds, warmup=warmup, lead_in=lead_in)]


def labelled_set(dataset, labels: tuple[str, ...], count: int) -> tuple[str, list, list] | None:
    """(name, images, masks) to score mIoU on: the VOC images where the model's classes are VOC's, the held-out
    synthetic scenes for a model with the synthetic classes (the sample model), else None."""
    from edgeseg.scenes import SYNTHETIC_LABELS

    if dataset.has_masks and dataset.labels == labels:
        return "VOC", [dataset.image(i) for i in range(len(dataset))], [dataset.mask(i) for i in range(len(dataset))]
    if labels == SYNTHETIC_LABELS:
        from edgeseg.convert.verify import synthetic_set

        scenes = synthetic_set(count)
        if scenes.masks is not None:  # generated scenes come with their masks
            return "synthetic val scenes", scenes.images, scenes.masks
    return None


def accuracy(runners: list[engines.Runner], dataset, labelled: tuple[str, list, list] | None,
             num_classes: int) -> list[dict]:
    """Argmax agreement with the first runner (edgeseg's FP32 ONNX) on `dataset`, and mIoU on `labelled`."""
    from edgeseg.metrics import Agreement, ConfusionMatrix
    from edgeseg.runtime.postprocess import resize_mask

    agreements = [Agreement() for _ in runners]
    for i in range(len(dataset)):
        image = dataset.image(i)
        masks = [r.mask(r.run(r.prepare(image))) for r in runners]
        for k, mask in enumerate(masks):
            agreements[k].update(masks[0], mask)
    matrices = [ConfusionMatrix(num_classes) for _ in runners]
    for image, truth in zip(*(labelled[1:] if labelled else ([], []))):
        for runner, matrix in zip(runners, matrices):
            matrix.update(truth, resize_mask(runner.mask(runner.run(runner.prepare(image))), *truth.shape))
    return [{"agreement": a.rounded(4), "miou": round(m.compute().miou, 2) if labelled else None}
            for a, m in zip(agreements, matrices)]


def measure(args: argparse.Namespace, resolution: int, failures: dict[str, str]) -> list[dict]:
    from edgeseg.convert.calibration import calibration_images
    from edgeseg.datasets import evaluation_split, open_dataset

    # Everything a cached artifact depends on names its folder: a rerun with other settings converts again.
    out = args.work / f"{Path(args.weights).stem}-{resolution}px-calib{args.calib_images}-verify{args.verify_images}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{resolution} px: converting (edgeseg, then the peers) into {out}")
    ours = edgeseg_runners(args, resolution, out)
    calibration = calibration_images(str(args.voc), args.calib_images)
    peers = peer_runners(args, resolution, out, ours[0].manifest, calibration, failures)
    runners = ours + peers
    dataset = open_dataset(args.voc, evaluation_split(args.voc)).subset(args.images)
    labels = ours[0].manifest.labels
    labelled = labelled_set(dataset, labels, args.images)
    try:
        print(f"{resolution} px: {len(runners)} engines, {args.warmup} + {args.rounds} interleaved rounds")
        load_before = os.getloadavg()
        medians = interleaved_medians(runners, dataset.image(0), args.rounds, args.warmup, args.lead_in)
        load_after = os.getloadavg()
        scores = accuracy(runners, dataset, labelled, len(labels))
    finally:
        for runner in reversed(runners):
            runner.close()
    miou_set = f"{len(labelled[1])} {labelled[0]}" if labelled else None
    return [{"resolution": resolution, "engine": r.engine, "artifact": r.label, "median_ms": round(ms, 2),
             "miou_set": miou_set,
             "ratio": round(ms / medians[0], 3), **score, "load_before": load_before, "load_after": load_after}
            for r, ms, score in zip(runners, medians, scores)]


def markdown(rows: list[dict], failures: dict[str, str], args: argparse.Namespace, resolutions: list[int]) -> str:
    """The table of ratios to edgeseg host-cpu FP32, one row per engine and artifact, a column per resolution."""
    keys = list(dict.fromkeys((r["engine"], r["artifact"]) for r in rows))
    by = {(r["engine"], r["artifact"], r["resolution"]): r for r in rows}
    res_cols = " | ".join(f"{res}: ÷ edgeseg host-cpu FP32" for res in resolutions)
    slash = " / ".join(str(r) for r in resolutions)
    lines = [f"| engine | artifact | {res_cols} | agreement ({slash}) | mIoU ({slash}) |",
             "|---|---|" + "---:|" * len(resolutions) + "---:|---:|"]
    for engine, artifact in keys:
        cells, agree, miou = [], [], []
        for res in resolutions:
            row = by.get((engine, artifact, res))
            if row is None:
                cells.append("—")
                agree.append("—")
                miou.append("—")
                continue
            first = (engine, artifact) == keys[0]
            cells.append(f"{row['ratio']:.2f}" + (f" ({row['median_ms']:.1f} ms)" if first else ""))
            agree.append(f"{row['agreement']:.3f}")
            miou.append("n/a" if row["miou"] is None else f"{row['miou']:.1f}")
        lines.append(f"| {engine} | {artifact} | {' | '.join(cells)} | {' / '.join(agree)} | {' / '.join(miou)} |")
    loads = sorted({tuple(round(x, 2) for x in r[k]) for r in rows for k in ("load_before", "load_after")})
    lines += ["", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads per "
              f"engine, {args.warmup} + {args.rounds} interleaved rounds per resolution, each engine's timed run after "
              f"{args.lead_in} untimed run(s) of it, median inference time; "
              f"agreement = argmax agreement with edgeseg's FP32 ONNX on {args.images} VOC images; mIoU on "
              f"{rows[0]['miou_set'] or 'no labelled set with the model classes (n/a)'}; load averages seen "
              f"{loads[0]} .. {loads[-1]}."]
    lines += [f"- {peer}: not run: {why}" for peer, why in failures.items()]
    return "\n".join(lines)


def write_docs(path: Path, table: str) -> None:
    text = path.read_text()
    head, rest = text.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    path.write_text(f"{head}{DOCS_BEGIN}\n{table}\n{DOCS_END}{tail}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        resolutions = check_args(args)
        failures: dict[str, str] = {}
        rows = [row for res in resolutions for row in measure(args, res, failures)]
    except EdgesegError as exc:
        print(f"peers.py: error: {exc}", file=sys.stderr)
        return 2
    table = markdown(rows, failures, args, resolutions)
    print(table)
    if args.json is not None:
        settings = {"rounds": args.rounds, "warmup": args.warmup, "lead_in": args.lead_in, "threads": args.threads,
                    "images": args.images, "calib_images": args.calib_images}
        args.json.write_text(json.dumps({"settings": settings, "rows": rows, "not_run": failures}, indent=2))
    if args.write_docs is not None:
        write_docs(args.write_docs, table)
        print(f"wrote the table into {args.write_docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
