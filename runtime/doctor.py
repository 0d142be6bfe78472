"""`edgeseg doctor`: what this machine can convert and run, and why not.

Every probe catches what a package can throw on import (a missing shared library, a wheel built
for another numpy), so a broken package is reported, never fatal. The device-side engines are
imported to probe them; the conversion stack (torch, onnx, litert-torch) is only looked up in the
installed distributions, because importing it costs seconds and says nothing more about a device.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
import sys
from pathlib import Path
from typing import Any

import edgeseg
from edgeseg.conventions import RUNTIME_MIN_PYTHON
from edgeseg.formats import ArtifactFormat, all_formats, load_module
from edgeseg.optional import not_installed
from edgeseg.packages import OPENCV
from edgeseg.runtime.probing import broken_or_missing, distribution_version, package_line
from edgeseg.targets import TargetProfile, all_targets

# The format whose conversion stack decides "conversion available" (every conversion starts with its ONNX).
BASE_FORMAT = "onnx"


def convert_needs(fmt: ArtifactFormat) -> dict[str, str | None]:
    """Distribution -> extra, for what converting to `fmt` needs (its verification runs through its engine too)."""
    return {p.distribution: p.extra for p in fmt.convert_packages}


def probe_modules() -> list[str]:
    """The doctor probe modules of the formats that have one, in registry order."""
    return [f.probe for f in all_formats().values() if f.probe is not None]


# --------------------------------------------------------------------------- probes

def install_profile() -> dict[str, Any]:
    """edgeseg's version, location and the extras whose packages are all installed."""
    location = str(Path(edgeseg.__file__).parent)
    try:
        requirements = importlib.metadata.requires("edgeseg") or []
    except importlib.metadata.PackageNotFoundError:
        return {"version": edgeseg.__version__, "location": location, "extras": None}
    extras: dict[str, list[str]] = {}
    for requirement in requirements:
        match = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if match:
            extras.setdefault(match.group(1), []).append(requirement.split(";")[0].strip())

    def installed(requirement: str) -> bool:
        self_reference = re.fullmatch(r"edgeseg\[([^\]]+)\]", requirement)
        if self_reference:  # `all = edgeseg[convert,tflite,...]`
            return all(all(installed(r) for r in extras.get(e.strip(), [])) for e in self_reference.group(1).split(","))
        return distribution_version(re.split(r"[\s<>=!~\[]", requirement, maxsplit=1)[0]) is not None

    return {"version": edgeseg.__version__, "location": location,
            "extras": sorted(e for e, names in extras.items() if all(installed(n) for n in names))}


def opencv_info() -> dict[str, Any]:
    from edgeseg.errors import MissingPackageError, PackageConflictError
    from edgeseg.optional import install_hint
    from edgeseg.system_packages import import_opencv

    try:
        cv2 = import_opencv()
    except MissingPackageError:
        return {"status": "missing", "hint": f"{install_hint(OPENCV.extra)}, or use JetPack's OpenCV on a Jetson"}
    except PackageConflictError as exc:  # a pip numpy shadowing the system's: the line says which and what to do
        return {"status": "broken", "error": str(exc), "conflict": True}
    from edgeseg.runtime.gstreamer import video_io_backends

    return {"status": "ok", "version": cv2.__version__, "file": cv2.__file__, **video_io_backends()}


