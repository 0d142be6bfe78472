"""`edgeseg doctor`: what this machine can convert and run, and why not.

Every probe catches what a package can throw on import (a missing shared library, a wheel built
for another numpy), so a broken package is reported, never fatal. The device-side engines are
imported to probe them; the conversion stack (torch, onnx, litert-torch) is only looked up in the
installed distributions, because importing it costs seconds and says nothing more about a device.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import platform
import re
import sys
from pathlib import Path
from typing import Any

import edgeseg
from edgeseg.runtime.backends.openvino import probe as openvino_probe
from edgeseg.targets import RUNTIME_MIN_PYTHON, TargetProfile, all_targets, engine_floor_problem

# Distributions a target's conversion needs (its verification runs through ONNX Runtime or LiteRT too).
CONVERT_NEEDS = {
    "onnx": ("torch", "torchvision", "onnx", "onnxruntime"),
    "tensorrt-bundle": ("torch", "torchvision", "onnx", "onnxruntime"),
    "tflite": ("torch", "torchvision", "litert-torch", "ai-edge-quantizer", "ai-edge-litert"),
    "openvino": ("torch", "torchvision", "onnx", "openvino", "nncf"),
}
EXTRA_OF = {"torch": "convert", "torchvision": "convert", "onnx": "convert", "onnxruntime": "onnxruntime",
            "litert-torch": "tflite", "ai-edge-quantizer": "tflite", "ai-edge-litert": "litert",
            "openvino": "openvino", "nncf": "openvino-convert"}


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}".rstrip(": ")


def probe_import(module: str) -> dict[str, Any]:
    """{"status": "ok"|"missing"|"broken", "module"?: the module, "error"?: one line}."""
    try:
        return {"status": "ok", "module": importlib.import_module(module)}
    except ImportError as exc:
        if getattr(exc, "name", None) in (module, module.split(".")[0]):
            return {"status": "missing"}
        return {"status": "broken", "error": _error_line(exc)}
    except Exception as exc:  # noqa: BLE001 - a broken package may raise anything on import
        return {"status": "broken", "error": _error_line(exc)}


def distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "module"}


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
    from edgeseg.system_packages import import_opencv

    try:
        cv2 = import_opencv()
    except MissingPackageError:
        return {"status": "missing", "hint": "pip install 'edgeseg[opencv]', or use JetPack's OpenCV on a Jetson"}
    except PackageConflictError as exc:  # a pip numpy shadowing the system's: the line says which and what to do
        return {"status": "broken", "error": str(exc), "conflict": True}
    from edgeseg.runtime.gstreamer import video_io_backends

    return {"status": "ok", "version": cv2.__version__, "file": cv2.__file__, **video_io_backends()}


def onnxruntime_info() -> dict[str, Any]:
    probe = probe_import("onnxruntime")
    if probe["status"] != "ok":
        return _public(probe)
    ort = probe["module"]
    return {"status": "ok", "version": ort.__version__, "providers": list(ort.get_available_providers())}


def litert_info() -> dict[str, Any]:
    for module, distribution in (("ai_edge_litert.interpreter", "ai-edge-litert"),
                                 ("tflite_runtime.interpreter", "tflite-runtime")):
        probe = probe_import(module)
        if probe["status"] == "missing":
            continue
        if probe["status"] == "broken":
            return {"status": "broken", "package": distribution, "error": probe["error"]}
        return {"status": "ok", "package": distribution, "version": distribution_version(distribution),
                "delegates": _litert_delegates(probe["module"])}
    return {"status": "missing"}


def _litert_delegates(interpreter_module: Any) -> dict[str, str]:
    """XNNPACK is in the interpreter's default op resolver; a GPU delegate is a shared library (looked up, not
    loaded: a failed load_delegate leaves a half-made object that complains when collected)."""
    import ctypes.util

    found = ctypes.util.find_library("tensorflowlite_gpu_delegate")
    return {"xnnpack": "built in (CPU)",
            "gpu": f"{found} found" if found else "no GPU delegate library here (a phone's comes with the Android app)"}


def tensorrt_info() -> dict[str, Any]:
    """Real TensorRT, only its type stubs (tensorrt-stubs makes `import tensorrt` succeed, empty), or none."""
    try:
        spec = importlib.util.find_spec("tensorrt")
    except (ImportError, ValueError) as exc:
        return {"status": "broken", "error": _error_line(exc)}
    if spec is None:
        return {"status": "missing"}
    if spec.origin is None:  # a namespace package: a folder without __init__.py, e.g. tensorrt-stubs' .pyi
        stubs = [p for p in (spec.submodule_search_locations or []) if (Path(p) / "__init__.pyi").is_file()]
        where = stubs[0] if stubs else spec.submodule_search_locations
        return {"status": "stubs-only", "detail": f"only type stubs at {where}"}
    probe = probe_import("tensorrt")
    if probe["status"] != "ok":
        return _public(probe)
    trt = probe["module"]
    if not hasattr(trt, "Builder"):
        return {"status": "broken", "error": f"{spec.origin} has no Builder: not NVIDIA's TensorRT"}
    info: dict[str, Any] = {"status": "ok", "version": getattr(trt, "__version__", "?"), "file": spec.origin}
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        info["dla_cores"] = int(builder.num_DLA_cores)
    except Exception as exc:  # noqa: BLE001 - no GPU, driver mismatch: reported, not fatal
        info["builder_error"] = _error_line(exc)
    return info


def cuda_info() -> dict[str, Any]:
    """pycuda and the GPU it sees (name, compute capability)."""
    probe = probe_import("pycuda.driver")
    if probe["status"] != "ok":
        return _public(probe)
    cuda = probe["module"]
    info: dict[str, Any] = {"status": "ok", "version": distribution_version("pycuda")}
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            return {**info, "gpu": None, "gpu_error": "the CUDA driver found no GPU"}
        device = cuda.Device(0)
        major, minor = device.compute_capability()
        info["gpu"] = {"name": device.name(), "compute_capability": f"{major}.{minor}"}
    except Exception as exc:  # noqa: BLE001 - pycuda.driver.Error and friends
        info.update(gpu=None, gpu_error=_error_line(exc))
    return info


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
    names = sorted({n for needs in CONVERT_NEEDS.values() for n in needs})
    return {name: distribution_version(name) for name in names}


# --------------------------------------------------------------------------- verdicts

def _python_ok() -> bool:
    return sys.version_info[:2] >= RUNTIME_MIN_PYTHON


def target_verdict(target: TargetProfile, report: dict[str, Any]) -> dict[str, Any]:
    """{"convert": (ok, why), "run": (ok, why), "notes": [...]} for one target profile on this machine."""
    missing = [n for n in CONVERT_NEEDS[target.format] if not report["conversion"].get(n)]
    convert = (not missing, "can convert" if not missing else
               "cannot convert, because "
               + ", ".join(f"{n} is not installed (edgeseg[{EXTRA_OF[n]}])" for n in missing))
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
    def broken_or_missing(entry: dict[str, Any], what: str, extra: str) -> str:
        if entry.get("conflict"):  # a long line of its own: said once, on the opencv line
            return f"{what} does not import (the {what.lower()} line above says which package shadows which)"
        if entry["status"] == "broken":
            return f"{what} is installed but broken ({entry['error']})"
        if entry["status"] == "stubs-only":
            return f"{what} is only type stubs here (tensorrt-stubs), not NVIDIA's TensorRT"
        return f"{what} is not installed ({extra})"

    if report["opencv"]["status"] != "ok":
        return False, "cannot run, because " + broken_or_missing(report["opencv"], "OpenCV", "edgeseg[opencv]")
    if target.backend == "onnxruntime":
        ort = report["onnxruntime"]
        if ort["status"] != "ok":
            return False, "cannot run, because " + broken_or_missing(ort, "onnxruntime", "edgeseg[onnxruntime]")
        too_old = engine_floor_problem(target.format, ort.get("version"))
        return (False, f"cannot run, because {too_old}") if too_old else \
            (True, "can run (ONNX Runtime, CPUExecutionProvider)")
    if target.backend == "litert":
        lite = report["litert"]
        if lite["status"] != "ok":
            return False, "cannot run, because " + broken_or_missing(lite, "ai-edge-litert", "edgeseg[litert]")
        if lite.get("package") == "ai-edge-litert" and (too_old := engine_floor_problem(target.format,
                                                                                        lite.get("version"))):
            return False, f"cannot run, because {too_old}"
        where = "on this CPU as a stand-in for the phone" if target.host_proxy else "with LiteRT"
        return True, f"can run {where} ({lite['package']} {lite['version']}, XNNPACK)"
    if target.backend == "tensorrt":
        return _tensorrt_verdict(target, report)
    if target.backend == "openvino":
        from edgeseg.runtime.backends.openvino import run_verdict

        return run_verdict(target, report["openvino"], broken_or_missing)
    return False, f"cannot run, because this edgeseg has no probe for backend {target.backend}"


def _tensorrt_verdict(target: TargetProfile, report: dict[str, Any]) -> tuple[bool, str]:
    trt, cuda = report["tensorrt"], report["cuda"]
    if trt["status"] != "ok":
        why = {"missing": "TensorRT is not installed (it comes with JetPack; use a --system-site-packages venv)",
               "stubs-only": "TensorRT is only type stubs here (tensorrt-stubs), not NVIDIA's TensorRT",
               }.get(trt["status"], f"TensorRT is installed but broken ({trt.get('error')})")
        return False, "cannot run, because " + why
    if cuda["status"] != "ok":
        return False, "cannot run, because pycuda is " + (
            "not installed (pip install 'edgeseg[jetson]')" if cuda["status"] == "missing"
            else f"broken ({cuda['error']})")
    if not cuda.get("gpu"):
        return False, f"cannot run, because no GPU is usable ({cuda.get('gpu_error')})"
    version = ".".join(str(trt["version"]).split(".")[:2])
    shipped = ", ".join(f"JetPack {r.release}: {r.tensorrt}" for r in target.tensorrt_options().jetpack)
    gpu = cuda["gpu"]
    if version not in target.tensorrt_options().versions:
        return True, (f"can build and run engines on {gpu['name']} with TensorRT {trt['version']}, which is not one of "
                      f"this board's JetPack releases ({shipped}): engines are bound to the GPU and TensorRT "
                      "that build them")
    return True, (f"can build and run engines on {gpu['name']} (compute {gpu['compute_capability']}), "
                  f"TensorRT {trt['version']}")


def diagnose() -> dict[str, Any]:
    """Everything `edgeseg doctor` reports, as a JSON-ready dict."""
    report: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "edgeseg_runtime_supported": _python_ok()},
        "platform": {"system": platform.system(), "machine": platform.machine(), "jetson": jetson_info()},
        "edgeseg": install_profile(),
        "opencv": opencv_info(), "onnxruntime": onnxruntime_info(), "litert": litert_info(),
        "openvino": openvino_probe(),
        "tensorrt": tensorrt_info(), "cuda": cuda_info(), "conversion": conversion_info(),
    }
    report["conversion_available"] = all(report["conversion"].get(n) for n in CONVERT_NEEDS["onnx"])
    report["targets"] = {name: target_verdict(t, report) for name, t in all_targets().items()}
    return report


# --------------------------------------------------------------------------- text

def _package_line(name: str, entry: dict[str, Any], detail: str = "") -> str:
    status = entry["status"]
    if status == "ok":
        return f"{name:13} {entry.get('version') or '?'}{detail}"
    if status == "broken":
        return f"{name:13} BROKEN: {entry['error']}"
    if status == "stubs-only":
        return f"{name:13} not installed ({entry['detail']}; import works but is empty)"
    return f"{name:13} not installed"


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
    lines.append(_package_line("opencv", cv, video))
    ort = report["onnxruntime"]
    lines.append(_package_line("onnxruntime", ort, f"; providers {', '.join(ort.get('providers', []))}"))
    lite = report["litert"]
    delegates = "; ".join(f"{k}: {v}" for k, v in lite.get("delegates", {}).items())
    lines.append(_package_line("litert", lite, f" ({lite.get('package')}); delegates {delegates}"))
    ov = report["openvino"]
    lines.append(_package_line("openvino", ov, f"; devices {', '.join(ov.get('devices', []))}") + ov["bf16_text"])
    trt = report["tensorrt"]
    dla = (f"; DLA cores {trt['dla_cores']}" if "dla_cores" in trt else
           f"; builder: {trt['builder_error']}" if "builder_error" in trt else "")
    lines.append(_package_line("tensorrt", trt, dla))
    cuda = report["cuda"]
    gpu = cuda.get("gpu")
    gpu_text = f"; GPU {gpu['name']}, compute capability {gpu['compute_capability']}" if gpu else \
        (f"; no GPU ({cuda['gpu_error']})" if cuda.get("gpu_error") else "")
    lines.append(_package_line("pycuda", cuda, gpu_text))
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
