"""The device install on the system's OpenCV, as on a Jetson: Debian's python3-opencv (GStreamer, built
against Debian's numpy 1.x) seen through a `--system-site-packages` venv installed as docs/jetson.md says.

The venv runs the camera path through real GStreamer (a `gst://` pipeline, and `csi://0` with the test
source in place of the Jetson's camera elements), the quick bench without Pillow, and a pip numpy 2
shadowing the system's: one line naming both, from every command and from doctor. The arm64 side of the
same checks is tests/arm64/run_checks.py (qemu-user; a developer runs it, docs/jetson.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.errors import SourceError
from edgeseg.runtime.gstreamer import NEWEST_FRAME_APPSINK, csi_pipeline, raw_pipeline
from edgeseg.system_packages import shadowing_line
from tests.constants import BENCH_RESULTS
from tests.device_kit import copy_source_tree, venv_env

SYSTEM_PYTHON = Path("/usr/bin/python3")
DEMO_FRAMES = 60
GST_SOURCE = ("gst://videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=240,framerate=30/1 ! "
              "videoconvert ! video/x-raw,format=BGR ! appsink")


def test_a_gst_pipeline_must_end_in_an_appsink_and_gets_the_newest_frame_settings():
    assert raw_pipeline("gst://videotestsrc ! videoconvert ! appsink") == \
        f"videotestsrc ! videoconvert ! {NEWEST_FRAME_APPSINK}"
    assert raw_pipeline("gst://videotestsrc ! appsink max-buffers=4") == "videotestsrc ! appsink max-buffers=4"
    with pytest.raises(SourceError, match=r"gst://videotestsrc ! autovideosink: a gst:// pipeline must end in an "
                                          r"appsink .*not 'autovideosink'"):
        raw_pipeline("gst://videotestsrc ! autovideosink")
    with pytest.raises(SourceError, match=r"expected gst://PIPELINE"):
        raw_pipeline("gst://  ")


def test_the_csi_stand_in_swaps_only_the_jetson_elements():
    jetson = csi_pipeline(1, 1280, 720, 30)
    stand_in = csi_pipeline(1, 1280, 720, 30, stand_in=True)
    swapped = (jetson.replace("nvarguscamerasrc sensor-id=1", "videotestsrc is-live=true pattern=ball")
               .replace("video/x-raw(memory:NVMM)", "video/x-raw").replace("nvvidconv", "videoconvert"))
    assert stand_in == swapped
    assert "memory:NVMM" in jetson and "nvvidconv" in jetson and stand_in.endswith(NEWEST_FRAME_APPSINK)


def _fake_numpy(folder: Path, version: str, *, egg: bool) -> Path:
    folder.mkdir(parents=True)
    meta = folder / (f"numpy-{version}.egg-info" if egg else f"numpy-{version}.dist-info")
    meta.mkdir()
    (meta / ("PKG-INFO" if egg else "METADATA")).write_text(f"Metadata-Version: 2.1\nName: numpy\nVersion: {version}\n")
    return folder


def test_the_shadowing_line_names_both_numpys_and_the_opencv(tmp_path, monkeypatch):
    venv = _fake_numpy(tmp_path / "venv" / "site-packages", "2.2.6", egg=False)
    system = _fake_numpy(tmp_path / "dist-packages", "1.24.2", egg=True)
    monkeypatch.setattr(sys, "path", [str(venv), str(system)])
    line = shadowing_line(str(system / "cv2.cpython-311-aarch64-linux-gnu.so"), "ImportError: numpy.core.multiarray")
    assert line is not None and line.startswith(f"OpenCV ({system}/cv2.cpython-311-aarch64-linux-gnu.so) was built "
                                                f"for numpy 1.x, but numpy 2.2.6 in {venv} shadows the system's numpy "
                                                f"1.24.2 ({system})")
    assert "docs/jetson.md" in line
    # one numpy, or two of one major version: not a shadowing problem
    monkeypatch.setattr(sys, "path", [str(system)])
    assert shadowing_line(str(system / "cv2.so"), "x") is None


def _system_opencv_with_gstreamer() -> str | None:
    """Why the system-OpenCV checks cannot run here, or None when they can."""
    if not SYSTEM_PYTHON.exists():
        return f"no {SYSTEM_PYTHON}"
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import cv2; print(cv2.getBuildInformation())"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "the system Python has no OpenCV (apt-get install python3-opencv)"
    if not any(line.split(":")[0].strip() == "GStreamer" and "YES" in line for line in probe.stdout.splitlines()):
        return "the system OpenCV has no GStreamer"
    if not shutil.which("gst-inspect-1.0"):
        return "GStreamer's tools are not installed (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good)"
    return None


needs_system_opencv = pytest.mark.skipif(_system_opencv_with_gstreamer() is not None,
                                         reason=f"{_system_opencv_with_gstreamer()}: .ci/run installs Debian's "
                                                "python3-opencv and GStreamer")


def _run(argv: list[str], env: dict[str, str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


@pytest.fixture(scope="module")
def system_venv(tmp_path_factory) -> dict:
    """The docs' install (docs/jetson.md) on Debian's Python: --system-site-packages, the system numpy's
    major version as a constraint, the CPU engines; x86's base install brings pip's OpenCV, removed so
    Debian's is imported."""
    root = tmp_path_factory.mktemp("system-opencv")
    source = copy_source_tree(root / "src")
    venv = root / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = venv_env(venv)
    python = str(venv / "bin" / "python")
    # docs/jetson.md's line, as a user types it
    keep = _run([python, "-c", 'import numpy; print("numpy<%d" % (int(numpy.__version__.split(".")[0]) + 1))'], env)
    (venv / "keep-numpy.txt").write_text(keep.stdout)
    system_numpy = _run([python, "-c", "import numpy; print(numpy.__version__)"], env).stdout.strip()
    install = _run([python, "-m", "pip", "install", "--quiet", "--progress-bar", "off", "-c",
                    str(venv / "keep-numpy.txt"), f"{source}[onnxruntime,litert]"], env)
    assert install.returncode == 0, install.stdout + install.stderr
    _run([python, "-m", "pip", "uninstall", "--quiet", "-y", "opencv-python"], env)
    return {"python": python, "edgeseg": str(venv / "bin" / "edgeseg"), "env": env, "source": source,
            "numpy": system_numpy}


