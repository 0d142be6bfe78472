"""The bench report folder, rendered from the results dict alone (results.json is the source of truth):

- `results.json`  everything measured (schema in docs/benchmarks.md)
- `results.csv`   one flat line per row
- `report.md`     the machine, the table (target, backend, resolution, precision, status, p50/p90 ms,
                  FPS, mIoU, ΔmIoU, size), the stage breakdown and cost, and notes
- `pareto.png`    mIoU against latency: one line per target and precision across input sizes
- `per_class_iou.png`  per-class IoU of every measured row beside the PyTorch FP32 reference

All files are staged and moved into the folder together, so a reader never sees half a report.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from edgeseg.atomic import publish, staging_dir
from edgeseg.optional import not_installed
from edgeseg.packages import MATPLOTLIB

REPORT_FILES = ("results.json", "results.csv", "report.md", "pareto.png", "per_class_iou.png")
CSV_COLUMNS = (
    "id", "model", "variant", "target", "backend", "host_proxy", "resolution", "precision", "status", "stage", "reason",
    "dataset", "threads",
    "total_ms_mean", "total_ms_p50", "total_ms_p90", "total_ms_p99", "total_ms_min", "total_ms_max",
    "fps", "preprocess_ms_p50", "inference_ms_p50", "inference_ms_p90", "postprocess_ms_p50", "miou", "pixel_accuracy",
    "reference_miou", "miou_delta", "argmax_agreement", "size_mb", "gflops", "achieved_gflops_per_s",
    "roofline_fraction", "verification_agrees", "xnnpack_partitions", "device",
)


def write_report(results: dict[str, Any], out: Path, budget_ms: float | None = None) -> list[Path]:
    """Write every report file into `out` atomically; return their paths. Without matplotlib (a device
    install) the pictures are left out and report.md says so. `budget_ms`: report.md answers which size
    and precision to deploy within that latency (`benchmarks.budget`)."""
    import importlib.util

    pictures = importlib.util.find_spec("matplotlib") is not None
    with staging_dir(Path(out)) as stage:
        (stage / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (stage / "results.csv").write_text(to_csv(results))
        (stage / "report.md").write_text(to_markdown(results, pictures=pictures, budget_ms=budget_ms))
        if pictures:
            from edgeseg.benchmarks.plots import plot_pareto, plot_per_class_iou

            plot_pareto(results, stage / "pareto.png")
            plot_per_class_iou(results, stage / "per_class_iou.png")
        names = [n for n in REPORT_FILES if pictures or not n.endswith(".png")]
        return publish([stage / name for name in names], Path(out))


# --------------------------------------------------------------------------- flat views

def _get(d: dict | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row as CSV columns (missing measurements stay empty, never zero)."""
    lat, acc, cost = row.get("latency"), row.get("accuracy"), row.get("cost")
    return {
        "id": row["id"], "model": _get(row, "model", "name"), "variant": row.get("variant"),
        "target": row.get("target"), "backend": row.get("backend"), "host_proxy": row.get("host_proxy"),
        "resolution": row.get("resolution"), "precision": row.get("precision"),
        "status": row["status"], "stage": row.get("stage"), "reason": row.get("reason"),
        "dataset": row.get("dataset"), "threads": row.get("threads"),
        **{f"total_ms_{k}": _get(lat, "total_ms", k) for k in ("mean", "p50", "p90", "p99", "min", "max")},
        "fps": _get(lat, "fps"), "preprocess_ms_p50": _get(lat, "preprocess_ms", "p50"),
        "inference_ms_p50": _get(lat, "inference_ms", "p50"), "inference_ms_p90": _get(lat, "inference_ms", "p90"),
        "postprocess_ms_p50": _get(lat, "postprocess_ms", "p50"),
        "miou": _get(acc, "miou"), "pixel_accuracy": _get(acc, "pixel_accuracy"),
        "reference_miou": _get(acc, "reference_miou"),
        "miou_delta": _get(acc, "miou_delta"), "argmax_agreement": _get(acc, "argmax_agreement"),
        "size_mb": _get(cost, "size_mb") if cost else _get(row, "artifact", "size_mb"), "gflops": _get(cost, "gflops"),
        "achieved_gflops_per_s": _get(cost, "achieved_gflops_per_s"),
        "roofline_fraction": _get(cost, "roofline_fraction"),
        "verification_agrees": _get(row, "verification_check", "agrees"),
        "xnnpack_partitions": partitions(row), "device": row.get("device"),
    }


