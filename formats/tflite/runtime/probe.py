"""What `edgeseg doctor` asks about LiteRT: which interpreter imports, its version and delegates, and
whether a LiteRT target can run here."""

from __future__ import annotations

from typing import Any

from edgeseg.formats.tflite import INTERPRETERS, LITERT
from edgeseg.runtime.probing import broken_or_missing, distribution_version, package_line, probe_import
from edgeseg.targets import TargetProfile, engine_floor_problem


def probe() -> dict[str, dict[str, Any]]:
    """doctor's `litert` entry."""
    return {"litert": litert_info()}


def litert_info() -> dict[str, Any]:
    for package in INTERPRETERS:
        distribution = package.distribution
        found = probe_import(f"{package.module}.interpreter")
        if found["status"] == "missing":
            continue
        if found["status"] == "broken":
            return {"status": "broken", "package": distribution, "error": found["error"]}
        return {"status": "ok", "package": distribution, "version": distribution_version(distribution),
                "delegates": _litert_delegates(found["module"])}
    return {"status": "missing"}


def _litert_delegates(interpreter_module: Any) -> dict[str, str]:
    """XNNPACK is in the interpreter's default op resolver; a GPU delegate is a shared library (looked up, not
    loaded: a failed load_delegate leaves a half-made object that complains when collected)."""
    import ctypes.util

    found = ctypes.util.find_library("tensorflowlite_gpu_delegate")
    return {"xnnpack": "built in (CPU)",
            "gpu": f"{found} found" if found else "no GPU delegate library here (a phone's comes with the Android app)"}


def run_verdict(target: TargetProfile, report: dict[str, Any]) -> tuple[bool, str]:
    """doctor's (can run, why) for a LiteRT target."""
    lite = report["litert"]
    if lite["status"] != "ok":
        return False, "cannot run, because " + broken_or_missing(lite, LITERT.distribution, LITERT)
    if lite.get("package") == LITERT.distribution and (too_old := engine_floor_problem(target.format,
                                                                                       lite.get("version"))):
        return False, f"cannot run, because {too_old}"
    where = "on this CPU as a stand-in for the phone" if target.host_proxy else "with LiteRT"
    return True, f"can run {where} ({lite['package']} {lite['version']}, XNNPACK)"


def report_lines(report: dict[str, Any]) -> list[str]:
    lite = report["litert"]
    delegates = "; ".join(f"{k}: {v}" for k, v in lite.get("delegates", {}).items())
    return [package_line("litert", lite, f" ({lite.get('package')}); delegates {delegates}")]
