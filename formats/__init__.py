"""The artifact formats edgeseg converts to and runs: one package each, registered here once.

Each package (`formats/<name>/`) owns everything about its format:
- `__init__.py`: its registry entry, `FORMAT` (suffix, backend, exporter and runner modules, the packages and
  extras it needs, its options, its engine floor, its target-profile section). Facts only, no imports of a
  framework, so the core, `doctor` and `--help` read it for free.
- `runtime` (a module or a package): the device side, its runner (`BACKEND`) and what `doctor` asks (`probe`).
- `convert/`: the workstation side, its exporters (each an `export(job, staging)`).

Adding a format (a backend) is one new package plus one line in `PACKAGES` (and a target YAML); the
converter, the runtime, `doctor`, `convert --help` and the bench read this registry (docs/developing.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache

from edgeseg.packages import Package


@dataclass(frozen=True)
class ArtifactFormat:
    """One artifact format: its facts, and the modules (by name: the core imports no framework) that
    export and run it."""

    name: str
    backend: str  # the runner's name, as manifests record it
    suffix: str  # the artifact file's suffix
    runner: str  # the module that defines BACKEND, a runtime.backend.Backend subclass
    exporter: str | None = None  # the module whose export(job, staging) writes it; None: no target converts to it
    # Precisions whose artifact takes another form, written by another module.
    precision_exporters: dict[str, str] = field(default_factory=dict)
    # The module whose probe() and run_verdict() `doctor` calls; None: nothing to probe (the reference backend).
    probe: str | None = None
    run_packages: tuple[Package, ...] = ()  # what the device needs to run this format
    convert_packages: tuple[Package, ...] = ()  # what the workstation needs to convert to it (and verify)
    # int8-dynamic's weight quantizer, where the format quantizes weights only with a tool of its own.
    weight_quantizer: str | None = None
    # Whether INT8 calibration takes --calib-method (ONNX Runtime's calibrators); other quantizers have their own.
    calibration_methods: bool = False
    # Whether an artifact without a manifest describes itself well enough to run (the runner then defines
    # manifest_from_metadata(path)): a .tflite's TFLite Model Metadata.
    describes_itself: bool = False
    # The suffix of a second file the artifact reads and is published with (an OpenVINO IR's weights); None: none.
    weights_suffix: str | None = None
    section: type | None = None  # the target-profile section only this format's targets have (YAML key: backend)
    # The engine's pip distribution and the oldest release of it that loads this format's artifacts with
    # the same masks, as measured by tests/arm64/run_checks.py's version matrix (docs/jetson.md); None
    # where no such floor was measured. The manifest records it; doctor and info compare the installed one.
    engine_package: str | None = None
    engine_min_version: str | None = None

    def exporter_for(self, precision: str) -> str:
        """The module that exports this format at `precision`."""
        if self.exporter is None:
            raise ValueError(f"format {self.name} has no exporter")
        return self.precision_exporters.get(precision, self.exporter)

    def exporters(self) -> tuple[str, ...]:
        """Every exporter module this format uses."""
        return (*((self.exporter,) if self.exporter else ()), *self.precision_exporters.values())


# The format packages, in the order doctor reports them. One line per format.
PACKAGES = (
    "edgeseg.formats.onnx",
    "edgeseg.formats.tflite",
    "edgeseg.formats.openvino",
    "edgeseg.formats.tensorrt",
    "edgeseg.formats.pytorch",
)


@cache
def all_formats() -> dict[str, ArtifactFormat]:
    """Format name -> its registry entry, from each package's FORMAT."""
    formats = [importlib.import_module(package).FORMAT for package in PACKAGES]
    return {f.name: f for f in formats}


def format_of_backend(backend: str) -> ArtifactFormat | None:
    """The format a backend runs (manifests name the backend)."""
    return next((f for f in all_formats().values() if f.backend == backend), None)


def load_module(name: str):
    """A module a registry entry names (an exporter, runner or probe): the one place edgeseg imports its
    own modules by name. Only names registered in FORMAT are passed here."""
    if not name.startswith("edgeseg.formats.") and not name.startswith("edgeseg.convert."):
        raise ValueError(f"{name}: not a module a format registers")
    return importlib.import_module(name)
