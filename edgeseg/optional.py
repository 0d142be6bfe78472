"""Optional packages: import one where it is needed, or say in one line which extra brings it.

The base install is the device runtime; the workstation side (torch, onnx, Pillow, matplotlib,
the LiteRT converter) comes in extras, so a command that needs one must say which to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeseg.errors import MissingPackageError


def require(module: str, *, extra: str | None, purpose: str, package: str | None = None) -> ModuleType:
    """`importlib.import_module(module)`, or MissingPackageError naming the pip package and edgeseg extra.

    A package that is installed but fails to import (a broken wheel, a missing shared library) is
    reported the same way with its own error, instead of a traceback from inside it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pip_name = package or module.split(".")[0]
        if getattr(exc, "name", None) in (module, module.split(".")[0]):
            hint = f": pip install 'edgeseg[{extra}]'" if extra else ""
            raise MissingPackageError(f"{purpose} needs '{pip_name}', which is not installed here{hint}") from None
        raise MissingPackageError(f"{purpose} needs '{pip_name}', which is installed but does not import "
                                  f"({type(exc).__name__}: {exc})") from None