def to_csv(results: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer: csv.DictWriter[str] = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in results["rows"]:
        writer.writerow({k: ("" if v is None else v) for k, v in flat_row(row).items()})
    return buf.getvalue()


def status_text(row: dict[str, Any]) -> str:
    """`ok`, `not run: why`, or `failed (stage): why`."""
    if row["status"] == "ok":
        return "ok"
    if row["status"] == "failed":
        return f"failed ({row.get('stage')}): {row.get('reason')}"
    return f"{row['status']}: {row.get('reason')}"


def target_text(row: dict[str, Any]) -> str:
    return f"{row.get('target')} (host proxy)" if row.get("host_proxy") else str(row.get("target"))


def model_text(row: dict[str, Any]) -> str:
    name = _get(row, "model", "name") or "?"
    if _get(row, "model", "peer"):
        name = f"peer: {name}"
    return f"{name} ({row['variant']})" if row.get("variant") else name


def _percent(fraction: float | None, fmt: str) -> str:
    return "–" if fraction is None else format(fraction * 100, fmt) + "%"


def _num(value: Any, fmt: str, signed: bool = False) -> str:
    if value is None:
        return "–"
    return format(value, ("+" if signed else "") + fmt)


# --------------------------------------------------------------------------- report.md

def main_table(results: dict[str, Any]) -> str:
    """The one table a reader wants: every row, with its status (and the device that measured it, when
    the rows were measured over SSH or merged from several runs)."""
    devices = any(row.get("device") for row in results["rows"])
    head = ("device",) * devices + ("model", "target", "backend", "resolution", "precision", "status", "p50 ms",
                                    "p90 ms", "FPS", "mIoU", "ΔmIoU", "size MB")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * (6 + devices) + ["---:"] * 6) + "|"]
    for row in results["rows"]:
        lat, acc = row.get("latency"), row.get("accuracy")
        size = _get(row, "cost", "size_mb") or _get(row, "artifact", "size_mb")
        cells = (row.get("device") or "this machine",) * devices + (
                 model_text(row), target_text(row), row.get("backend") or "–", row.get("resolution") or "–",
                 row.get("precision") or "–", status_text(row).replace("|", "/"),
                 _num(_get(lat, "total_ms", "p50"), ".1f"), _num(_get(lat, "total_ms", "p90"), ".1f"),
                 _num(_get(lat, "fps"), ".1f"), _num(_get(acc, "miou"), ".2f"),
                 _num(_get(acc, "miou_delta"), ".2f", True),
                 _num(size, ".2f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(results: dict[str, Any]) -> str:
    """Stage breakdown, agreement and cost of the rows that ran."""
    head = ("model", "target", "resolution", "precision", "threads", "pre p50 ms", "infer p50 ms", "post p50 ms",
            "pixel acc %", "agreement", "GFLOPs", "GFLOP/s", "of peak", "XNNPACK partitions")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 10) + "|"]
    for row in results["rows"]:
        if row["status"] != "ok":
            continue
        lat, acc, cost = row["latency"], row["accuracy"], row["cost"]
        agreement = acc.get("argmax_agreement")
        roof = cost.get("roofline_fraction")
        cells = (model_text(row), target_text(row), row["resolution"], row["precision"], str(row.get("threads")),
                 _num(lat["preprocess_ms"]["p50"], ".1f"), _num(lat["inference_ms"]["p50"], ".1f"),
                 _num(lat["postprocess_ms"]["p50"], ".1f"), _num(acc.get("pixel_accuracy"), ".2f"),
                 _percent(agreement, ".2f"), _num(cost.get("gflops"), ".2f"),
                 _num(cost.get("achieved_gflops_per_s"), ".1f"), _percent(roof, ".1f"), _num(partitions(row), "d"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def partitions(row: dict[str, Any]) -> int | None:
    """XNNPACK partitions of a LiteRT row's artifact (recorded at conversion), else None."""
    return _get(row, "artifact", "conversion", "xnnpack_partitions")


def machine_lines(results: dict[str, Any]) -> list[str]:
    m, tools = results["machine"], results["tools"]
    gpu = ", ".join(f"{g['name']} (driver {g['driver']})" for g in m.get("gpu") or []) or "none"
    peak = m.get("matmul_peak", {})
    lines = [
        f"- CPU: {m.get('cpu_model')}, {m.get('cpu_cores')} cores ({m.get('cpu_cores_usable')} usable), "
        f"{m.get('memory_gb', '?')} GB RAM; GPU: {gpu}; {m.get('os')}",
        (f"- measured float32 matmul peak: {peak.get('gflops_per_s')} GFLOP/s "
         f"({peak.get('method')}, {peak.get('threads')} threads)" if peak.get("gflops_per_s") is not None else
         f"- no matmul peak measured ({peak.get('reason')}): no roofline fractions"),
        f"- load average (1/5/15 min) at start {m.get('load_average_at_start')}, at end {m.get('load_average_at_end')}"
        " (above the core count means something else shared the CPU)",
        "- tools: " + ", ".join(f"{k} {v}" for k, v in tools.items()),
    ]
    if m.get("emulation"):
        lines.insert(0, f"- **EMULATED**: {m['emulation']}: every latency here measures the emulator")
    device = results.get("device")
    if isinstance(device, dict):  # `bench --device`: the machine above is the device's
        workstation = _get(results, "converted_on", "machine", "cpu_model")
        lines.insert(0, f"- the device {device['name']}, over SSH: its edgeseg {device['version']} "
                        f"({device['edgeseg']}) measured every row; converted and verified on {workstation}")
    return lines


def check_lines(results: dict[str, Any]) -> list[str]:
    """Did the bench reproduce the conversion-time verification numbers?"""
    tol = results.get("check_tolerance", {})
    comparable = [r for r in results["rows"] if _get(r, "verification_check", "comparable")]
    if not comparable:
        return ["- no row had conversion-time verification numbers on these images to compare with"]
    bad = [r for r in comparable if not r["verification_check"]["agrees"]]
    worst = max(abs(r["verification_check"]["miou_difference"]) for r in comparable)
    line = (f"- bench vs conversion-time verification (same images, same metric): {len(comparable) - len(bad)} of "
            f"{len(comparable)} rows agree within {tol.get('miou_points')} mIoU points and "
            f"{tol.get('argmax_agreement')} argmax agreement; largest mIoU difference {worst:.4f}")
    lines = [line]
    over = [r["id"] for r in results["rows"] if (_get(r, "cost", "roofline_fraction") or 0) > 1]
    if over:
        lines.append(f"- roofline fraction above 1 for {', '.join(over)}: the matmul peak was measured while other "
                     "processes held the CPU, so it is too low; read the fractions as unreliable")
    for r in bad:
        c = r["verification_check"]
        lines.append(f"  - DISAGREES: {r['id']}: bench {c['bench_miou']} vs recorded {c['recorded_miou']} mIoU "
                     f"(agreement {c.get('bench_argmax_agreement')} vs {c.get('recorded_argmax_agreement')})")
    return lines


def to_markdown(results: dict[str, Any], *, pictures: bool = True, budget_ms: float | None = None) -> str:
    """report.md: the run, the machine and data, the tables with their legends, the budget answer (with
    `budget_ms`), the checks, the pictures (or, when they were not drawn, why)."""
    from edgeseg.benchmarks.budget import budget_section

    created = f"{results['created']}, {results['duration_s']} s"
    command = f", `{results['command']}`" if results.get("command") else ""
    parts = [
        "# edgeseg benchmark", "", created + command, "",
        "## Machine", *machine_lines(results), "",
        "## Data", *data_lines(results), "",
        *result_sections(results),
        *([] if budget_ms is None else budget_section(results, budget_ms)),
        "## Checks", *check_lines(results), "",
        *(["![latency against mIoU](pareto.png)", "", "![per-class IoU](per_class_iou.png)", ""] if pictures else
          [f"No pictures: {not_installed(MATPLOTLIB)}.", ""]),
    ]
    return "\n".join(parts)


def data_lines(results: dict[str, Any]) -> list[str]:
    """The sets scored, how many frames and images per row, and each model's INT8 calibration."""
    config = results["config"]
    lines = [f"- `{key}`: {d['name']}: {d['images']} images of {d['path']}"
             + (f" (split {d['split']})" if d.get("split") else "") for key, d in results.get("datasets", {}).items()]
    lines.append(f"- latency: {config['warmup']} warm-up + {config['runs']} timed frames per row; accuracy: "
                 f"{config['images']} images at most per set" + ("; `--quick`" if config.get("quick") else ""))
    lines.extend(f"- INT8 calibration of {m}: {c['images']} ({c['source']})"
                 for m, c in (config.get("calibration") or {}).items())
    return lines


def _ratio_tables(results: dict[str, Any]) -> tuple[str | None, str | None]:
    """The ASPP and INT8/FP32 tables (`benchmarks.ratios`, which builds on this module's cells)."""
    from edgeseg.benchmarks.ratios import aspp_table, int8_ratio_table

    return aspp_table(results), int8_ratio_table(results)


def result_sections(results: dict[str, Any]) -> list[str]:
    """The main table, stages and cost, INT8 against FP32 (when both ran) and the ASPP table (--aspp-compare),
    each with its legend."""
    rows = results["rows"]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "not run", "failed")}
    partial = ("" if results.get("complete", True)
               else f"; PARTIAL: {len(rows)} of {results.get('rows_planned')} rows so far")
    aspp, int8 = _ratio_tables(results)
    by_resolution = per_class_by_resolution_table(results)
    return [
        f"## Results ({counts['ok']} ok, {counts['not run']} not run, {counts['failed']} failed{partial})",
        "",
        main_table(results),
        "",
        "p50/p90 ms and FPS are end to end per frame (preprocessing + inference + postprocessing to frame size, "
        "as the demo runs them); FPS = 1000 / mean. mIoU in points over the classes present in ground truth or "
        "prediction; ΔmIoU against the PyTorch FP32 model on the same images at the same resolution. "
        "\"host proxy\": LiteRT on this machine's CPU standing in for the phone; phone numbers differ.",
        "",
        "### Stages and cost",
        "",
        detail_table(results),
        "",
        "GFLOPs: 2 x multiply-accumulates of convolutions and matrix products at that resolution (depthwise "
        "convolutions counted at their true cost). GFLOP/s at the median inference time; \"of peak\": that as a "
        "fraction of the measured matmul peak above (the roofline fraction). Agreement: share of pixels whose class "
        "matches the PyTorch FP32 model's, at model resolution.",
        "",
        *([] if int8 is None else [
            "### INT8 against FP32, same run",
            "",
            int8,
            "",
            "INT8 / FP32: median inference time of the INT8 artifact over the FP32 artifact's, both measured in this "
            "run on the same frames and threads. ΔmIoU against the PyTorch FP32 model; agreement: share of pixels "
            "whose class matches it. XNNPACK partitions: how many pieces LiteRT's CPU runtime cuts the graph into "
            "(1 = all of it in the delegate).",
            "",
        ]),
        *([] if aspp is None else [
            "### The exact ASPP rewrite, with and without (`--aspp-compare`)",
            "",
            aspp,
            "",
            "ratio: median inference time with the rewrite over without it, both measured in this run. The rewrite "
            "changes no output (see docs/aspp-rewrite.md), so the two mIoUs should be equal.",
            "",
        ]),
        *([] if by_resolution is None else [
            "### Per-class IoU by input size (PyTorch FP32)",
            "",
            by_resolution,
            "",
            "IoU in points of the PyTorch FP32 model fed each input size, its prediction resized back to the ground "
            "truth's own size before scoring, as the rows above are scored. The last column is what the largest size "
            "buys over the smallest: the classes with the largest gain are the ones that need resolution.",
            "",
        ]),
    ]


