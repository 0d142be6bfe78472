"""The bench report tells the resolution trade-off: a line per target and precision across input sizes
(pareto.png) and a per-class table by input size (report.md), rendered from the results dict alone."""

from __future__ import annotations

import matplotlib
import pytest

from edgeseg.benchmarks import plots, report

matplotlib.use("Agg")

REF = {"320": {"background": 98.0, "ring": 70.0, "disc": 95.0},
       "640": {"background": 98.5, "ring": 82.0, "disc": 95.5},
       "1024": {"background": 99.0, "ring": 90.5, "disc": 96.0}}


def _row(target: str, precision: str, resolution: str, ms: float, miou: float) -> dict:
    return {"id": f"{target}-{precision}-{resolution}", "model": {"name": "sample"}, "target": target,
            "precision": precision, "resolution": resolution, "status": "ok", "dataset": "scenes",
            "latency": {"total_ms": {"p50": ms}},
            "accuracy": {"miou": miou, "reference_per_class_iou": REF[resolution]}}


def _results() -> dict:
    rows = []
    for target, base in (("host-cpu", 10.0), ("android-cpu", 14.0)):
        for precision, speed in (("fp32", 1.0), ("int8", 0.5)):
            for res, work, miou in (("1024", 10.0, 93.0), ("320", 1.0, 88.0), ("640", 4.0, 91.5)):
                rows.append(_row(target, precision, res, base * speed * work, miou - (precision == "int8")))
    return {"rows": rows}


def test_per_class_table_has_a_column_per_size_in_order_and_the_gain():
    table = report.per_class_by_resolution_table(_results())
    lines = table.splitlines()
    assert lines[0] == "sample on scenes:"
    assert lines[2] == "| class | 320 | 640 | 1024 | 1024 − 320 |"
    # a row per class in the reference's order, each cell under its size (the rows came as 1024, 320, 640)
    assert lines[4:] == ["| background | 98.0 | 98.5 | 99.0 | +1.0 |",
                         "| ring | 70.0 | 82.0 | 90.5 | +20.5 |",
                         "| disc | 95.0 | 95.5 | 96.0 | +1.0 |"]


def test_no_per_class_table_with_a_single_size():
    results = {"rows": [r for r in _results()["rows"] if r["resolution"] == "320"]}
    assert report.per_class_by_resolution_table(results) is None


def test_pareto_draws_one_line_per_target_and_precision_through_the_sizes_in_order(tmp_path, monkeypatch):
    drawn = []
    import matplotlib.axes

    original = matplotlib.axes.Axes.plot

    def spy(self, xs, ys, *args, **kwargs):
        drawn.append((kwargs.get("label"), list(xs), list(ys)))
        return original(self, xs, ys, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    plots.plot_pareto(_results(), tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    labels = sorted(label for label, _, _ in drawn)
    assert labels == ["android-cpu fp32", "android-cpu int8", "host-cpu fp32", "host-cpu int8"]
    # every line runs 320 -> 640 -> 1024, though the rows came as 1024, 320, 640
    lines = {label: (xs, ys) for label, xs, ys in drawn}
    assert lines["host-cpu fp32"] == ([10.0, 40.0, 100.0], [88.0, 91.5, 93.0])
    assert lines["host-cpu int8"] == ([5.0, 20.0, 50.0], [87.0, 90.5, 92.0])
    assert lines["android-cpu fp32"] == ([14.0, 56.0, 140.0], [88.0, 91.5, 93.0])
    assert lines["android-cpu int8"] == ([7.0, 28.0, 70.0], [87.0, 90.5, 92.0])


@pytest.mark.parametrize(("smaller", "larger"), [("320", "1024"), ("96x160", "640x480")])
def test_sizes_sort_numerically(smaller, larger):
    """As numbers, not as text (which puts "1024" before "320" and "640x480" before "96x160")."""
    assert sorted([larger, smaller], key=plots._resolution_key) == [smaller, larger]
