"""`edgeseg doctor`: reports what is installed, broken or missing, and never crashes on it."""

from __future__ import annotations

import json
import sys

import pytest

from edgeseg.cli import main
from edgeseg.runtime import doctor
from edgeseg.targets import all_targets


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """Plant packages on sys.path (name -> {file: text}); imports see them instead of the installed ones."""
    def plant(name: str, files: dict[str, str]) -> None:
        folder = tmp_path / name
        folder.mkdir()
        for file, text in files.items():
            (folder / file).write_text(text)
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, module)

    monkeypatch.syspath_prepend(str(tmp_path))
    return plant


def test_json_report_has_every_section_and_every_target(capsys):
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"python", "edgeseg", "opencv", "onnxruntime", "litert", "tensorrt", "cuda", "conversion",
                           "conversion_available", "targets"}
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert set(report["targets"]) == set(all_targets())
    import cv2

    assert report["opencv"]["version"] == cv2.__version__ and report["opencv"]["file"] == cv2.__file__
    # this machine (CI too) has ONNX Runtime and no NVIDIA TensorRT
    assert report["targets"]["host-cpu"]["run"] == {"ok": True, "why": "can run (ONNX Runtime, CPUExecutionProvider)"}
    assert report["tensorrt"]["status"] in ("missing", "stubs-only")
    assert not report["targets"]["jetson-orin-nx"]["run"]["ok"]


def test_text_report_has_a_line_per_target(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in all_targets():
        assert any(line.strip().startswith(name + " ") and "convert" in line and "run" in line
                   for line in out.splitlines()), name
    assert ("note (jetson-agx-orin, jetson-orin-nano, jetson-orin-nx, jetson-xavier-nx): "
            "JetPack 5.1 ships Python 3.8") in out


def test_tensorrt_stubs_alone_are_not_tensorrt(planted):
    planted("tensorrt", {"__init__.pyi": "def __getattr__(name: str): ...\n"})
    from edgeseg.formats.tensorrt.runtime import probe as tensorrt_probe

    info = tensorrt_probe.tensorrt_info()
    assert info["status"] == "stubs-only" and "only type stubs" in info["detail"]
    verdict = doctor.target_verdict(all_targets()["jetson-orin-nano"], doctor.diagnose())
    assert verdict["run"] == {"ok": False, "why": "cannot run, because TensorRT is only type stubs here "
                                                  "(tensorrt-stubs), not NVIDIA's TensorRT"}


def test_a_package_that_raises_on_import_is_reported_not_fatal(planted, capsys):
    planted("tensorrt", {"__init__.py": "raise OSError('libnvinfer.so.10: cannot open shared object file')\n"})
    planted("onnxruntime", {"__init__.py": "raise RuntimeError('built for another numpy')\n"})
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tensorrt"] == {"status": "broken",
                                  "error": "OSError: libnvinfer.so.10: cannot open shared object file"}
    assert report["onnxruntime"] == {"status": "broken", "error": "RuntimeError: built for another numpy"}
    assert report["targets"]["host-cpu"]["run"]["why"] == (
        "cannot run, because onnxruntime is installed but broken (RuntimeError: built for another numpy)")
    jetson_run = report["targets"]["jetson-agx-orin"]["run"]["why"]
    assert "TensorRT is installed but broken (OSError: libnvinfer.so.10" in jetson_run


def test_missing_engines_and_conversion_stack_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError, as when not installed
    real_version = doctor.distribution_version
    monkeypatch.setattr(doctor, "distribution_version",
                        lambda name: None if name in ("torch", "litert-torch") else real_version(name))
    report = doctor.diagnose()
    assert report["onnxruntime"] == {"status": "missing"}
    assert not report["conversion_available"]
    host = report["targets"]["host-cpu"]
    assert host["run"]["why"] == ("cannot run, because onnxruntime is not installed "
                                  "(pip install 'edgeseg[onnxruntime]')")
    assert host["convert"]["why"] == "cannot convert, because torch is not installed (pip install 'edgeseg[convert]')"
    assert report["targets"]["android-cpu"]["convert"]["why"] == (
        "cannot convert, because torch is not installed (pip install 'edgeseg[convert]'), "
        "litert-torch is not installed (pip install 'edgeseg[tflite]')")


