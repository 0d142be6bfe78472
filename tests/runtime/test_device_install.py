"""The device install runs the device commands without the workstation stack.

A fresh virtual environment gets only the base install plus the device engines
(`edgeseg[onnxruntime,litert,openvino]`), built from a copy of this source tree the way pip installs it on
a board; torch, torchvision, onnx, matplotlib and Pillow must not be importable there. The
artifacts it runs are made here, by the full install. pip's cache makes a rerun quick.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeseg.cli import main
from tests.constants import ANDROID_CPU, BENCH_REPORT, BENCH_RESULTS, TINY_RESOLUTION

pytestmark = pytest.mark.slow

WORKSTATION_ONLY = ("torch", "torchvision", "onnx", "matplotlib", "PIL")


# `device_venv` (conftest.py, one per session): the device install, shared with tests/benchmarks/test_bench_device.py.


def _run(argv: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, synthetic_voc, host_cpu_onnx_on_scenes: Path) -> dict[str, Path]:
    """A host-cpu ONNX (the one the system-OpenCV install runs: tests/runtime/conftest.py) and an android-cpu
    TFLite model at 64 px, made by this (full) install."""
    pytest.importorskip("litert_torch", reason="the TFLite artifact needs the full install ('edgeseg[all]')")
    out = tmp_path_factory.mktemp("tflite")
    assert main(["convert", "--target", ANDROID_CPU, "--resolution", TINY_RESOLUTION, "--verify-images", "2",
                 "--verify-data", str(synthetic_voc), "--out", str(out)]) == 0
    (tflite,) = out.glob("*.tflite")
    return {"onnx": host_cpu_onnx_on_scenes, "tflite": tflite}


@pytest.fixture(scope="module")
def image_folder(synthetic_voc, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for path in sorted((synthetic_voc / "JPEGImages").glob("*.jpg"))[:4]:
        shutil.copy2(path, folder / path.name)
    return folder


def test_the_workstation_stack_is_not_importable_there(device_venv):
    for module in WORKSTATION_ONLY:
        probe = _run([device_venv["python"], "-c", f"import {module}"], device_venv["env"])
        assert probe.returncode != 0 and f"No module named '{module}'" in probe.stderr, module


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_demo_and_info_run_there(device_venv, artifacts, image_folder, tmp_path, kind):
    edgeseg, env = device_venv["edgeseg"], device_venv["env"]
    demo = _run([edgeseg, "demo", "--model", str(artifacts[kind]), "--source", str(image_folder), "--headless",
                 "--max-frames", "4", "--threads", "1", "--save-frames", str(tmp_path / "frames")], env)
    assert demo.returncode == 0, demo.stderr
    assert len(list((tmp_path / "frames").iterdir())) == 4
    info = _run([edgeseg, "info", str(artifacts[kind])], env)
    assert info.returncode == 0 and str(artifacts[kind].name) in info.stdout, info.stderr


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_bench_artifacts_runs_there(device_venv, artifacts, synthetic_voc, tmp_path, kind):
    bench = _run([device_venv["edgeseg"], "bench", "--artifacts", str(artifacts[kind]), "--data", str(synthetic_voc),
                  "--images", "2", "--runs", "3", "--warmup", "1", "--threads", "1", "--no-progress",
                  "--out", str(tmp_path / "bench")], device_venv["env"])
    assert bench.returncode == 0, bench.stdout + bench.stderr
    results = json.loads((tmp_path / "bench" / BENCH_RESULTS).read_text())
    (row,) = results["rows"]
    assert row["status"] == "ok", row
    assert 0 <= row["accuracy"]["miou"] <= 100 and row["latency"]["inference_ms"]["p50"] > 0
    # no torch: no PyTorch reference and no matmul peak, each said; the work is still counted from the artifact
    assert row["reference_note"].startswith("torch is not installed")
    assert results["machine"]["matmul_peak"]["gflops_per_s"] is None
    assert row["cost"]["roofline_fraction"] is None and row["cost"]["roofline_note"].startswith("no matmul peak: torch")
    assert row["cost"]["gflops"] > 0 and row["cost"]["achieved_gflops_per_s"] > 0
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == ["report.md", "results.csv", "results.json"]
    report = (tmp_path / "bench" / BENCH_REPORT).read_text()
    assert "No pictures: matplotlib is not installed (pip install 'edgeseg[bench]')" in report


def test_targets_and_build_engine_run_there(device_venv, artifacts):
    edgeseg, env = device_venv["edgeseg"], device_venv["env"]
    targets = _run([edgeseg, "targets"], env)
    assert targets.returncode == 0 and "jetson-orin-nx" in targets.stdout, targets.stderr
    # no TensorRT here: one line saying what is missing (or that an ONNX model is no bundle), never a traceback
    build = _run([edgeseg, "build-engine", str(artifacts["onnx"])], env)
    assert build.returncode == 2 and build.stderr.startswith("edgeseg build-engine: error: "), build.stderr
    assert len(build.stderr.strip().splitlines()) == 1 and "torch" not in build.stderr.replace("tensorrt", "")


def test_convert_there_says_in_one_line_which_extra_it_needs(device_venv, tmp_path):
    convert = _run([device_venv["edgeseg"], "convert", "--resolution", TINY_RESOLUTION, "--out", str(tmp_path)],
                   device_venv["env"])
    assert convert.returncode == 2
    assert convert.stderr == ("edgeseg convert: error: this command needs 'torch', which is not installed here: "
                              "pip install 'edgeseg[convert]'\n")
    assert list(tmp_path.iterdir()) == []


def test_doctor_there_says_it_runs_but_cannot_convert(device_venv):
    doctor = _run([device_venv["edgeseg"], "doctor", "--json"], device_venv["env"])
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert not report["conversion_available"]
    assert report["edgeseg"]["extras"] == ["litert", "onnxruntime", "opencv", "openvino"]
    for target in ("host-cpu", "android-cpu", "intel-cpu"):
        assert report["targets"][target]["run"]["ok"], report["targets"][target]
        assert report["targets"][target]["convert"]["why"].startswith("cannot convert, because torch is not installed")
    assert report["opencv"]["version"] == _run([device_venv["python"], "-c", "import cv2; print(cv2.__version__)"],
                                               device_venv["env"]).stdout.strip()


@pytest.fixture(scope="module")
def openvino_artifact(tmp_path_factory, synthetic_voc) -> Path:
    """An intel-cpu OpenVINO IR at 64 px, made by this (full) install."""
    pytest.importorskip("openvino", reason="the OpenVINO artifact needs the full install ('edgeseg[all]')")
    out = tmp_path_factory.mktemp("openvino")
    assert main(["convert", "--target", "intel-cpu", "--resolution", TINY_RESOLUTION, "--verify-images", "2",
                 "--verify-data", str(synthetic_voc), "--out", str(out)]) == 0
    (xml,) = out.glob("*.xml")
    return xml


def test_predict_and_info_run_an_openvino_ir_there(device_venv, openvino_artifact, image_folder, tmp_path):
    edgeseg, env = device_venv["edgeseg"], device_venv["env"]
    predict = _run([edgeseg, "predict", "--model", str(openvino_artifact), "--source", str(image_folder),
                    "--out", str(tmp_path / "predicted"), "--threads", "1", "--no-progress"], env)
    assert predict.returncode == 0, predict.stdout + predict.stderr
    assert len(list((tmp_path / "predicted" / "masks").glob("*.png"))) == 4
    info = _run([edgeseg, "info", str(openvino_artifact)], env)
    assert info.returncode == 0 and "OpenVINO IR rt_info" in info.stdout, info.stderr
    assert "agrees with the manifest" in info.stdout
