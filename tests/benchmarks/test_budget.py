"""`--budget-ms`: the size and precision a person would pick from the table.

The rows are the full native-scene sweep of docs/benchmarks.md ("The resolution trade-off", issue 18): its
p90 end-to-end times, mIoUs and the PyTorch FP32 per-class IoU by size, as published there. Each budget's
expected pick was read off that table by hand (the best mIoU whose p90 fits; a tie goes to the faster).
"""

from __future__ import annotations

import pytest

from edgeseg.benchmarks.budget import answer_line, budget_answers, budget_section
from edgeseg.conventions import DEFAULT_ARCH
from edgeseg.errors import ConfigError

# (target, resolution, precision, p90 ms, mIoU) from the table of docs/benchmarks.md (issue 18)
SWEEP = [
    ("host-cpu", "320", "fp32", 16.0, 89.14), ("host-cpu", "320", "int8", 11.9, 89.03),
    ("host-cpu", "640", "fp32", 74.7, 95.18), ("host-cpu", "640", "int8", 49.4, 95.29),
    ("host-cpu", "1024", "fp32", 222.5, 96.92), ("host-cpu", "1024", "int8", 123.9, 96.97),
    ("android-cpu", "320", "fp32", 14.5, 89.14), ("android-cpu", "320", "fp16", 14.2, 89.14),
    ("android-cpu", "320", "int8", 7.2, 88.91), ("android-cpu", "320", "int8-dynamic", 19.9, 89.12),
    ("android-cpu", "640", "fp32", 80.9, 95.18), ("android-cpu", "640", "fp16", 83.2, 95.18),
    ("android-cpu", "640", "int8", 31.3, 95.25), ("android-cpu", "640", "int8-dynamic", 71.4, 95.25),
    ("android-cpu", "1024", "fp32", 219.8, 96.92), ("android-cpu", "1024", "fp16", 216.9, 96.92),
    ("android-cpu", "1024", "int8", 82.9, 97.01), ("android-cpu", "1024", "int8-dynamic", 202.3, 96.92),
]
# PyTorch FP32 per-class IoU by size, the same table's
PER_CLASS = {
    "320": {"background": 97.5, "disc": 94.3, "box": 92.3, "triangle": 87.6, "star": 86.6, "ring": 74.7, "cross": 90.9},
    "640": {"background": 98.9, "disc": 97.5, "box": 95.9, "triangle": 94.9, "star": 93.9, "ring": 89.8, "cross": 95.3},
    "1024": {"background": 99.3, "disc": 98.3, "box": 96.9, "triangle": 96.8, "star": 96.2, "ring": 93.9,
             "cross": 97.0},
}


def _results(not_run: bool = True) -> dict:
    rows = [{"id": f"m/{t}/{p}/{r}", "model": {"name": DEFAULT_ARCH}, "target": t,
             "host_proxy": t.startswith("android"), "resolution": r, "precision": p, "status": "ok",
             "latency": {"total_ms": {"p90": p90}},
             "accuracy": {"miou": miou, "reference_per_class_iou": PER_CLASS[r]}} for t, r, p, p90, miou in SWEEP]
    if not_run:  # rows that did not run never answer
        rows.append({"id": "m/host-cpu/fp16/320", "model": {"name": DEFAULT_ARCH},
                     "target": "host-cpu", "resolution": "320", "precision": "fp16", "status": "not run"})
    return {"rows": rows}


def _picks(budget: float) -> dict[str, dict]:
    return {a["target"].split()[0]: a for a in budget_answers(_results(), budget)}


def test_33_ms_one_frame_at_30_fps():
    picks = _picks(33)
    host, phone = picks["host-cpu"], picks["android-cpu"]
    assert (host["best"]["resolution"], host["best"]["precision"], host["margin_ms"]) == ("320", "fp32", 17.0)
    assert (host["runner_up"]["resolution"], host["runner_up"]["precision"]) == ("320", "int8")
    # 640 INT8 (31.3 ms) is the one 640 row under 33 ms, 6 points above every 320 row
    assert (phone["best"]["resolution"], phone["best"]["precision"], phone["margin_ms"]) == ("640", "int8", 1.7)
    assert (phone["runner_up"]["resolution"], phone["runner_up"]["precision"]) == ("320", "fp16")  # tie: faster
    assert phone["losses"]["against"] == "1024"
    assert phone["losses"]["classes"] == [("ring", 4.1), ("star", 2.3), ("triangle", 1.9)]


def test_100_ms():
    picks = _picks(100)
    host, phone = picks["host-cpu"], picks["android-cpu"]
    assert (host["best"]["resolution"], host["best"]["precision"], host["margin_ms"]) == ("640", "int8", 50.6)
    assert (host["runner_up"]["resolution"], host["runner_up"]["precision"]) == ("640", "fp32")
    assert host["losses"]["classes"][0] == ("ring", 4.1)
    assert (phone["best"]["resolution"], phone["best"]["precision"], phone["margin_ms"]) == ("1024", "int8", 17.1)
    assert (phone["runner_up"]["resolution"], phone["runner_up"]["precision"]) == ("640", "int8")
    assert phone["losses"] is None  # the largest size measured
    assert "the largest size measured" in answer_line(phone, 100)


def test_5_ms_fits_nothing_and_says_so():
    picks = _picks(5)
    assert not picks["host-cpu"]["fits"] and not picks["android-cpu"]["fits"]
    assert (picks["host-cpu"]["fastest"]["precision"], picks["host-cpu"]["over_ms"]) == ("int8", 6.9)
    assert (picks["android-cpu"]["fastest"]["resolution"], picks["android-cpu"]["over_ms"]) == ("320", 2.2)
    text = "\n".join(budget_section(_results(), 5))
    assert text.count("**nothing fits 5 ms**") == 2 and "320 int8 (88.91 mIoU, p90 7.2 ms), is 2.2 ms over" in text


def test_the_section_reads_as_a_person_would_say_it():
    line = next(line for line in budget_section(_results(), 33) if line.startswith("- android-cpu"))
    assert line == ("- android-cpu (host proxy) on this machine (deeplabv3_mobilenet_v3_large): **640 int8**: 95.25 "
                    "mIoU at p90 31.3 ms, 1.7 ms inside the budget; runner-up 320 fp16 (89.14 mIoU, p90 14.2 ms); "
                    "against 1024 it loses most on ring −4.1, star −2.3, triangle −1.9 IoU points (PyTorch FP32)")


@pytest.mark.parametrize("budget", [0, -3])
def test_a_budget_must_be_positive(budget):
    with pytest.raises(ConfigError, match="--budget-ms"):
        budget_answers(_results(), budget)
