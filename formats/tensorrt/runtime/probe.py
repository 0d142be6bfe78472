"""What `edgeseg doctor` asks about TensorRT: real TensorRT or only its stubs, the DLA cores, pycuda and the
GPU it sees, and whether a Jetson target can build and run its engine here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from edgeseg.formats.tensorrt import PYCUDA, TENSORRT
from edgeseg.optional import not_installed
from edgeseg.runtime.probing import distribution_version, error_line, package_line, probe_import, public
from edgeseg.targets import TargetProfile


def probe() -> dict[str, dict[str, Any]]:
    """doctor's `tensorrt` and `cuda` entries."""
    return {"tensorrt": tensorrt_info(), "cuda": cuda_info()}


def tensorrt_info() -> dict[str, Any]:
    """Real TensorRT, only its type stubs (tensorrt-stubs makes `import tensorrt` succeed, empty), or none."""
    try:
        spec = importlib.util.find_spec(TENSORRT.module)
    except (ImportError, ValueError) as exc:
        return {"status": "broken", "error": error_line(exc)}
    if spec is None:
        return {"status": "missing"}
    if spec.origin is None:  # a namespace package: a folder without __init__.py, e.g. tensorrt-stubs' .pyi
        stubs = [p for p in (spec.submodule_search_locations or []) if (Path(p) / "__init__.pyi").is_file()]
        where = stubs[0] if stubs else spec.submodule_search_locations
        return {"status": "stubs-only", "detail": f"only type stubs at {where}"}
    probe = probe_import(TENSORRT.module)
    if probe["status"] != "ok":
        return public(probe)
    trt = probe["module"]
    if not hasattr(trt, "Builder"):
        return {"status": "broken", "error": f"{spec.origin} has no Builder: not NVIDIA's TensorRT"}
    info: dict[str, Any] = {"status": "ok", "version": getattr(trt, "__version__", "?"), "file": spec.origin}
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        info["dla_cores"] = int(builder.num_DLA_cores)
    except Exception as exc:  # noqa: BLE001 - no GPU, driver mismatch: reported, not fatal
        info["builder_error"] = error_line(exc)
    return info


def cuda_info() -> dict[str, Any]:
    """pycuda and the GPU it sees (name, compute capability)."""
    probe = probe_import(f"{PYCUDA.module}.driver")
    if probe["status"] != "ok":
        return public(probe)
    cuda = probe["module"]
    info: dict[str, Any] = {"status": "ok", "version": distribution_version(PYCUDA.distribution)}
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            return {**info, "gpu": None, "gpu_error": "the CUDA driver found no GPU"}
        device = cuda.Device(0)
        major, minor = device.compute_capability()
        info["gpu"] = {"name": device.name(), "compute_capability": f"{major}.{minor}"}
    except Exception as exc:  # noqa: BLE001 - pycuda.driver.Error and friends
        info.update(gpu=None, gpu_error=error_line(exc))
    return info


def run_verdict(target: TargetProfile, report: dict[str, Any]) -> tuple[bool, str]:
    trt, cuda = report["tensorrt"], report["cuda"]
    if trt["status"] != "ok":
        why = {"missing": "TensorRT is not installed (it comes with JetPack; use a --system-site-packages venv)",
               "stubs-only": "TensorRT is only type stubs here (tensorrt-stubs), not NVIDIA's TensorRT",
               }.get(trt["status"], f"TensorRT is installed but broken ({trt.get('error')})")
        return False, "cannot run, because " + why
    if cuda["status"] != "ok":
        why = not_installed(PYCUDA) if cuda["status"] == "missing" else \
            f"{PYCUDA.distribution} is broken ({cuda['error']})"
        return False, f"cannot run, because {why}"
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


def report_lines(report: dict[str, Any]) -> list[str]:
    trt = report["tensorrt"]
    dla = (f"; DLA cores {trt['dla_cores']}" if "dla_cores" in trt else
           f"; builder: {trt['builder_error']}" if "builder_error" in trt else "")
    cuda = report["cuda"]
    gpu = cuda.get("gpu")
    gpu_text = f"; GPU {gpu['name']}, compute capability {gpu['compute_capability']}" if gpu else \
        (f"; no GPU ({cuda['gpu_error']})" if cuda.get("gpu_error") else "")
    return [package_line("tensorrt", trt, dla), package_line("pycuda", cuda, gpu_text)]
