"""`edgeseg bench`: the report folder, a status on every row, and numbers that reproduce the
verification recorded at conversion (same images, same metric) within `CHECK_TOLERANCE`."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.benchmarks.bench import RESULTS_SCHEMA
from edgeseg.benchmarks.checks import CHECK_TOLERANCE
from edgeseg.benchmarks.flops import model_gflops, tflite_gflops
from edgeseg.benchmarks.measure import latency_stats
from edgeseg.benchmarks.report import REPORT_FILES
from edgeseg.cli import main
from edgeseg.conventions import DEFAULT_ARCH
from edgeseg.convert.verify import BUDGETS
from edgeseg.manifest import load_manifest
from edgeseg.targets import get_target
from tests.constants import ANDROID_CPU, BENCH_REPORT, BENCH_RESULTS, HOST_CPU

QUICK_RESOLUTION = "128"
LITERT_HERE = all(importlib.util.find_spec(m) is not None
                  for m in ("ai_edge_litert", "litert_torch", "edgeseg.formats.tflite.convert.export"))


def bench(args: list[str]) -> int:
    return main(["bench", "--no-progress", *args])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, sample_checkpoint: Path, synthetic_voc: Path, cache: Path) -> Path:
    """One `--quick` sweep of the sample model over host-cpu and android-cpu, converted once."""
    out = tmp_path_factory.mktemp("bench-report")
    code = bench(["--weights", str(sample_checkpoint), "--data", str(synthetic_voc),
                  "--targets", f"{HOST_CPU},{ANDROID_CPU}",
                  "--resolutions", f"{QUICK_RESOLUTION},320", "--precisions", "fp32", "--quick", "--runs", "6",
                  "--cache", str(cache), "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def results(quick_report: Path) -> dict:
    return json.loads((quick_report / BENCH_RESULTS).read_text())


def row_for(results: dict, target: str) -> dict:
    (row,) = [r for r in results["rows"] if r["target"] == target]
    return row


# ---- the report folder ------------------------------------------------------------------------

@pytest.mark.slow
def test_quick_writes_every_report_file(quick_report: Path):
    for name in REPORT_FILES:
        data = (quick_report / name).read_bytes()
        assert data, name
        if name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not [p.name for p in quick_report.iterdir() if p.name.startswith(".")], "staging left behind"


@pytest.mark.slow
def test_quick_measures_one_resolution_on_few_images(results: dict):
    assert results["schema"] == RESULTS_SCHEMA
    assert {r["resolution"] for r in results["rows"]} == {QUICK_RESOLUTION}
    assert results["datasets"]["data"]["images"] == 8
    assert len(results["rows"]) == 2


@pytest.mark.slow
def test_every_row_has_a_status_and_unfinished_rows_say_why(results: dict):
    for row in results["rows"]:
        assert row["status"] in ("ok", "not run", "failed"), row["id"]
        if row["status"] != "ok":
            assert row["reason"], row["id"]
        if row["status"] == "failed":
            assert row["stage"] in ("export", "verification", "run"), row["id"]


@pytest.mark.slow
def test_csv_and_markdown_hold_every_row(quick_report: Path, results: dict):
    with open(quick_report / "results.csv", newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert [line["id"] for line in lines] == [r["id"] for r in results["rows"]]
    assert [line["status"] for line in lines] == [r["status"] for r in results["rows"]]
    report = (quick_report / BENCH_REPORT).read_text()
    header = ("| model | target | backend | resolution | precision | status | p50 ms | p90 ms | FPS | mIoU | ΔmIoU "
              "| size MB |")
    assert header in report
    table = report.split(header, 1)[1].split("\n\n", 1)[0]
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == len(results["rows"])
    host = row_for(results, HOST_CPU)
    assert f"| {host['latency']['total_ms']['p50']:.1f} | {host['latency']['total_ms']['p90']:.1f} |" in report
    assert "android-cpu (host proxy)" in report


@pytest.mark.slow
def test_machine_and_tools_are_recorded(results: dict):
    machine = results["machine"]
    assert machine["cpu_cores"] >= 1 and machine["cpu_model"]
    assert machine["matmul_peak"]["gflops_per_s"] > 0
    assert results["tools"]["onnxruntime"] and results["tools"]["torch"]


# ---- the numbers ------------------------------------------------------------------------------

@pytest.mark.slow
def test_host_cpu_fp32_reproduces_the_verification_recorded_at_conversion(results: dict, synthetic_voc: Path):
    row = row_for(results, HOST_CPU)
    assert row["status"] == "ok", row.get("reason")
    manifest = load_manifest(row["artifact"]["manifest"])
    (recorded,) = [s for s in manifest.data["verification"]["sets"] if s["set"] == "real"]
    # Quick mode scores the same 8 images that verification scored at conversion: the bench handed
    # the converter copies of the first 8 val scenes, in order.
    assert recorded["images"] == row["accuracy"]["images"] == 8
    verified = sorted(p.name for p in (Path(recorded["source"]) / "images").iterdir())
    val_ids = (synthetic_voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[:8]
    assert verified == [f"{i:05d}_{sample_id}.jpg" for i, sample_id in enumerate(val_ids)]
    for name, sample_id in zip(verified, val_ids):
        assert (Path(recorded["source"]) / "images" / name).read_bytes() == \
            (synthetic_voc / "JPEGImages" / f"{sample_id}.jpg").read_bytes()
    assert abs(row["accuracy"]["miou"] - recorded["miou"]) <= CHECK_TOLERANCE["miou_points"]
    assert (abs(row["accuracy"]["argmax_agreement"] - recorded["argmax_agreement"])
            <= CHECK_TOLERANCE["argmax_agreement"])
    assert abs(row["accuracy"]["reference_miou"] - recorded["reference_miou"]) <= CHECK_TOLERANCE["miou_points"]
    assert row["verification_check"]["comparable"] and row["verification_check"]["agrees"]


@pytest.mark.slow
def test_fp32_stays_within_its_budget_against_pytorch(results: dict):
    row = row_for(results, HOST_CPU)
    budget = BUDGETS["fp32"]
    assert row["accuracy"]["argmax_agreement"] >= budget["min_agreement"]
    assert abs(row["accuracy"]["miou_delta"]) <= budget["max_miou_drop"]
    # The trained sample model segments the synthetic scenes (an untrained one scores ~10).
    assert row["accuracy"]["miou"] > 50


@pytest.mark.slow
def test_miou_is_the_mean_of_the_per_class_iou(results: dict):
    acc = row_for(results, HOST_CPU)["accuracy"]
    present = [v for v in acc["per_class_iou"].values() if v is not None]
    assert acc["miou"] == pytest.approx(np.mean(present), abs=1e-3)


@pytest.mark.slow
def test_latency_is_ordered_and_split_into_stages(results: dict):
    lat = row_for(results, HOST_CPU)["latency"]
    assert lat["runs"] == 6
    for stage in ("total_ms", "preprocess_ms", "inference_ms", "postprocess_ms"):
        s = lat[stage]
        assert 0 <= s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"], stage
    assert lat["fps"] == pytest.approx(1000 / lat["total_ms"]["mean"], rel=1e-3)
    parts = sum(lat[s]["mean"] for s in ("preprocess_ms", "inference_ms", "postprocess_ms"))
    assert parts <= lat["total_ms"]["mean"] * 1.01


@pytest.mark.slow
def test_cost_uses_the_exported_models_flops_and_the_measured_peak(results: dict):
    row = row_for(results, HOST_CPU)
    cost = row["cost"]
    manifest = load_manifest(row["artifact"]["manifest"])
    rewrite = manifest.data["conversion"].get("aspp_rewrite") or {}
    if rewrite.get("applied"):
        assert cost["gflops"] == pytest.approx(rewrite["flops_after"] / 1e9, abs=1e-3)
    assert cost["achieved_gflops_per_s"] == pytest.approx(
        cost["gflops"] / (row["latency"]["inference_ms"]["p50"] / 1000), rel=1e-2)
    assert cost["roofline_fraction"] == pytest.approx(
        cost["achieved_gflops_per_s"] / results["machine"]["matmul_peak"]["gflops_per_s"], abs=1e-3)
    assert cost["size_mb"] == pytest.approx(Path(row["artifact"]["path"]).stat().st_size / 2**20, abs=1e-3)


@pytest.mark.slow
def test_android_rows_are_a_host_proxy(results: dict):
    row = row_for(results, ANDROID_CPU)
    assert row["host_proxy"] is True and row["backend"] == "litert"
    if LITERT_HERE:
        assert row["status"] == "ok", row.get("reason")
        assert row["verification_check"]["agrees"], row["verification_check"]
    else:
        assert row["status"] == "not run" and row["reason"]


@pytest.mark.slow
@pytest.mark.skipif(not LITERT_HERE, reason="needs LiteRT (ai-edge-litert, litert-torch) and the tflite exporter")
def test_tflite_graph_count_matches_the_pytorch_count(results: dict):
    row = row_for(results, ANDROID_CPU)
    assert tflite_gflops(Path(row["artifact"]["path"])) == pytest.approx(row["cost"]["gflops"], rel=0.01)


@pytest.mark.slow
def test_a_second_run_reuses_the_cached_artifact(tmp_path, results: dict, sample_checkpoint: Path,
                                                 synthetic_voc: Path, cache: Path):
    out = tmp_path / "again"
    assert bench(["--weights", str(sample_checkpoint), "--data", str(synthetic_voc), "--targets", HOST_CPU,
                  "--resolutions", QUICK_RESOLUTION, "--quick", "--runs", "2", "--cache", str(cache),
                  "--out", str(out)]) == 0
    again = json.loads((out / BENCH_RESULTS).read_text())["rows"][0]
    first = row_for(results, HOST_CPU)
    assert again["artifact"]["from_cache"] is True
    assert again["artifact"]["sha256"] == first["artifact"]["sha256"]
    # Same artifact, same images: the same accuracy.
    assert again["accuracy"]["miou"] == first["accuracy"]["miou"]


def test_a_precision_the_target_lacks_is_not_run_with_the_reason(tmp_path, sample_checkpoint: Path,
                                                                 synthetic_voc: Path, capsys):
    out = tmp_path / "r"
    # Its only row measured nothing: the report says why, and the exit status says so (issue 30).
    assert bench(["--weights", str(sample_checkpoint), "--data", str(synthetic_voc), "--targets", HOST_CPU,
                  "--precisions", "int8-dynamic", "--quick", "--cache", str(tmp_path / "c"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"edgeseg bench: error: no row produced a number (0 failed, 1 not run); "
                                               f"{out}/report.md says why for each")
    (row,) = json.loads((out / BENCH_RESULTS).read_text())["rows"]
    assert row["status"] == "not run"
    supported = ", ".join(get_target(HOST_CPU).precisions)
    assert row["reason"] == f"host-cpu has no int8-dynamic (it supports {supported})"
    assert "not run: host-cpu has no int8-dynamic" in (out / BENCH_REPORT).read_text()


# ---- bad input: one line, exit 2 --------------------------------------------------------------

def test_unknown_target_is_one_line(tmp_path, capsys, synthetic_voc: Path):
    assert bench(["--data", str(synthetic_voc), "--targets", "pixel-9", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeseg bench: error: unknown target 'pixel-9'") and "\n" not in err
    assert not (tmp_path / "r" / BENCH_RESULTS).exists()


def test_missing_data_folder_is_one_line(tmp_path, capsys):
    assert bench(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "nowhere: dataset folder not found" in capsys.readouterr().err


def test_data_of_other_classes_is_refused(tmp_path, capsys, sample_checkpoint: Path, voc_sample: Path):
    assert bench(["--weights", str(sample_checkpoint), "--data", str(voc_sample), "--out", str(tmp_path / "r")]) == 2
    assert "differ from" in capsys.readouterr().err


# ---- pieces with known answers ----------------------------------------------------------------

def test_latency_stats_match_numpy_percentiles():
    stats = latency_stats(list(range(1, 101)))
    assert stats == {"mean": 50.5, "p50": 50.5, "p90": 90.1, "p99": 99.01, "min": 1.0, "max": 100.0}


def test_depthwise_convolutions_are_counted_at_their_true_cost():
    depthwise = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
    dense = torch.nn.Conv2d(32, 32, 3, padding=1, bias=False)
    # 2 x (one 3x3 window per output value) x 32 channels x 10 x 10 outputs
    assert model_gflops(depthwise.eval(), 10, 10, channels=32) * 1e9 == pytest.approx(2 * 9 * 32 * 100)
    assert model_gflops(dense.eval(), 10, 10, channels=32) * 1e9 == pytest.approx(2 * 9 * 32 * 32 * 100)


def test_deeplabv3_mobilenet_flops_match_torchvisions_table():
    from torchvision.models.segmentation import DeepLabV3_MobileNet_V3_Large_Weights

    from edgeseg.models.zoo import build_model

    model = build_model(DEFAULT_ARCH, num_classes=21, aux_loss=False).eval()
    # torchvision documents 10.452 "GFLOPS" at 520x520, counting multiply-accumulates (ours / 2).
    documented = DeepLabV3_MobileNet_V3_Large_Weights.DEFAULT.meta["_ops"]
    assert model_gflops(model, 520, 520) / 2 == pytest.approx(documented, rel=0.01)


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert")
def test_peer_row_reproduces_the_published_score(tmp_path, shared_data: Path, voc_sample: Path):
    """Google's DeepLabV3 TFLite on voc-sample val: 51.0 +- 1.0 mIoU (PROVENANCE.md, same metric)."""
    out = tmp_path / "peer"
    assert bench(["--peer", "--peer-data", str(voc_sample), "--runs", "3", "--warmup", "1", "--out", str(out)]) == 0
    (row,) = json.loads((out / BENCH_RESULTS).read_text())["rows"]
    assert row["status"] == "ok", row.get("reason")
    assert row["model"]["peer"] and row["host_proxy"]
    assert row["accuracy"]["images"] == 22
    assert row["accuracy"]["miou"] == pytest.approx(51.0, abs=1.0)
    assert row["peer_check"]["agrees"]
    assert row["cost"]["gflops"] > 0


