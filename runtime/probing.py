"""What every format's doctor probe shares: importing a package without letting it crash the report,
installed versions, and the one wording of why an engine cannot run.

Every probe catches what a package can throw on import (a missing shared library, a wheel built for
another numpy), so a broken package is reported, never fatal.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from edgeseg.errors import first_line
from edgeseg.optional import install_hint, not_installed, try_import
from edgeseg.packages import Package


def error_line(exc: BaseException) -> str:
    """"TypeName: the first line of its message" (160 characters at most)."""
    return f"{type(exc).__name__}: {first_line(exc)[:160]}".rstrip(": ")


def probe_import(module: str) -> dict[str, Any]:
    """{"status": "ok"|"missing"|"broken", "module"?: the module, "error"?: one line}: `try_import` as
    doctor's report keeps it."""
    imported = try_import(module)
    if imported.module is not None:
        return {"status": "ok", "module": imported.module}
    if imported.status == "missing" or imported.error is None:
        return {"status": "missing"}
    return {"status": "broken", "error": error_line(imported.error)}


def distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def public(entry: dict[str, Any]) -> dict[str, Any]:
    """A probe entry without the imported module (what the report keeps)."""
    return {k: v for k, v in entry.items() if k != "module"}


def broken_or_missing(entry: dict[str, Any], what: str, package: Package) -> str:
    """Why a probed package (`what`, as the report names it) cannot be used: broken, only type stubs, shadowed,
    or not installed (and which extra brings it)."""
    if entry.get("conflict"):  # a long line of its own: said once, on the opencv line
        return f"{what} does not import (the {what.lower()} line above says which package shadows which)"
    if entry["status"] == "broken":
        return f"{what} is installed but broken ({entry['error']})"
    if entry["status"] == "stubs-only":
        return f"{what} is only type stubs here (tensorrt-stubs), not NVIDIA's TensorRT"
    return not_installed(package, what)


def package_line(name: str, entry: dict[str, Any], detail: str = "") -> str:
    """One line of doctor's text report for a probed package."""
    status = entry["status"]
    if status == "ok":
        return f"{name:13} {entry.get('version') or '?'}{detail}"
    if status == "broken":
        return f"{name:13} BROKEN: {entry['error']}"
    if status == "stubs-only":
        return f"{name:13} not installed ({entry['detail']}; import works but is empty)"
    return f"{name:13} not installed"


__all__ = ["broken_or_missing", "distribution_version", "error_line", "install_hint", "not_installed", "package_line",
           "probe_import", "public"]