def test_a_jetson_release_without_the_runtimes_python_is_said_plainly():
    notes = doctor.target_verdict(all_targets()["jetson-xavier-nx"], doctor.diagnose())["notes"]
    assert notes == [("JetPack 5.1 ships Python 3.8 and TensorRT 8.5: the edgeseg runtime needs Python >= 3.10, so "
                      "there the bundle's trtexec script builds the engine and trtexec runs it")]


def test_install_profile_lists_only_complete_extras(monkeypatch):
    real_version = doctor.distribution_version
    monkeypatch.setattr(doctor, "distribution_version",
                        lambda name: None if name == "matplotlib" else real_version(name))
    extras = doctor.install_profile()["extras"]
    assert extras is not None and "bench" not in extras and "all" not in extras
    assert "jetson" not in extras  # pycuda is not installed here


@pytest.mark.parametrize(("line", "expected"), [
    ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 2025",
     ("36.4.3", "6.2")),
    ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64", ("36.4.0", "6.1")),
    ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64", ("36.3.0", "6.0")),
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64", ("35.4.1", "5.1")),
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64", ("32.7.1", None)),
    ("garbage", (None, None)),
])
def test_jetpack_release_from_l4t(line, expected):
    assert doctor.jetpack_of_l4t(line) == expected


def test_jetson_info_reads_the_board_files(tmp_path):
    (tmp_path / "release").write_text("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64\n")
    (tmp_path / "model").write_text("NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert doctor.jetson_info(tmp_path / "release", tmp_path / "model") == {
        "model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.4.0", "jetpack": "6.1"}
    assert doctor.jetson_info(tmp_path / "absent", tmp_path / "model") is None


@pytest.mark.parametrize(("version", "expected"), [("1.23.2", (1, 23, 2)), ("1.32.0+cu12", (1, 32, 0)),
                                                   ("2.3.0rc1", (2, 3, 0)), ("1.4", (1, 4))])
def test_engine_versions_compare_by_their_numbers(version, expected):
    from edgeseg.targets import version_tuple

    assert version_tuple(version) == expected


def test_an_engine_older_than_the_verified_floor_cannot_run(monkeypatch):
    from edgeseg.formats import all_formats
    from edgeseg.formats.onnx import runtime as onnx_runtime
    from edgeseg.targets import engine_floor_problem

    onnx = all_formats()["onnx"]
    assert (onnx.engine_package, onnx.engine_min_version) == ("onnxruntime", "1.23.2")
    assert engine_floor_problem("onnx", "1.23.2") is None and engine_floor_problem("onnx", "1.32.0") is None
    assert engine_floor_problem("onnx", "1.16.3") == (
        "onnxruntime 1.16.3 is older than 1.23.2, the oldest release onnx artifacts are verified to load with the "
        "same masks (pip install 'onnxruntime>=1.23.2')")
    real = onnx_runtime.probe
    monkeypatch.setattr(onnx_runtime, "probe", lambda: {"onnxruntime": {**real()["onnxruntime"], "version": "1.16.3"}})
    verdict = doctor.diagnose()["targets"]["host-cpu"]["run"]
    assert not verdict["ok"] and verdict["why"].startswith("cannot run, because onnxruntime 1.16.3 is older than")


def test_the_manifest_records_the_engine_floor_of_its_format():
    from edgeseg.convert.pipeline import _engine_floor

    assert _engine_floor("tflite") == {"min_engine": {"package": "ai-edge-litert", "version": "1.4.0"}}
    assert _engine_floor("tensorrt-bundle") == {}
