"""The roofline column: a CPU row against the CPU's measured matmul peak; never a GPU row; nothing
without a peak (a device install has no torch to measure it), and each empty cell says why."""

from __future__ import annotations

import builtins
import json

import pytest

from edgeseg.benchmarks.flops import artifact_gflops, cost_entry, cost_on_final_peak
from edgeseg.benchmarks.machine import matmul_peak_gflops
from edgeseg.manifest import Manifest

PEAK = {"gflops_per_s": 50.0, "method": "torch.mm float32 1024x1024, best of 10", "threads": 2}
NO_PEAK = {"gflops_per_s": None, "method": None, "threads": 2, "reason": "torch is not installed (...)"}


def _row(backend: str, p50_ms: float = 20.0) -> dict:
    return {"backend": backend, "artifact": {"size_mb": 3.5}, "latency": {"inference_ms": {"p50": p50_ms}}}


def test_a_cpu_row_is_a_fraction_of_the_cpu_peak():
    cost = cost_entry(_row("onnxruntime"), 2.0, "manifest", PEAK)
    assert cost["achieved_gflops_per_s"] == 100.0  # 2 GFLOPs in 20 ms
    assert cost["roofline_fraction"] == 2.0 and "roofline_note" not in cost
    assert cost_on_final_peak(cost, _row("onnxruntime"), {**PEAK, "gflops_per_s": 200.0})["roofline_fraction"] == 0.5


def test_a_gpu_row_is_never_divided_by_the_cpu_peak():
    cost = cost_entry(_row("tensorrt", 2.0), 2.0, "manifest", PEAK)
    assert cost["achieved_gflops_per_s"] == 1000.0
    assert cost["roofline_fraction"] is None
    assert cost["roofline_note"].startswith("runs on the GPU; the measured matmul peak is this machine's CPU's")
    assert cost_on_final_peak(cost, _row("tensorrt", 2.0), PEAK)["roofline_fraction"] is None


def test_without_a_peak_the_row_keeps_its_work_and_says_why_it_has_no_fraction():
    cost = cost_entry(_row("litert"), 2.0, "graph", NO_PEAK)
    assert cost["gflops"] == 2.0 and cost["achieved_gflops_per_s"] == 100.0
    assert cost["roofline_fraction"] is None and cost["roofline_note"] == "no matmul peak: torch is not installed (...)"


def test_the_peak_without_torch_is_none_with_the_reason(monkeypatch):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    peak = matmul_peak_gflops(1)
    assert peak["gflops_per_s"] is None and "pip install 'edgeseg[convert]'" in peak["reason"]


@pytest.mark.parametrize(("record", "expected"), [
    ({"applied": True, "flops_before": 4e9, "flops_after": 3e9},
     (3.0, "ASPP rewrite's count of the exported model (manifest)")),
    ({"applied": False, "flops_before": 4e9, "flops_after": 4e9},
     (4.0, "convolution count recorded at conversion (manifest)")),
    ({"applied": False, "reason": "disabled (--no-aspp-rewrite)"}, (None, None)),
])
def test_an_onnx_artifacts_work_comes_from_its_manifest_without_torch(tmp_path, record, expected):
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    path = tmp_path / "m.onnx.json"
    path.write_text(json.dumps({"artifact": "m.onnx", "conversion": {"aspp_rewrite": record}}))
    manifest = Manifest(path=path, data=json.loads(path.read_text()))
    assert artifact_gflops(manifest, None) == expected
