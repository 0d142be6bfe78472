"""Optional packages: import one where it is needed, or say in one line which extra brings it.

The base install is the device runtime; the workstation side (torch, onnx, Pillow, matplotlib,
the LiteRT converter) comes in extras, so a command that needs one must say which to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeseg.errors import MissingPackageError

# Import name -> (pip package, the edgeseg extra that brings it), for every package outside the base install.
OPTIONAL_PACKAGES = {
    "torch": ("torch", "convert"), "torchvision": ("torchvision", "convert"), "onnx": ("onnx", "convert"),
    "PIL": ("Pillow", "convert"), "litert_torch": ("litert-torch", "tflite"),
    "ai_edge_quantizer": ("ai-edge-quantizer", "tflite"), "matplotlib": ("matplotlib", "bench"),
    "onnxruntime": ("onnxruntime", "onnxruntime"), "ai_edge_litert": ("ai-edge-litert", "litert"),
    "pycuda": ("pycuda", "jetson"), "cv2": ("opencv-python", "opencv"),
    "openvino": ("openvino", "openvino"), "nncf": ("nncf", "openvino-convert"),
}


def missing_package_message(module: str, purpose: str) -> str | None:
    """"PURPOSE needs 'PACKAGE', which is not installed here: pip install 'edgeseg[EXTRA]'", or None when
    `module` is not an optional package edgeseg knows."""
    known = OPTIONAL_PACKAGES.get(module.split(".")[0])
    if known is None:
        return None
    package, extra = known
    return f"{purpose} needs '{package}', which is not installed here: pip install 'edgeseg[{extra}]'"


def require(module: str, *, purpose: str, extra: str | None = None, package: str | None = None) -> ModuleType:
    """`importlib.import_module(module)`, or MissingPackageError naming the pip package and edgeseg extra
    (from OPTIONAL_PACKAGES unless given).

    A package that is installed but fails to import (a broken wheel, a missing shared library) is
    reported with its own error, instead of a traceback from inside it.
    """
    top = module.split(".")[0]
    known_package, known_extra = OPTIONAL_PACKAGES.get(top, (top, None))
    pip_name, extra = package or known_package, extra or known_extra
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # Ctrl-C during a slow import is not "not installed"
            raise KeyboardInterrupt from None
        if getattr(exc, "name", None) in (module, top):
            hint = f": pip install 'edgeseg[{extra}]'" if extra else ""
            raise MissingPackageError(f"{purpose} needs '{pip_name}', which is not installed here{hint}") from None
        raise MissingPackageError(f"{purpose} needs '{pip_name}', which is installed but does not import "
                                  f"({type(exc).__name__}: {exc})") from None
