"""TensorRT (Jetson): the bundle the board builds its engine from (ONNX, Q/DQ for INT8), run by TensorRT with pycuda."""

from __future__ import annotations

from dataclasses import dataclass

from edgeseg.conventions import RUNTIME_MIN_PYTHON
from edgeseg.formats import ArtifactFormat, Package
from edgeseg.formats import onnx as onnx_format
from edgeseg.packages import CONVERSION_STACK


@dataclass(frozen=True)
class JetPackRelease:
    """One JetPack release a board runs, with the Python and TensorRT it ships."""

    release: str  # "6.1"
    python: str  # "3.10"
    tensorrt: str  # "10.3"

    @property
    def runtime_supported(self) -> bool:
        """Whether the edgeseg runtime installs on this release's Python (else: the trtexec script only)."""
        return tuple(int(p) for p in self.python.split(".")[:2]) >= RUNTIME_MIN_PYTHON

    def to_dict(self) -> dict:
        return {"release": self.release, "python": self.python, "tensorrt": self.tensorrt,
                "edgeseg_runtime": self.runtime_supported}


@dataclass(frozen=True)
class TensorRTOptions:
    """The `tensorrt:` section, which only TensorRT targets have: how their engines are built."""

    jetpack: tuple[JetPackRelease, ...]  # the releases this board runs; the ONNX must parse on each TensorRT
    workspace_mb: int = 1024
    dla_cores: int = 0
    gpu_fallback: bool = True

    @property
    def versions(self) -> tuple[str, ...]:
        """The TensorRT versions of the board's JetPack releases, oldest first, each once."""
        return tuple(dict.fromkeys(r.tensorrt for r in self.jetpack))

    def to_dict(self) -> dict:
        return {"versions": list(self.versions), "jetpack": [r.to_dict() for r in self.jetpack],
                "workspace_mb": self.workspace_mb, "dla_cores": self.dla_cores, "gpu_fallback": self.gpu_fallback}


# TensorRT itself comes with JetPack (no pip extra: pip's wheels are not JetPack's and would shadow it).
TENSORRT = Package("tensorrt", "tensorrt", None)
PYCUDA = Package("pycuda", "pycuda", "jetson")

FORMAT = ArtifactFormat(
    "tensorrt-bundle", backend="tensorrt", suffix=onnx_format.FORMAT.suffix,  # the bundle ships an ONNX
    runner="edgeseg.formats.tensorrt.runtime.runner", probe="edgeseg.formats.tensorrt.runtime.probe",
    exporter="edgeseg.formats.tensorrt.convert.bundle",
    run_packages=(TENSORRT, PYCUDA),
    # ONNX Runtime calibrates the Q/DQ ranges and verifies the bundle.
    convert_packages=(*CONVERSION_STACK, onnx_format.ONNXRUNTIME),
    calibration_methods=True,
    section=TensorRTOptions,
)