def jetpack_of_l4t(release_line: str) -> tuple[str | None, str | None]:
    """("36.4.0", "6.1") from /etc/nv_tegra_release's "# R36 (release), REVISION: 4.0, ..."; None where unknown.

    L4T 35.2-35.6 are JetPack 5.1.x, 36.2-36.3 JetPack 6.0, 36.4.0-36.4.2 JetPack 6.1, 36.4.3+ JetPack 6.2."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", release_line)
    if not match:
        return None, None
    major, minor, patch = (int(g) for g in match.groups())
    l4t = f"{major}.{minor}.{patch}"
    if major == 35 and minor >= 2:
        return l4t, "5.1"
    if major == 36 and minor in (2, 3):
        return l4t, "6.0"
    if major == 36 and minor == 4:
        return l4t, "6.1" if patch < 3 else "6.2"
    return l4t, None


def jetson_info(release_file: Path = Path("/etc/nv_tegra_release"),
                model_file: Path = Path("/proc/device-tree/model")) -> dict[str, Any] | None:
    """The board model, L4T release and JetPack release on a Jetson (None elsewhere)."""
    if not release_file.is_file():
        return None
    first_line = (release_file.read_text(errors="replace").splitlines() or [""])[0]
    l4t, jetpack = jetpack_of_l4t(first_line)
    return {"model": model_file.read_text(errors="replace").strip("\x00\n ") if model_file.is_file() else None,
            "l4t": l4t or first_line.lstrip("# ").strip(), "jetpack": jetpack}


def conversion_info() -> dict[str, Any]:
    """The conversion stack by installed distribution (not imported: see the module docstring)."""
    names = sorted({n for fmt in all_formats().values() for n in convert_needs(fmt)})
    return {name: distribution_version(name) for name in names}


# --------------------------------------------------------------------------- verdicts

def _python_ok() -> bool:
    return sys.version_info[:2] >= RUNTIME_MIN_PYTHON


def target_verdict(target: TargetProfile, report: dict[str, Any]) -> dict[str, Any]:
    """{"convert": (ok, why), "run": (ok, why), "notes": [...]} for one target profile on this machine."""
    missing = [p for p in all_formats()[target.format].convert_packages if not report["conversion"].get(p.distribution)]
    convert = (not missing, "can convert" if not missing else
               "cannot convert, because " + ", ".join(not_installed(p) for p in missing))
    run = _run_verdict(target, report)
    notes = []
    if target.tensorrt is not None:
        for r in target.tensorrt.jetpack:
            if not r.runtime_supported:
                notes.append(f"JetPack {r.release} ships Python {r.python} and TensorRT {r.tensorrt}: "
                             "the edgeseg runtime "
                             f"needs Python >= {'.'.join(map(str, RUNTIME_MIN_PYTHON))}, so there the bundle's trtexec "
                             "script builds the engine and trtexec runs it")
    return {"convert": {"ok": convert[0], "why": convert[1]}, "run": {"ok": run[0], "why": run[1]}, "notes": notes}


def _run_verdict(target: TargetProfile, report: dict[str, Any]) -> tuple[bool, str]:
    if report["opencv"]["status"] != "ok":
        return False, "cannot run, because " + broken_or_missing(report["opencv"], "OpenCV", OPENCV)
    fmt = all_formats()[target.format]
    if fmt.probe is None:
        return False, f"cannot run, because this edgeseg has no probe for backend {target.backend}"
    return load_module(fmt.probe).run_verdict(target, report)


def diagnose() -> dict[str, Any]:
    """Everything `edgeseg doctor` reports, as a JSON-ready dict."""
    report: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "edgeseg_runtime_supported": _python_ok()},
        "platform": {"system": platform.system(), "machine": platform.machine(), "jetson": jetson_info()},
        "edgeseg": install_profile(),
        "opencv": opencv_info(),
    }
    for probe in probe_modules():
        report.update(load_module(probe).probe())
    report["conversion"] = conversion_info()
    report["conversion_available"] = all(report["conversion"].get(n)
                                         for n in convert_needs(all_formats()[BASE_FORMAT]))
    report["targets"] = {name: target_verdict(t, report) for name, t in all_targets().items()}
    return report


# --------------------------------------------------------------------------- text

def format_report(report: dict[str, Any]) -> str:
    """The report as text, one line per fact."""
    py, es, cv = report["python"], report["edgeseg"], report["opencv"]
    extras = (", ".join(es["extras"]) if es["extras"] else
              "none" if es["extras"] is not None else "unknown (not installed)")
    lines = [f"python        {py['version']} ({py['executable']})"
             + ("" if py["edgeseg_runtime_supported"] else "  -- the edgeseg runtime needs Python >= 3.10"),
             f"platform      {report['platform']['system']} {report['platform']['machine']}",
             f"edgeseg       {es['version']} at {es['location']}; installed extras: {extras}"]
    jetson = report["platform"]["jetson"]
    if jetson:
        lines.append(f"jetson        {jetson['model']}, L4T {jetson['l4t']}, JetPack {jetson['jetpack'] or 'unknown'}")
    video = f" ({cv.get('file')}); GStreamer {_yes(cv.get('gstreamer'))}, V4L2 {_yes(cv.get('v4l2'))}, " \
            f"FFmpeg {_yes(cv.get('ffmpeg'))}" if cv["status"] == "ok" else ""
    lines.append(package_line("opencv", cv, video))
    for probe in probe_modules():
        lines.extend(load_module(probe).report_lines(report))
    conv = report["conversion"]
    lines.append(f"{'conversion':13} " + ("available: " if report["conversion_available"] else "not available: ")
                 + ", ".join(f"{n} {v or 'missing'}" for n, v in conv.items()))
    lines.append("targets")
    notes: dict[str, list[str]] = {}
    for name, verdict in report["targets"].items():
        lines.append(f"  {name:17} {verdict['convert']['why']}; {verdict['run']['why']}")
        for note in verdict["notes"]:
            notes.setdefault(note, []).append(name)
    lines.extend(f"note ({', '.join(names)}): {note}" for note, names in notes.items())
    return "\n".join(lines)


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="what this machine can convert and run, and why not",
        description="Report Python, the edgeseg install (its extras), OpenCV and its capture back-ends (GStreamer, "
                    "V4L2, FFmpeg), ONNX Runtime and its providers, LiteRT and its delegates, TensorRT, the GPU and "
                    "DLA cores, pycuda, and whether the conversion stack is installed; then, for every target "
                    "profile, whether this machine can convert for it and run it, and why not. A missing or "
                    "broken package is reported, never fatal.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    import json

    report = diagnose()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
