"""Optional packages: the one way edgeseg imports a third-party package by name and says what is missing.

The base install is the device runtime; the workstation side (torch, onnx, Pillow, matplotlib,
the LiteRT converter) comes in extras, so a command that needs one must say which to install.
`try_import` tells "not installed" from "installed but broken" without raising; `require` turns
either into one line naming the pip package and the extra; `install_hint` and `not_installed` are the
wordings every other message uses.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from edgeseg.errors import EdgesegError, MissingPackageError
from edgeseg.formats import all_formats
from edgeseg.packages import SHARED_PACKAGES, Package

__all__ = ["SHARED_PACKAGES", "Imported", "install_hint", "missing_package_message", "not_installed",
           "optional_packages", "pip_install", "require", "requirement", "try_import"]


def optional_packages() -> dict[str, tuple[str, str | None]]:
    """Import name -> (pip package, the edgeseg extra that brings it), for every package outside the base install."""
    packages: list[Package] = [*SHARED_PACKAGES]
    for fmt in all_formats().values():
        packages += [*fmt.run_packages, *fmt.convert_packages]
    table: dict[str, tuple[str, str | None]] = {}
    for package in packages:
        table.setdefault(package.module, (package.distribution, package.extra))
    return table


def pip_install(requirement: str) -> str:
    """The one wording of an install command: "pip install 'REQUIREMENT'"."""
    return f"pip install '{requirement}'"


def requirement(extras: str) -> str:
    """edgeseg with extras, as pip reads it: "edgeseg[EXTRA,...]"."""
    return f"edgeseg[{extras}]"


def install_hint(extra: str | None) -> str:
    """How to install an extra: "pip install 'edgeseg[EXTRA]'" ("" for None: only the platform brings it)."""
    return pip_install(requirement(extra)) if extra else ""


def not_installed(package: Package, name: str | None = None) -> str:
    """"NAME is not installed (pip install 'edgeseg[EXTRA]')", the short form (doctor's verdicts, notes in a
    report); NAME is the pip package unless given."""
    hint = f" ({install_hint(package.extra)})" if package.extra else ""
    return f"{name or package.distribution} is not installed{hint}"


def _needs(purpose: str, package: str, extra: str | None) -> str:
    hint = f": {install_hint(extra)}" if extra else ""
    return f"{purpose} needs '{package}', which is not installed here{hint}"


def missing_package_message(module: str, purpose: str) -> str | None:
    """"PURPOSE needs 'PACKAGE', which is not installed here: pip install 'edgeseg[EXTRA]'", or None when
    `module` is not an optional package edgeseg knows."""
    known = optional_packages().get(module.split(".")[0])
    return None if known is None else _needs(purpose, *known)


@dataclass(frozen=True)
class Imported:
    """What importing a package by name gave: the module ("ok"), or why not: "missing" (not installed) or
    "broken" (installed, but its import raised `error`)."""

    module: ModuleType | None
    status: str
    error: BaseException | None = None


def try_import(module: str) -> Imported:
    """Import a third-party `module` by name without letting it raise: a broken package (a missing shared
    library, a wheel built for another numpy) may raise anything on import, and is reported, never fatal."""
    top = module.split(".")[0]
    if top == "edgeseg":  # edgeseg's own modules are imported by name only through edgeseg.formats.load_module
        raise ValueError(f"{module}: try_import() and require() are for third-party packages")
    try:
        return Imported(importlib.import_module(module), "ok")
    except ImportError as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # Ctrl-C during a slow import is not "not installed"
            raise KeyboardInterrupt from None
        return Imported(None, "missing" if getattr(exc, "name", None) in (module, top) else "broken", exc)
    except Exception as exc:  # noqa: BLE001 - a broken package may raise anything on import
        return Imported(None, "broken", exc)


def require(module: str, *, purpose: str, extra: str | None = None, package: str | None = None,
            error: type[EdgesegError] = MissingPackageError) -> ModuleType:
    """`module`, imported, or `error` (MissingPackageError unless the caller's kind of problem is another,
    e.g. BackendUnavailableError) in one line naming the pip package and edgeseg extra (from
    `optional_packages()` unless given).

    A package that is installed but fails to import is reported with its own error, instead of a
    traceback from inside it.
    """
    imported = try_import(module)
    if imported.module is not None:
        return imported.module
    top = module.split(".")[0]
    known_package, known_extra = optional_packages().get(top, (top, None))
    pip_name, extra = package or known_package, extra or known_extra
    if imported.status == "missing":
        raise error(_needs(purpose, pip_name, extra)) from None
    exc = imported.error
    raise error(f"{purpose} needs '{pip_name}', which is installed but does not import "
                f"({type(exc).__name__}: {exc})") from None
