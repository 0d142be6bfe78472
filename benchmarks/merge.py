"""`edgeseg report A/results.json B/results.json … --out DIR`: one report from several bench runs.

Each run keeps its own machine block; each row is marked with its device (the `bench --device` address,
else the machine it ran on) and its run, so the table gets a device column, the latency-against-mIoU
plot a panel per device, and INT8 against FP32 is paired within one device and run only (`ratios`).
Two runs on one machine (another day) share its panel, each its own lines.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from edgeseg.atomic import publish, staging_dir
from edgeseg.benchmarks.bench import RESULTS_SCHEMA
from edgeseg.benchmarks.machine import machine_identity
from edgeseg.benchmarks.report import machine_lines, main_table, per_class_by_resolution_table, to_csv
from edgeseg.errors import ConfigError
from edgeseg.optional import not_installed
from edgeseg.packages import MATPLOTLIB

MERGED_SCHEMA = "edgeseg-report/1"
MERGED_FILES = ("results.json", "results.csv", "report.md", "pareto.png")


def load_results(path: Path) -> tuple[Path, dict[str, Any]]:
    """A bench run's results.json (or the report folder holding it), checked to be one."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (give a bench run's results.json or its folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != RESULTS_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{path}: schema {found!r}, not a bench run's {RESULTS_SCHEMA!r}"
                          + (" (a merged report: give the runs it came from)" if found == MERGED_SCHEMA else ""))
    return path, data


def device_label(results: dict[str, Any]) -> str:
    """The device a run measured on: its `bench --device` name, else its CPU (a local run)."""
    if results.get("device"):
        return str(results["device"]["name"])
    m = results.get("machine", {})
    gpu = ", ".join(g["name"] for g in m.get("gpu") or [])
    return f"local: {m.get('cpu_model')}, {m.get('cpu_cores')} cores" + (f", {gpu}" if gpu else "")


def merge_results(runs: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """One results document from several runs: `runs[]` with each run's machine, rows marked with
    `device` (label), `run` (1-based) and `source`. One label never names two machines."""
    if not runs:
        raise ConfigError("give at least one results.json")
    identities: dict[str, list[dict[str, Any]]] = {}
    merged_runs, rows = [], []
    for number, (path, results) in enumerate(runs, start=1):
        label = device_label(results)
        identity = machine_identity(results.get("machine", {}))
        known = identities.setdefault(label, [])
        if identity not in known:
            known.append(identity)
        if known.index(identity):  # the same name, another machine: keep them apart
            label = f"{label} #{known.index(identity) + 1}"
        merged_runs.append({"run": number, "source": str(path), "device": label, "created": results.get("created"),
                            "command": results.get("command"), "complete": results.get("complete", True),
                            "machine": results.get("machine", {}), "tools": results.get("tools", {}),
                            "datasets": results.get("datasets", {}), "rows": len(results["rows"])})
        rows += [{**row, "device": label, "run": number, "source": str(path)} for row in results["rows"]]
    return {"schema": MERGED_SCHEMA, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "runs": merged_runs, "rows": rows}


def write_merged_report(merged: dict[str, Any], out: Path, budget_ms: float | None = None) -> list[Path]:
    """results.json, results.csv, report.md and (with matplotlib) pareto.png, one panel per device."""
    import importlib.util

    pictures = importlib.util.find_spec("matplotlib") is not None
    with staging_dir(Path(out)) as stage:
        (stage / "results.json").write_text(json.dumps(merged, indent=2) + "\n")
        (stage / "results.csv").write_text(to_csv(merged))
        (stage / "report.md").write_text(merged_markdown(merged, pictures=pictures, budget_ms=budget_ms))
        if pictures:
            from edgeseg.benchmarks.plots import plot_pareto

            plot_pareto(merged, stage / "pareto.png", panel_of=panel_of(merged))
        names = [n for n in MERGED_FILES if pictures or not n.endswith(".png")]
        return publish([stage / name for name in names], Path(out))


def panel_of(merged: dict[str, Any]):
    """A panel per device (and per dataset too, where the runs scored more than one)."""
    several = len({r.get("dataset") for r in merged["rows"] if r["status"] == "ok"}) > 1
    return (lambda r: f"{r['device']}: {r['dataset']}") if several else (lambda r: r["device"])


def merged_markdown(merged: dict[str, Any], *, pictures: bool = True, budget_ms: float | None = None) -> str:
    """report.md of several runs: each device's machine, one table with a device column, INT8 against FP32
    per device, the per-class table, the budget answer and the picture."""
    from edgeseg.benchmarks.budget import budget_section
    from edgeseg.benchmarks.ratios import int8_ratio_table

    parts = ["# edgeseg benchmark: several runs", "", f"merged {merged['created']} from {len(merged['runs'])} runs",
             "", "## Devices", ""]
    for run in merged["runs"]:
        partial = "" if run["complete"] else " (PARTIAL: the run was cut off)"
        parts += [f"### run {run['run']}: {run['device']}{partial}", "",
                  f"`{run['source']}`, {run['created']}" + (f", `{run['command']}`" if run.get("command") else ""),
                  *machine_lines(run), ""]
    parts += ["## Results", "", main_table(merged), "",
              "Each row as its own run measured it: p50/p90 ms end to end on that device; mIoU and ΔmIoU do not "
              "depend on the device that ran the same artifact.", ""]
    for run in merged["runs"]:
        own = {"rows": [r for r in merged["rows"] if r["run"] == run["run"]]}
        table = int8_ratio_table(own)
        if table:
            parts += [f"### INT8 against FP32 on {run['device']} (run {run['run']})", "", table, ""]
    parts += ["INT8 / FP32 pairs rows of one run on one device only: a latency ratio across machines means nothing, "
              "and is refused.", ""]
    by_resolution = per_class_by_resolution_table(merged)
    if by_resolution:
        parts += ["### Per-class IoU by input size (PyTorch FP32)", "", by_resolution, ""]
    if budget_ms is not None:
        parts += budget_section(merged, budget_ms)
    parts += (["![latency against mIoU, one panel per device](pareto.png)", ""] if pictures else
              [f"No pictures: {not_installed(MATPLOTLIB)}.", ""])
    return "\n".join(parts)

