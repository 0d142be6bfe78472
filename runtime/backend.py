"""The runner interface every format's backend implements, and opening the one a manifest names.

Each format package (`formats/<name>/`) registers the module that defines its `BACKEND`, a `Backend`
subclass; it is imported only when used, so a Jetson never imports onnxruntime and a phone-side tool
never imports TensorRT (docs/developing.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.errors import BackendUnavailableError, ConfigError, ManifestError
from edgeseg.formats import all_formats, format_of_backend, load_module
from edgeseg.input_spec import InputSpec
from edgeseg.manifest import Manifest, load_manifest, manifest_path_for, runtime_threads, verify_artifact

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11


class Backend:
    """Load a converted model from its manifest, run it, report inference time, close.

    Usable as a context manager. `infer` takes the preprocessed batch (as the manifest's input
    spec describes) and returns the model's raw output array; `last_inference_ms` is the time of
    the last call, measured around the engine call only.
    """

    name = "base"

    def __init__(self, manifest: Manifest, *, threads: int | None = None) -> None:
        self.manifest = manifest
        # Bounded here, before any subclass loads its engine: a huge count hangs ONNX Runtime and crashes LiteRT.
        check_threads(threads)
        self.threads = threads if threads is not None else manifest_threads(manifest)
        self.last_inference_ms = float("nan")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self._run(batch)
        self.last_inference_ms = (time.perf_counter() - start) * 1000
        return out

    def _run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def usable_cores() -> int:
    """The cores this process may run on (its affinity), which is what threads can use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_threads(threads: int | None, option: str = "--threads") -> None:
    """The one bound on engine threads: None (the manifest's target profile), else 1 to this machine's
    usable cores; anything else is one line, raised before a model is loaded."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{option} {threads}: must be 1 or more (leave it out for the target profile's count)")
    cores = usable_cores()
    if threads > cores:
        raise ConfigError(f"{option} {threads}: this machine lets edgeseg run on {cores} cores; "
                          f"use at most {cores}")


def manifest_threads(manifest: Manifest) -> int | None:
    """The manifest's `runtime.threads` (a target profile's count, written for its device), capped at
    this machine's usable cores (more only oversubscribes); None when it names none."""
    threads = runtime_threads(manifest.data, manifest.path)
    return None if threads is None else min(threads, usable_cores())


def available_backends() -> list[str]:
    """The backends the registered formats name."""
    return sorted(f.backend for f in all_formats().values())


def backend_class(name: str) -> type[Backend]:
    fmt = format_of_backend(name)
    if fmt is None:
        raise ManifestError(f"unknown backend '{name}'; this edgeseg knows: {', '.join(available_backends())}")
    return load_module(fmt.runner).BACKEND


def load_model_manifest(model: Path | str) -> Manifest:
    """The manifest of an artifact (see `load_manifest`); for an artifact without one whose format describes
    itself (a `.tflite`'s TFLite Model Metadata), a manifest made from the model's own metadata (one line says
    what is missing when it has none)."""
    path = Path(model)
    if path.is_file() and not manifest_path_for(path).is_file():
        for fmt in all_formats().values():
            if fmt.describes_itself and path.suffix == fmt.suffix:
                return load_module(fmt.runner).manifest_from_metadata(path)
    return load_manifest(path)


def open_backend(model: Path | str | Manifest, *, threads: int | None = None) -> Backend:
    """The backend the manifest names, loaded with its artifact once its sha256 matches the manifest
    (a bare `.tflite`: see `load_model_manifest`)."""
    manifest = model if isinstance(model, Manifest) else load_model_manifest(model)
    if isinstance(model, Manifest):  # load_manifest checked it; a Manifest given whole may be older than its file
        verify_artifact(manifest)
    return backend_class(manifest.backend)(manifest, threads=threads)


def batch_shape(spec: InputSpec) -> tuple[int, int, int, int]:
    """The one-image batch a model with this input spec takes: (1, H, W, 3) for NHWC, else (1, 3, H, W)."""
    return (1, spec.height, spec.width, 3) if spec.layout == "NHWC" else (1, 3, spec.height, spec.width)


def require(module: str, what: str):
    """`edgeseg.optional.require` for a backend's engine: what is missing is a BackendUnavailableError."""
    from edgeseg.optional import require as require_package

    return require_package(module, purpose=what, error=BackendUnavailableError)
