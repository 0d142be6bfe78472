"""Run the device checks in the arm64 root and in an x86 venv on Debian's OpenCV, and compare their masks.

    sudo .venv/bin/python tests/arm64/run_checks.py            # after: sudo bash tests/arm64/build-env.sh
    sudo .venv/bin/python tests/arm64/run_checks.py --env x86  # the x86 side alone (no arm64 root needed)

1. Converts, here on the workstation, the artifacts a phone or a board runs: host-cpu FP32 and INT8 ONNX,
   android-cpu FP32, FP16, INT8 and INT8 with the uint8 input (`-u8in`) TFLite (kept between runs).
2. x86: a `--system-site-packages` venv on Debian's python3 and python3-opencv, installed as
   docs/jetson.md says (the system numpy's major version as a constraint), pip's OpenCV removed so Debian's (with
   GStreamer) is the one imported; `device_checks.py` runs there.
3. arm64: the artifacts and images are copied into the root; `device_checks.py` runs in the docs'
   venv (/root/edgeseg), and `predict` alone in the venv of the oldest engines (/root/edgeseg-oldest).
4. The masks of each artifact are compared pixel by pixel with the x86 masks (agreement, and mIoU with
   the x86 masks as the reference), and everything is printed as Markdown (--report writes it too).
Latency under qemu-user is 10-30x a device's: nothing here is a speed number.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, run as a script
from source_layout import copy_source_tree  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path("/var/cache/edgeseg")
ROOT = Path(__import__("os").environ.get("EDGESEG_ARM64_ROOT", CACHE / "arm64-bookworm"))
X86_VENV = CACHE / "x86-debian-opencv"
VOC = REPO.parent / "shared" / "data" / "voc-sample"
RESOLUTION = "320"
# (target, precision, extra options): what the issue names, converted once and kept in CACHE/artifacts.
ARTIFACTS = (
    ("host-cpu", "fp32", ()), ("host-cpu", "int8", ("--calib", "synthetic:64")),
    ("android-cpu", "fp32", ()), ("android-cpu", "fp16", ()), ("android-cpu", "int8", ("--calib", "synthetic:64")),
    ("android-cpu", "int8", ("--calib", "synthetic:64", "--fuse-preprocessing")),
)
X86_PACKAGES = ("python3-venv", "python3-opencv", "gstreamer1.0-tools", "gstreamer1.0-plugins-base",
                "gstreamer1.0-plugins-good")


def step(message: str) -> None:
    print(f"== {message}", flush=True)


def sh(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kwargs)


def convert_artifacts(out: Path) -> list[Path]:
    edgeseg = str(Path(sys.executable).with_name("edgeseg"))
    for target, precision, extra in ARTIFACTS:
        step(f"convert {target} {precision} {' '.join(extra)}")
        sh([edgeseg, "convert", "--target", target, "--precision", precision, "--resolution", RESOLUTION,
            "--out", str(out), *extra], stdout=subprocess.DEVNULL)
    return sorted(p for p in out.iterdir() if p.suffix in (".onnx", ".tflite"))


def copy_source(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    copy_source_tree(dest)


def x86_venv() -> Path:
    """Debian's python3 + python3-opencv, edgeseg installed the docs' way; pip's OpenCV removed."""
    missing = [p for p in X86_PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        raise SystemExit(f"run_checks: the x86 side needs Debian's {' '.join(missing)}: "
                         f"apt-get install {' '.join(missing)}")
    source = CACHE / "x86-src"
    copy_source(source)
    if not (X86_VENV / "bin" / "python").exists():
        sh(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(X86_VENV)])
    python = str(X86_VENV / "bin" / "python")
    major = sh([python, "-c", "import numpy; print(numpy.__version__.split('.')[0])"], capture_output=True,
               text=True).stdout.strip()
    (X86_VENV / "keep-numpy.txt").write_text(f"numpy<{int(major) + 1}\n")
    sh([python, "-m", "pip", "install", "--quiet", "--progress-bar", "off", "-c", str(X86_VENV / "keep-numpy.txt"),
        "--force-reinstall", "--no-deps", str(source)])
    sh([python, "-m", "pip", "install", "--quiet", "--progress-bar", "off", "-c", str(X86_VENV / "keep-numpy.txt"),
        f"{source}[onnxruntime,litert]"])
    # The base install brings pip's OpenCV on x86 (no GStreamer); Debian's is the one under test.
    sh([python, "-m", "pip", "uninstall", "--quiet", "-y", "opencv-python"])
    return X86_VENV


