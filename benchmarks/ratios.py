"""Ratios between rows: INT8 over FP32, with over without the ASPP rewrite. A ratio of two latencies means
something only when both were measured on the same machine in the same run, so rows are paired within
one device and run (`device` and `run` are set on rows by `edgeseg bench --device` and `edgeseg report`),
and `latency_ratio` refuses a pair from two machines."""

from __future__ import annotations

from typing import Any

from edgeseg.benchmarks.report import _get, _num, model_text, partitions, status_text, target_text
from edgeseg.errors import ConfigError


def machine_of(row: dict[str, Any]) -> tuple[Any, Any]:
    """(device, run) of a row: None, None for every row of a single local run."""
    return row.get("device"), row.get("run")


def latency_ratio(numerator: dict[str, Any], denominator: dict[str, Any], stage: str = "inference_ms") -> float:
    """`numerator`'s median `stage` time over `denominator`'s; refused for rows of two machines or runs."""
    if machine_of(numerator) != machine_of(denominator):
        a, b = (f"{r['id']} on {r.get('device') or 'this machine'} (run {r.get('run')})" for r in (numerator,
                                                                                                  denominator))
        raise ConfigError(f"no latency ratio across machines or runs: {a} over {b}; compare each device's own rows")
    return numerator["latency"][stage]["p50"] / denominator["latency"][stage]["p50"]


def aspp_table(results: dict[str, Any]) -> str | None:
    """`--aspp-compare`: each cell with and without the exact ASPP rewrite, side by side."""
    pairs: dict[tuple, dict[str, dict]] = {}
    for row in results["rows"]:
        if row.get("variant") in ("aspp-rewrite", "no-aspp-rewrite"):
            key = (machine_of(row), _get(row, "model", "name"), row.get("target"), row.get("resolution"),
                   row.get("precision"))
            pairs.setdefault(key, {})[row["variant"]] = row
    if not pairs:
        return None
    head = ("model", "target", "resolution", "precision", "GFLOPs with / without", "infer p50 ms with / without",
            "ratio", "mIoU with / without")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 4) + "|"]
    for (_, model, target, res, precision), pair in pairs.items():
        on, off = pair.get("aspp-rewrite"), pair.get("no-aspp-rewrite")
        if not (on and off and on["status"] == off["status"] == "ok"):
            why = "; ".join(f"{r['variant']}: {status_text(r)}" for r in (on, off) if r and r["status"] != "ok")
            lines.append(f"| {model} | {target} | {res} | {precision} | {why or 'one side missing'} | – | – | – |")
            continue
        t_on, t_off = on["latency"]["inference_ms"]["p50"], off["latency"]["inference_ms"]["p50"]
        lines.append(f"| {model} | {target_text(on)} | {res} | {precision} | "
                     f"{_num(on['cost'].get('gflops'), '.2f')} / {_num(off['cost'].get('gflops'), '.2f')} | "
                     f"{t_on:.1f} / {t_off:.1f} | {latency_ratio(on, off):.2f} | "
                     f"{_num(on['accuracy'].get('miou'), '.2f')} / {_num(off['accuracy'].get('miou'), '.2f')} |")
    return "\n".join(lines)


def int8_ratio_table(results: dict[str, Any]) -> str | None:
    """INT8 beside FP32 from the same run on the same machine: per model, target and resolution, INT8's
    median inference time over FP32's, next to INT8's accuracy and (LiteRT) its XNNPACK partition count."""
    pairs: dict[tuple, dict[str, dict]] = {}
    for row in results["rows"]:
        if row.get("precision") in ("fp32", "int8"):
            # The same weights, whatever each artifact's display name: architecture and weights sha256.
            model = (_get(row, "model", "architecture") or model_text(row), _get(row, "model", "weights_sha256"),
                     row.get("variant"))
            key = (machine_of(row), model, target_text(row), row.get("resolution"))
            pairs.setdefault(key, {})[row["precision"]] = row
    pairs = {k: v for k, v in pairs.items() if len(v) == 2}
    if not pairs:
        return None
    head = ("model", "target", "resolution", "FP32 infer p50 ms", "INT8 infer p50 ms", "INT8 / FP32", "INT8 ΔmIoU",
            "INT8 agreement", "INT8 XNNPACK partitions")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 6) + "|"]
    for (_, _, target, res), pair in pairs.items():
        fp32, int8 = pair["fp32"], pair["int8"]
        model = model_text(fp32)
        if not fp32["status"] == int8["status"] == "ok":
            why = "; ".join(f"{r['precision']}: {status_text(r)}" for r in (fp32, int8) if r["status"] != "ok")
            lines.append(f"| {model} | {target} | {res} | {why.replace('|', '/')} | – | – | – | – | – |")
            continue
        t32, t8 = fp32["latency"]["inference_ms"]["p50"], int8["latency"]["inference_ms"]["p50"]
        agreement = int8["accuracy"].get("argmax_agreement")
        lines.append(f"| {model} | {target} | {res} | {t32:.1f} | {t8:.1f} | {latency_ratio(int8, fp32):.2f} | "
                     f"{_num(int8['accuracy'].get('miou_delta'), '.2f', True)} | {_num(agreement, '.4f')} | "
                     f"{_num(partitions(int8), 'd')} |")
    return "\n".join(lines)
