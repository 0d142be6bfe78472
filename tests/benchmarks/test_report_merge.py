"""`edgeseg report A B C --out DIR`: one report from several runs, a device column, a panel per device, INT8
over FP32 only within one device and run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.benchmarks.merge import load_results, merge_results
from edgeseg.benchmarks.ratios import int8_ratio_table, latency_ratio
from edgeseg.cli import main
from edgeseg.errors import ConfigError
from tests.constants import BENCH_REPORT, BENCH_RESULTS

MACHINES = {
    "workstation": {"cpu_model": "AMD EPYC 7B13", "cpu_cores": 2, "memory_gb": 7.8, "os": "Linux-6.1-x86_64",
                    "gpu": []},
    "orin": {"cpu_model": "ARMv8 Processor rev 1 (v8l)", "cpu_cores": 6, "memory_gb": 7.4, "os": "Linux-5.15-aarch64",
             "gpu": [{"name": "Orin (nvgpu)", "driver": "540.4.0", "memory": "7.4 GiB"}]},
}


def _row(target: str, precision: str, resolution: str, infer_ms: float, miou: float) -> dict:
    return {"id": f"m/{target}/{precision}/{resolution}", "kind": "sweep",
            "model": {"name": "m", "architecture": "m", "weights_sha256": "ab"}, "variant": None, "target": target,
            "backend": "x", "host_proxy": False, "resolution": resolution, "precision": precision, "status": "ok",
            "stage": None, "reason": None, "dataset": "scenes",
            "latency": {"total_ms": {"p50": infer_ms + 3, "p90": infer_ms + 5}, "inference_ms": {"p50": infer_ms}},
            "accuracy": {"miou": miou, "miou_delta": 0.0}, "artifact": {"size_mb": 1.0}}


def _results(machine: str, rows: list[dict], device: str | None = None, created: str = "2026-12-06T10:00:00+00:00"):
    doc = {"schema": "edgeseg-bench/1", "created": created, "command": "edgeseg bench", "complete": True,
           "machine": MACHINES[machine], "tools": {"python": "3.11.7"}, "datasets": {}, "rows": rows}
    if device:
        doc["device"] = {"name": device}
    return doc


@pytest.fixture
def three_runs(tmp_path) -> list[Path]:
    """The workstation (FP32 and INT8), a Jetson over SSH (FP32 only) and the workstation another day (INT8 only)."""
    runs = {
        "a": _results("workstation", [_row("host-cpu", "fp32", "320", 12.0, 89.1), _row("host-cpu", "int8", "320",
                                                                                       7.0, 89.0)]),
        "b": _results("orin", [_row("host-cpu", "fp32", "320", 30.0, 89.1)], device="nvidia@orin.local"),
        "c": _results("workstation", [_row("host-cpu", "int8", "320", 7.5, 89.0)], created="2026-12-07T09:00:00+00:00"),
    }
    paths = []
    for name, doc in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / BENCH_RESULTS).write_text(json.dumps(doc))
        paths.append(tmp_path / name / BENCH_RESULTS)
    return paths


def test_rows_carry_their_device_and_run(three_runs):
    merged = merge_results([load_results(p) for p in three_runs])
    local = "local: AMD EPYC 7B13, 2 cores"
    assert [r["device"] for r in merged["rows"]] == [local, local, "nvidia@orin.local", local]
    assert [r["run"] for r in merged["rows"]] == [1, 1, 2, 3]


def test_report_draws_a_panel_per_device_and_pairs_int8_within_one_run(three_runs, tmp_path, monkeypatch, capsys):
    import matplotlib.axes

    titles = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, label, *a, **k: titles.append(label) or original(self, label, *a, **k))
    out = tmp_path / "merged"
    assert main(["report", *map(str, three_runs), "--out", str(out)]) == 0
    assert titles == ["local: AMD EPYC 7B13, 2 cores", "nvidia@orin.local"]  # two devices, three runs
    assert sorted(p.name for p in out.iterdir()) == ["pareto.png", "report.md", "results.csv", "results.json"]
    report = (out / BENCH_REPORT).read_text()
    assert "| device | model | target |" in report and "| nvidia@orin.local | m | host-cpu |" in report
    # one INT8/FP32 table: run 1's pair; the Jetson's FP32 and the other day's INT8 pair with nothing
    assert report.count("### INT8 against FP32 on") == 1
    assert "### INT8 against FP32 on local: AMD EPYC 7B13, 2 cores (run 1)" in report
    assert "| m | host-cpu | 320 | 12.0 | 7.0 | 0.58 |" in report


def test_a_ratio_across_machines_is_refused(three_runs):
    merged = merge_results([load_results(p) for p in three_runs])
    workstation_int8, orin_fp32 = merged["rows"][1], merged["rows"][2]
    with pytest.raises(ConfigError, match="no latency ratio across machines or runs: .* on nvidia@orin.local"):
        latency_ratio(workstation_int8, orin_fp32)
    # and the table never forms that pair: INT8 of one machine, FP32 of another
    assert int8_ratio_table({"rows": [workstation_int8, orin_fp32]}) is None


def test_one_name_on_two_machines_is_kept_apart(three_runs):
    path, other = load_results(three_runs[1])
    other = {**other, "machine": MACHINES["workstation"]}  # the same address, now another board
    merged = merge_results([load_results(three_runs[1]), (path, other)])
    assert [r["device"] for r in merged["rows"]] == ["nvidia@orin.local", "nvidia@orin.local #2"]


def test_a_file_that_is_not_a_bench_run_is_one_line(tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps({"schema": "edgeseg-report/1", "rows": []}))
    assert main(["report", str(tmp_path / "x.json"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "a merged report: give the runs it came from" in err
    assert not (tmp_path / "out").exists()
