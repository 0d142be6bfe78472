"""Optional packages: import one where it is needed, or say in one line which extra brings it.

The base install is the device runtime; the workstation side (torch, onnx, Pillow, matplotlib,
the LiteRT converter) comes in extras, so a command that needs one must say which to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeseg.errors import MissingPackageError
from edgeseg.formats import Package, all_formats

# Packages outside the base install that no format owns: the conversion and plotting stacks, OpenCV.
# Each format's engine and converters are in its registry entry (edgeseg.formats).
SHARED_PACKAGES = (
    Package("torch", "torch", "convert"), Package("torchvision", "torchvision", "convert"),
    Package("onnx", "onnx", "convert"), Package("PIL", "Pillow", "convert"),
    Package("matplotlib", "matplotlib", "bench"),
    Package("cv2", "opencv-python", "opencv"),
)


def optional_packages() -> dict[str, tuple[str, str | None]]:
    """Import name -> (pip package, the edgeseg extra that brings it), for every package outside the base install."""
    packages = [*SHARED_PACKAGES]
    for fmt in all_formats().values():
        packages += [*fmt.run_packages, *fmt.convert_packages]
    table: dict[str, tuple[str, str | None]] = {}
    for package in packages:
        table.setdefault(package.module, (package.distribution, package.extra))
    return table


def install_hint(extra: str | None) -> str:
    """The one wording of how to install an extra: "pip install 'edgeseg[EXTRA]'"."""
    return f"pip install 'edgeseg[{extra}]'" if extra else ""


def missing_package_message(module: str, purpose: str) -> str | None:
    """"PURPOSE needs 'PACKAGE', which is not installed here: pip install 'edgeseg[EXTRA]'", or None when
    `module` is not an optional package edgeseg knows."""
    known = optional_packages().get(module.split(".")[0])
    if known is None:
        return None
    package, extra = known
    hint = f": {install_hint(extra)}" if extra else ""
    return f"{purpose} needs '{package}', which is not installed here{hint}"


def require(module: str, *, purpose: str, extra: str | None = None, package: str | None = None) -> ModuleType:
    """`importlib.import_module(module)`, or MissingPackageError naming the pip package and edgeseg extra
    (from `optional_packages()` unless given).

    A package that is installed but fails to import (a broken wheel, a missing shared library) is
    reported with its own error, instead of a traceback from inside it.
    """
    top = module.split(".")[0]
    if top == "edgeseg":  # edgeseg's own modules are imported by name only through edgeseg.formats.load_module
        raise ValueError(f"{module}: require() is for third-party packages")
    known_package, known_extra = optional_packages().get(top, (top, None))
    pip_name, extra = package or known_package, extra or known_extra
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # Ctrl-C during a slow import is not "not installed"
            raise KeyboardInterrupt from None
        if getattr(exc, "name", None) in (module, top):
            hint = f": {install_hint(extra)}" if extra else ""
            raise MissingPackageError(f"{purpose} needs '{pip_name}', which is not installed here{hint}") from None
        raise MissingPackageError(f"{purpose} needs '{pip_name}', which is installed but does not import "
                                  f"({type(exc).__name__}: {exc})") from None