def device_checks(python: list[str], edgeseg: str, artifacts: str, images: str, out: str, skip: str = "") -> None:
    argv = [*python, "--edgeseg", edgeseg, "--artifacts", artifacts, "--images", images, "--out", out]
    sh(argv + (["--skip", skip] if skip else []))


def in_root(*argv: str) -> list[str]:
    return ["bash", str(HERE / "in-root.sh"), *argv]


def masks(folder: Path) -> dict[str, np.ndarray]:
    from edgeseg.palette_png import read_class_ids_png

    return {p.stem: read_class_ids_png(p) for p in sorted((folder / "masks").glob("*.png"))}


def compare(reference: Path, other: Path) -> dict:
    """Pixel agreement of `other`'s masks with `reference`'s, and mIoU with the reference as ground truth."""
    from edgeseg.metrics import ConfusionMatrix

    ref, got = masks(reference), masks(other)
    if not got or not set(got) <= set(ref):  # `other` may have predicted a subset of the images
        return {"images": len(got), "error": f"{len(ref)} reference masks, {len(got)} masks, names differ"}
    ref = {name: ref[name] for name in got}
    classes = int(max(max(m.max() for m in ref.values()), max(m.max() for m in got.values()))) + 1
    confusion = ConfusionMatrix(classes)
    same = total = 0
    for name, r in ref.items():
        same += int((r == got[name]).sum())
        total += r.size
        confusion.update(r, got[name])
    return {"images": len(ref), "agreement": same / total, "miou_vs_x86": confusion.compute().miou}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=("both", "x86", "arm64", "none"), default="both",
                        help="where to run the checks (none: only print the report of the last runs)")
    parser.add_argument("--work", type=Path, default=CACHE / "device-checks", help="artifacts and outputs")
    parser.add_argument("--reconvert", action="store_true", help="convert the artifacts again")
    parser.add_argument("--report", type=Path, help="also write the Markdown summary here")
    parser.add_argument("--arm64-images", type=int, default=24,
                        help="VOC images predicted in the arm64 root, the first N by name (default: %(default)s; "
                             "qemu-user takes 5-20 s an image; x86 predicts all 48)")
    parser.add_argument("--skip", default="",
                        help="comma-separated checks to leave out in the arm64 root: predict,bench,demo (a quicker "
                             "pass over a changed tree; the default runs everything)")
    parser.add_argument("--oldest-images", type=int, default=12,
                        help="the same for the venv of the oldest engines (default: %(default)s)")
    args = parser.parse_args()
    if not (VOC / "JPEGImages").is_dir():
        raise SystemExit(f"run_checks: {VOC} is missing (../shared/data, see PROVENANCE.md)")
    started = time.perf_counter()
    artifacts_dir = args.work / "artifacts"
    if args.env != "none" and (args.reconvert or not any(artifacts_dir.glob("*.json"))):
        shutil.rmtree(artifacts_dir, ignore_errors=True)
        artifacts_dir.mkdir(parents=True)
        convert_artifacts(artifacts_dir)
    artifacts = sorted(p.name for p in artifacts_dir.iterdir() if p.suffix in (".onnx", ".tflite"))
    images = str(VOC / "JPEGImages")
    x86_out = args.work / "x86"
    if args.env in ("both", "x86"):
        step("x86 venv on Debian's OpenCV")
        venv = x86_venv()
        step("device checks on x86 (Debian's OpenCV)")
        device_checks([str(venv / "bin" / "python"), str(HERE / "device_checks.py")], str(venv / "bin" / "edgeseg"),
                      str(artifacts_dir), images, str(x86_out))
    arm_out = args.work / "arm64"
    oldest_out = args.work / "arm64-oldest"
    if args.env in ("both", "arm64"):
        if not (ROOT / "root" / "edgeseg" / "bin" / "edgeseg").exists():
            raise SystemExit(f"run_checks: no arm64 environment at {ROOT}: build it with "
                             "sudo bash tests/arm64/build-env.sh")
        step("copy artifacts, images and the checks into the arm64 root")
        run_dir = ROOT / "opt" / "edgeseg-run"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(artifacts_dir, run_dir / "artifacts")
        names = sorted(p.name for p in (VOC / "JPEGImages").glob("*.jpg"))
        for folder, count in (("images", args.arm64_images), ("images-oldest", args.oldest_images)):
            (run_dir / folder).mkdir(parents=True)
            for name in names[:count]:
                shutil.copy2(VOC / "JPEGImages" / name, run_dir / folder / name)
        shutil.copy2(HERE / "device_checks.py", run_dir / "device_checks.py")
        step("device checks in the arm64 root (qemu-user: slow)")
        device_checks(in_root("/root/edgeseg/bin/python", "/opt/edgeseg-run/device_checks.py"),
                      "/root/edgeseg/bin/edgeseg", "/opt/edgeseg-run/artifacts", "/opt/edgeseg-run/images",
                      "/opt/edgeseg-run/out", skip=args.skip)
        step("predict with the oldest engines in the arm64 root")
        device_checks(in_root("/root/edgeseg-oldest/bin/python", "/opt/edgeseg-run/device_checks.py"),
                      "/root/edgeseg-oldest/bin/edgeseg", "/opt/edgeseg-run/artifacts",
                      "/opt/edgeseg-run/images-oldest", "/opt/edgeseg-run/out-oldest", skip="bench,demo")
        for name, out in (("out", arm_out), ("out-oldest", oldest_out)):
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(run_dir / name, out)
    report = markdown(args.work, artifacts, x86_out, arm_out, oldest_out, time.perf_counter() - started)
    print(report)
    if args.report:
        args.report.write_text(report)
    return 0


