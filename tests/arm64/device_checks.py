"""The device checks, run inside a device install (the arm64 root, or an x86 venv on the system's OpenCV).

Uses only what a device has: the standard library, the system's numpy and OpenCV, and the `edgeseg`
command of the venv it is given. Writes `summary.json` (and the outputs it read) under --out:

    python device_checks.py --edgeseg /root/edgeseg/bin/edgeseg --artifacts DIR --images DIR --out DIR

- the machine: `uname -m`, and that no workstation package (torch, torchvision, onnx, Pillow,
  matplotlib) imports in the venv; `edgeseg targets`, and `edgeseg info` on every artifact;
- `edgeseg doctor --json`: the platform, OpenCV (file, GStreamer), numpy, the engines and what can run;
- `edgeseg predict` with every artifact in --artifacts on the images (masks kept for the comparison);
- `edgeseg bench --artifacts ... --quick` (its machine block says whether the latency is emulated);
- `edgeseg demo --headless --save` from a gst:// pipeline and from csi://0 with the test source in place
  of the Jetson's camera elements, 60 frames each, the saved videos' frames counted with OpenCV.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

WORKSTATION_ONLY = ("torch", "torchvision", "onnx", "PIL", "matplotlib")
DEMO_FRAMES = 60
GST_PIPELINE = ("gst://videotestsrc is-live=true pattern=smpte ! video/x-raw,width=640,height=480,framerate=30/1 "
                "! videoconvert ! video/x-raw,format=BGR ! appsink")


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> dict:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    return {"argv": argv, "returncode": done.returncode, "seconds": round(time.perf_counter() - started, 1),
            "stdout_tail": done.stdout[-3000:], "stderr_tail": done.stderr[-3000:]}


def frames_in(video: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edgeseg", required=True, help="the edgeseg command of the device venv")
    parser.add_argument("--artifacts", required=True, type=Path, help="folder of converted artifacts + manifests")
    parser.add_argument("--images", required=True, type=Path, help="folder of images for predict")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: predict,bench,demo")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    python = str(Path(args.edgeseg).with_name("python"))
    summary: dict = {"uname_m": platform.machine(), "python": sys.version.split()[0]}

    summary["workstation_imports"] = {
        name: run([python, "-c", f"import {name}"])["returncode"] == 0 for name in WORKSTATION_ONLY}
    doctor = subprocess.run([args.edgeseg, "doctor", "--json"], capture_output=True, text=True, check=False)
    summary["doctor_returncode"] = doctor.returncode
    try:
        report = json.loads(doctor.stdout)
        summary["doctor"] = {
            "machine": report["platform"]["machine"], "opencv": report["opencv"],
            "onnxruntime": report["onnxruntime"].get("version"), "litert": report["litert"].get("version"),
            "runnable_targets": sorted(t for t, v in report["targets"].items() if v["run"]["ok"]),
        }
    except (ValueError, KeyError):
        summary["doctor"] = {"stdout_tail": doctor.stdout[-3000:], "stderr_tail": doctor.stderr[-3000:]}
    summary["numpy"] = run([python, "-c", "import numpy; print(numpy.__version__, numpy.__file__)"])["stdout_tail"]
    summary["targets_returncode"] = run([args.edgeseg, "targets"])["returncode"]

    artifacts = sorted(p for p in args.artifacts.iterdir() if p.suffix in (".onnx", ".tflite")
                       and p.with_name(p.name + ".json").is_file())
    summary["info"] = {}
    for artifact in artifacts:  # the metadata each artifact carries, and whether it agrees with its manifest
        result = run([args.edgeseg, "info", str(artifact)])
        summary["info"][artifact.name] = {"returncode": result["returncode"],
                                          "agrees": "agrees with the manifest" in result["stdout_tail"],
                                          "disagrees": "DISAGREES" in result["stdout_tail"].upper()}
    if "predict" not in skip:
        import shutil

        shutil.rmtree(args.out / "predict", ignore_errors=True)
        summary["predict"] = {}
        for artifact in artifacts:
            out = args.out / "predict" / artifact.stem
            result = run([args.edgeseg, "predict", "--model", str(artifact), "--source", str(args.images),
                          "--out", str(out), "--no-progress"])
            summary["predict"][artifact.name] = {k: result[k] for k in ("returncode", "seconds", "stderr_tail")}
            print(f"predict {artifact.name}: exit {result['returncode']} in {result['seconds']} s", flush=True)
    if "bench" not in skip:
        bench_out = args.out / "bench"
        result = run([args.edgeseg, "bench", "--artifacts", *map(str, artifacts), "--quick", "--no-progress",
                      "--out", str(bench_out)])
        summary["bench"] = {k: result[k] for k in ("returncode", "seconds", "stdout_tail", "stderr_tail")}
        if (bench_out / "results.json").is_file():
            results = json.loads((bench_out / "results.json").read_text())
            summary["bench"]["machine"] = results["machine"]
            summary["bench"]["rows"] = [{k: r.get(k) for k in ("id", "status", "target", "precision")}
                                        for r in results["rows"]]
        print(f"bench --quick: exit {result['returncode']} in {result['seconds']} s", flush=True)
    if "demo" not in skip:
        # The demo checks the capture path, not the model: the fastest ONNX keeps 60 emulated frames to minutes.
        onnx = min((a for a in artifacts if a.suffix == ".onnx"), key=lambda a: ("int8" not in a.name, a.name))
        summary["demo"] = {}
        for name, source, extra_env in (("gst", GST_PIPELINE, {}), ("csi", "csi://0", {"EDGESEG_CSI_STAND_IN": "1"})):
            video = args.out / f"demo-{name}.mp4"
            video.unlink(missing_ok=True)
            result = run([args.edgeseg, "demo", "--model", str(onnx), "--source", source, "--headless",
                          "--save", str(video), "--max-frames", str(DEMO_FRAMES), "--first-frame-timeout", "120"],
                         env={**os.environ, **extra_env})
            summary["demo"][name] = {k: result[k] for k in ("returncode", "seconds", "stdout_tail", "stderr_tail")}
            summary["demo"][name]["frames_saved"] = frames_in(video) if video.is_file() else 0
            print(f"demo {name}: exit {result['returncode']}, {summary['demo'][name]['frames_saved']} frames saved",
                  flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