@pytest.mark.slow
def test_aspp_compare_runs_each_cell_with_and_without_the_rewrite(tmp_path, sample_checkpoint: Path,
                                                                  synthetic_voc: Path, cache: Path):
    """At 128 px all three dilated ASPP branches see an 8x8 map, so the rewrite applies: fewer FLOPs,
    the same accuracy, and the report puts the pair side by side."""
    out = tmp_path / "aspp"
    assert bench(["--weights", str(sample_checkpoint), "--data", str(synthetic_voc), "--targets", HOST_CPU,
                  "--resolutions", QUICK_RESOLUTION, "--quick", "--runs", "2", "--aspp-compare",
                  "--cache", str(cache), "--out", str(out)]) == 0
    rows = json.loads((out / BENCH_RESULTS).read_text())["rows"]
    by_variant = {r["variant"]: r for r in rows}
    assert set(by_variant) == {"aspp-rewrite", "no-aspp-rewrite"} and len(rows) == 2
    on, off = by_variant["aspp-rewrite"], by_variant["no-aspp-rewrite"]
    assert on["status"] == off["status"] == "ok"
    assert load_manifest(on["artifact"]["manifest"]).data["conversion"]["aspp_rewrite"]["applied"] is True
    assert load_manifest(off["artifact"]["manifest"]).data["conversion"]["aspp_rewrite"]["applied"] is False
    assert on["cost"]["gflops"] < off["cost"]["gflops"]
    assert on["accuracy"]["miou"] == pytest.approx(off["accuracy"]["miou"], abs=1e-3)
    report = (out / BENCH_REPORT).read_text()
    assert "with and without (`--aspp-compare`)" in report
    line = next(x for x in report.splitlines()
                if x.startswith("| deeplabv3_mobilenet_v3_large | host-cpu | 128 | fp32 |"))
    assert f"{on['cost']['gflops']:.2f} / {off['cost']['gflops']:.2f}" in line