def _summary(out: Path) -> dict | None:
    path = out / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def markdown(work: Path, artifacts: list[str], x86_out: Path, arm_out: Path, oldest_out: Path, seconds: float) -> str:
    lines = [f"Device checks ({time.strftime('%Y-%m-%d')}, {seconds / 60:.1f} min, `tests/arm64/run_checks.py`)", ""]
    for title, out in (("x86, Debian's OpenCV", x86_out), ("arm64 (qemu-user)", arm_out),
                       ("arm64, oldest engines", oldest_out)):
        s = _summary(out)
        if s is None:
            continue
        doctor = s.get("doctor", {})
        cv = doctor.get("opencv", {})
        lines += [f"**{title}**: uname -m {s['uname_m']}, Python {s['python']}, numpy {s['numpy'].split()[0]}, "
                  f"OpenCV {cv.get('version')} ({cv.get('file')}, GStreamer {cv.get('gstreamer')}), "
                  f"onnxruntime {doctor.get('onnxruntime')}, LiteRT {doctor.get('litert')}; "
                  f"workstation packages importable: "
                  f"{[k for k, v in s['workstation_imports'].items() if v] or 'none'}; "
                  f"doctor: runs {', '.join(doctor.get('runnable_targets', [])) or 'nothing'}"]
        info = s.get("info", {})
        lines.append(f"  - targets: exit {s.get('targets_returncode')}; info on {len(info)} artifacts: "
                     f"{sum(1 for i in info.values() if i['returncode'] == 0 and i['agrees'])} exit 0 and agree "
                     "with their manifests")
        for name, p in s.get("predict", {}).items():
            if p["returncode"]:
                lines.append(f"  - predict {name}: exit {p['returncode']}: {p['stderr_tail'].strip()[-300:]}")
        if "bench" in s:
            b = s["bench"]
            emulated = (b.get("machine") or {}).get("emulation")
            lines.append(f"  - bench --artifacts --quick: exit {b['returncode']}, rows "
                         f"{[r['status'] for r in b.get('rows', [])]}, latency marked emulated: {bool(emulated)}")
        for name, d in s.get("demo", {}).items():
            lines.append(f"  - demo {name}: exit {d['returncode']}, {d['frames_saved']} frames in the saved video")
        lines.append("")
    lines += ["| artifact | arm64 vs x86: images | agreement | mIoU vs x86 | oldest engines vs x86: images | agreement "
              "| mIoU vs x86 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in artifacts:
        stem = Path(name).stem
        cells = []
        for out in (arm_out, oldest_out):
            if not (out / "predict" / stem).is_dir() or not (x86_out / "predict" / stem).is_dir():
                cells += ["–", "–", "–"]
                continue
            c = compare(x86_out / "predict" / stem, out / "predict" / stem)
            cells += ([str(c["images"]), f"{c['agreement']:.5f}", f"{c['miou_vs_x86']:.2f}"] if "agreement" in c
                      else [str(c["images"]), c["error"], ""])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