@pytest.fixture(scope="module")
def small_onnx(host_cpu_onnx_on_scenes: Path) -> Path:
    """The host-cpu ONNX at 64 px the device installs share (tests/runtime/conftest.py)."""
    return host_cpu_onnx_on_scenes


@pytest.mark.slow
@needs_system_opencv
def test_the_docs_install_keeps_the_system_numpy_and_opencv(system_venv):
    doctor = _run([system_venv["edgeseg"], "doctor", "--json"], system_venv["env"])
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["opencv"]["status"] == "ok" and report["opencv"]["gstreamer"], report["opencv"]
    assert report["opencv"]["file"].startswith("/usr/lib/python3/dist-packages/")
    numpy = _run([system_venv["python"], "-c", "import numpy; print(numpy.__version__, numpy.__file__)"],
                 system_venv["env"]).stdout.split()
    assert numpy[0] == system_venv["numpy"] and numpy[1].startswith("/usr/lib/python3/")  # the system's, kept
    for target in ("host-cpu", "android-cpu"):
        assert report["targets"][target]["run"]["ok"], report["targets"][target]


@pytest.mark.slow
@needs_system_opencv
@pytest.mark.parametrize(("name", "source", "stand_in"), [("gst", GST_SOURCE, ""), ("csi", "csi://0", "1")])
def test_a_live_gstreamer_source_delivers_60_frames_to_a_saved_video(system_venv, small_onnx, tmp_path, name,
                                                                      source, stand_in):
    video = tmp_path / f"{name}.mp4"
    env = {**system_venv["env"], "EDGESEG_CSI_STAND_IN": stand_in}
    demo = _run([system_venv["edgeseg"], "demo", "--model", str(small_onnx), "--source", source, "--headless",
                 "--save", str(video), "--max-frames", str(DEMO_FRAMES), "--threads", "1"], env)
    assert demo.returncode == 0, demo.stderr
    assert f"demo: {DEMO_FRAMES} frames from {source}" in demo.stdout, demo.stdout
    width, height = (320, 240) if name == "gst" else (1280, 720)
    assert f"wrote {video} ({DEMO_FRAMES} frames, {width}x{height}, 30 fps" in demo.stdout, demo.stdout
    # a live source: what the model had no time for is dropped, and every frame read is accounted for
    read = int(demo.stdout.split("source frames ")[1].split(",")[0])
    dropped = int(demo.stdout.split("dropped by capture ")[1].split()[0])
    assert read >= DEMO_FRAMES and DEMO_FRAMES + dropped <= read <= DEMO_FRAMES + dropped + 2, demo.stdout
    count = _run([system_venv["python"], "-c", "import cv2, sys\nc = cv2.VideoCapture(sys.argv[1]); n = 0\n"
                  "while c.read()[0]: n += 1\nprint(n, int(c.get(cv2.CAP_PROP_FRAME_WIDTH)))", str(video)],
                 system_venv["env"])
    assert count.stdout.split() == [str(DEMO_FRAMES), str(width)], count.stdout + count.stderr


