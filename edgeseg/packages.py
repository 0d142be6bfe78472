"""Optional pip packages, each written once: the `Package` record, and the packages no single format owns
(the conversion stack every converter needs, Pillow, matplotlib, OpenCV).

A format's own engine and tools are in its registry entry (`edgeseg.formats`); `edgeseg.optional` reads
both to say which extra brings a missing package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Package:
    """An optional pip package: its import name, its distribution and the edgeseg extra that brings it
    (None where only the platform brings it, e.g. TensorRT from JetPack)."""

    module: str
    distribution: str
    extra: str | None


TORCH = Package("torch", "torch", "convert")
TORCHVISION = Package("torchvision", "torchvision", "convert")
ONNX = Package("onnx", "onnx", "convert")
PILLOW = Package("PIL", "Pillow", "convert")
MATPLOTLIB = Package("matplotlib", "matplotlib", "bench")
OPENCV = Package("cv2", "opencv-python", "opencv")

# What building and tracing any model needs (every format's conversion starts from PyTorch).
MODEL_STACK = (TORCH, TORCHVISION)
# ... and the ONNX every ONNX-based conversion exports first.
CONVERSION_STACK = (*MODEL_STACK, ONNX)
SHARED_PACKAGES = (*CONVERSION_STACK, PILLOW, MATPLOTLIB, OPENCV)
