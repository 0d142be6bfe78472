"""The report's pictures, drawn from the results dict: mIoU against latency, one line per target and
precision across input sizes (pareto.png), and per-class IoU beside the PyTorch FP32 reference
(per_class_iou.png). matplotlib is imported only to draw."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseg.benchmarks.report import _get


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    return plt


PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "int8-dynamic": "v"}


def _resolution_key(resolution: str) -> list[int]:
    return [int(v) for v in resolution.split("x")]


def _series_key(row: dict[str, Any]) -> tuple:
    """Rows of one deployable choice (model, target, precision, variant) that differ only in input size,
    from one run (a merged report may hold two runs of one device)."""
    return (_get(row, "model", "name"), bool(_get(row, "model", "peer")), row["target"], row["precision"],
            row.get("variant") or "", row.get("run") or 0)


def plot_pareto(results: dict[str, Any], path: Path,
                panel_of: Callable[[dict[str, Any]], str] | None = None) -> list[str]:
    """Latency (p50, end to end) against mIoU, a panel per dataset (or per `panel_of(row)`: `edgeseg report`
    draws one per device): one line per target and precision joining its input sizes (320 -> 640 -> 1024),
    each point labelled with its size, so the trade-off a deployment makes by choosing a resolution reads
    along the line. Returns the panel titles."""
    plt = _pyplot()
    panel_of = panel_of or (lambda r: r["dataset"])
    ok = [r for r in results["rows"] if r["status"] == "ok" and _get(r, "accuracy", "miou") is not None]
    panels = list(dict.fromkeys(panel_of(r) for r in ok)) or ["(no rows ran)"]
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 6), squeeze=False)
    targets = sorted({r["target"] for r in ok})
    colours = {t: plt.cm.tab10(i % 10) for i, t in enumerate(targets)}
    styles = {"fp32": "-", "fp16": "--", "int8": "-.", "int8-dynamic": ":"}
    for ax, panel in zip(axes[0], panels):
        rows = [r for r in ok if panel_of(r) == panel]
        runs = {r.get("run") for r in rows}
        for key in sorted({_series_key(r) for r in rows}, key=str):
            series = sorted((r for r in rows if _series_key(r) == key), key=lambda r: _resolution_key(r["resolution"]))
            model, peer, target, precision, variant, run = key
            xs = [r["latency"]["total_ms"]["p50"] for r in series]
            ys = [r["accuracy"]["miou"] for r in series]
            label = (f"{'peer ' if peer else ''}{target} {precision}" + (f" {variant}" if variant else "")
                     + (f" (run {run})" if len(runs) > 1 else ""))
            ax.plot(xs, ys, styles.get(precision, "-"), color=colours[target], linewidth=1.2,
                    marker="*" if peer else PRECISION_MARKERS.get(precision, "o"), markersize=9 if peer else 6,
                    markeredgecolor="black", markeredgewidth=0.5, label=label, zorder=3)
            for r, x, y in zip(series, xs, ys):
                ax.annotate(r["resolution"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")  # 320 -> 1024 is ~10x the work: a log axis keeps every size readable
        ax.set_xlabel("latency p50, ms per frame (end to end, log scale)")
        ax.set_ylabel("mIoU (points)")
        ax.set_title(panel, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if rows:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no row ran", transform=ax.transAxes, ha="center")
    fig.suptitle("edgeseg bench: accuracy against latency, one line per target and precision across input sizes",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return panels


def plot_per_class_iou(results: dict[str, Any], path: Path) -> None:
    """Grouped bars: per-class IoU of each measured row, and the PyTorch FP32 reference per resolution."""
    plt = _pyplot()
    import numpy as np

    ok = [r for r in results["rows"] if r["status"] == "ok" and _get(r, "accuracy", "per_class_iou")]
    datasets = sorted({r["dataset"] for r in ok}) or ["(no rows ran)"]
    fig, axes = plt.subplots(len(datasets), 1, figsize=(11, 4.5 * len(datasets)), squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets):
        rows = [r for r in ok if r["dataset"] == dataset]
        if not rows:
            ax.text(0.5, 0.5, "no row ran", transform=ax.transAxes, ha="center")
            continue
        classes = list(rows[0]["accuracy"]["per_class_iou"])
        series = []
        seen_ref = set()
        for r in rows:
            ref = r["accuracy"].get("reference_per_class_iou")
            key = (_get(r, "model", "name"), r["resolution"])
            if ref and key not in seen_ref:
                seen_ref.add(key)
                series.append((f"PyTorch FP32 {r['resolution']}", ref, True))
            variant = f" {r['variant']}" if r.get("variant") else ""
            label = f"{r['target']} {r['precision']} {r['resolution']}{variant}"
            series.append((label, r["accuracy"]["per_class_iou"], False))
        width = 0.8 / len(series)
        x = np.arange(len(classes))
        for i, (label, values, is_ref) in enumerate(series):
            heights = [np.nan if values.get(c) is None else values[c] for c in classes]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=label,
                   color="none" if is_ref else plt.cm.tab20(i % 20), edgecolor="black" if is_ref else None,
                   hatch="//" if is_ref else None, linewidth=0.6)
        crowded = len(classes) > 10
        ax.set_xticks(x, classes, rotation=30 if crowded else 0, ha="right" if crowded else "center", fontsize=8)
        ax.set_ylabel("IoU (points)")
        ax.set_ylim(0, 100)
        ax.set_title(f"per-class IoU: {dataset}", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=6, ncol=max(1, len(series) // 8 + 1), loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