def per_class_by_resolution_table(results: dict[str, Any]) -> str | None:
    """Classes x input sizes of the FP32 reference, per dataset and model; None with fewer than two sizes."""
    tables = []
    refs: dict[tuple, dict[str, dict]] = {}
    for r in results["rows"]:
        ref = _get(r, "accuracy", "reference_per_class_iou")
        if r["status"] == "ok" and ref and not _get(r, "model", "peer"):
            key = (r["dataset"], _get(r, "model", "name"))
            refs.setdefault(key, {})[r["resolution"]] = ref
    for (dataset, model), by_res in sorted(refs.items(), key=str):
        if len(by_res) < 2:
            continue
        sizes = sorted(by_res, key=lambda s: [int(v) for v in s.split("x")])
        classes = list(by_res[sizes[0]])
        lines = [f"{model} on {dataset}:", "",
                 "| class | " + " | ".join(sizes) + f" | {sizes[-1]} − {sizes[0]} |",
                 "|---|" + "---:|" * (len(sizes) + 1)]
        for c in classes:
            values = [by_res[size].get(c) for size in sizes]
            gain = None if values[0] is None or values[-1] is None else values[-1] - values[0]
            cells = " | ".join(_num(v, ".1f") for v in values)
            lines.append(f"| {c} | {cells} | {_num(gain, '.1f', signed=True)} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables) or None