@pytest.mark.slow
@needs_system_opencv
def test_the_quick_bench_runs_without_pillow(system_venv, small_onnx, tmp_path):
    assert _run([system_venv["python"], "-c", "import PIL"], system_venv["env"]).returncode != 0
    bench = _run([system_venv["edgeseg"], "bench", "--artifacts", str(small_onnx), "--quick", "--threads", "1",
                  "--no-progress", "--out", str(tmp_path / "bench")], system_venv["env"])
    assert bench.returncode == 0, bench.stdout + bench.stderr
    (row,) = json.loads((tmp_path / "bench" / BENCH_RESULTS).read_text())["rows"]
    assert row["status"] == "ok" and 0 <= row["accuracy"]["miou"] <= 100, row


@pytest.mark.slow
@needs_system_opencv
def test_a_pip_numpy_that_shadows_the_systems_is_one_line_from_every_command(system_venv, small_onnx, tmp_path):
    venv = tmp_path / "shadowed"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = venv_env(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--progress-bar", "off"]
    assert _run([*pip, "--no-deps", str(system_venv["source"])], env).returncode == 0
    assert _run([*pip, "numpy>=2", "pyyaml", "tqdm"], env).returncode == 0
    edgeseg = str(venv / "bin" / "edgeseg")
    for argv in (["predict", "--model", str(small_onnx), "--source", str(tmp_path), "--out", str(tmp_path / "p")],
                 ["demo", "--model", str(small_onnx), "--source", GST_SOURCE, "--headless"],
                 ["bench", "--artifacts", str(small_onnx), "--quick", "--out", str(tmp_path / "b")]):
        done = _run([edgeseg, *argv], env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"edgeseg {argv[0]}: error: OpenCV (/usr/lib/python3/dist-packages/cv2"), \
            done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "shadows the system's numpy 1." in done.stderr
    assert not (tmp_path / "p").exists() and not (tmp_path / "b").exists()
    doctor = _run([edgeseg, "doctor"], env)
    assert doctor.returncode == 0 and "Traceback" not in doctor.stdout + doctor.stderr, doctor.stderr
    opencv_line = next(line for line in doctor.stdout.splitlines() if line.startswith("opencv"))
    assert "BROKEN: OpenCV (/usr/lib/python3/dist-packages/cv2" in opencv_line and "shadows" in opencv_line
    assert "host-cpu          " in doctor.stdout and "OpenCV does not import (the opencv line above" in doctor.stdout
