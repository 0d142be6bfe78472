"""The bench report puts INT8 beside FP32 from the same run: the latency ratio, ΔmIoU, agreement and
XNNPACK partitions (rendered from the results dict alone)."""

from __future__ import annotations

from edgeseg.benchmarks import ratios, report


def _row(precision: str, target: str, infer_ms: float | None, *, partitions: int | None = None,
         miou_delta: float = 0.0, status: str = "ok") -> dict:
    row = {"id": f"{target}-{precision}", "model": {"name": "m"}, "target": target, "resolution": "320",
           "precision": precision, "status": status, "reason": "no runtime" if status != "ok" else None,
           "artifact": {"size_mb": 1.0, "conversion": {} if partitions is None else {"xnnpack_partitions": partitions}}}
    if status == "ok":
        row["latency"] = {"inference_ms": {"p50": infer_ms}}
        row["accuracy"] = {"miou_delta": miou_delta, "argmax_agreement": 0.97}
    return row


def test_int8_latency_is_a_ratio_of_fp32_from_the_same_run_with_its_accuracy():
    results = {"rows": [_row("fp32", "host-cpu", 40.0), _row("int8", "host-cpu", 26.0, miou_delta=-0.31),
                        _row("fp32", "android-cpu", 50.0, partitions=1),
                        _row("int8", "android-cpu", 20.0, partitions=1, miou_delta=-0.12),
                        _row("fp16", "android-cpu", 45.0, partitions=1)]}
    table = ratios.int8_ratio_table(results)
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, one line per target with both precisions
    assert "| m | host-cpu | 320 | 40.0 | 26.0 | 0.65 | -0.31 | 0.9700 | – |" in lines
    assert "| m | android-cpu | 320 | 50.0 | 20.0 | 0.40 | -0.12 | 0.9700 | 1 |" in lines


def test_a_pair_with_a_row_that_did_not_run_says_why_and_no_ratio():
    results = {"rows": [_row("fp32", "host-cpu", 40.0), _row("int8", "host-cpu", None, status="not run")]}
    (line,) = ratios.int8_ratio_table(results).splitlines()[2:]
    assert "int8: not run: no runtime" in line and "0." not in line.split("|")[6]


def test_no_int8_and_fp32_pair_means_no_table():
    assert ratios.int8_ratio_table({"rows": [_row("fp32", "host-cpu", 40.0)]}) is None


def test_partitions_reach_the_csv():
    row = _row("int8", "android-cpu", 20.0, partitions=1)
    assert report.flat_row(row)["xnnpack_partitions"] == 1
