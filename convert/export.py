"""The contract between the conversion pipeline and each format's exporter.

An exporter is a module with `export(job: ExportJob, staging: Path) -> ExportResult`; the
pipeline picks it by the target's format and the precision from the format's registry entry
(`edgeseg.formats`: a format's registration names its exporter, and another module for a precision
whose artifact takes another form: host-cpu INT8 is written for ONNX Runtime's integer kernels, while the
TensorRT bundles keep TensorRT's Q/DQ form), so adding a format is one new package and one registration
line (docs/developing.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgeseg.convert.options import DEFAULT_VERIFY_IMAGES
from edgeseg.formats import all_formats
from edgeseg.models.weights import LoadedWeights
from edgeseg.targets import TargetProfile


def exporter_name(fmt: str, precision: str) -> str:
    """The module that exports `precision` artifacts of format `fmt`."""
    return all_formats()[fmt].exporter_for(precision)


@dataclass
class ExportJob:
    weights: LoadedWeights
    model: torch.nn.Module  # FP32, eval mode: the reference every artifact is verified against
    target: TargetProfile
    precision: str
    height: int
    width: int
    output_kind: str  # "logits" or "mask"
    fuse_preprocessing: bool
    basename: str  # artifact file name without suffix
    calibration: str | None = None  # folder of calibration images or "synthetic:N"
    options: dict[str, Any] = field(default_factory=dict)  # format-specific options
    progress: bool = True
    # What exporters that verify while they convert (INT8 budget searches) score against; the pipeline
    # sets both. `reference` is the model as trained (`model` may carry export-only rewrites).
    reference: torch.nn.Module | None = None
    verify_sets: list | None = None  # convert.verify.ImageSet

    def staged_file(self, staging: Path, fmt: str, role: str | None = None) -> Path:
        """`<basename>[.<role>]<suffix>` in `staging`, the suffix format `fmt`'s (its registry entry): the
        artifact without a role, an intermediate file of that format with one ("traced", "float")."""
        return staging / f"{self.basename}{'.' + role if role else ''}{all_formats()[fmt].suffix}"

    def reference_model(self) -> torch.nn.Module:
        return self.reference if self.reference is not None else self.weights.build()

    def verification_sets(self) -> list:
        if self.verify_sets is None:
            from edgeseg.convert.verify import image_sets_for

            self.verify_sets = image_sets_for(self.weights.labels, self.options.get("verify_data"),
                                              int(self.options.get("verify_images") or DEFAULT_VERIFY_IMAGES))
        return self.verify_sets


@dataclass
class ExportResult:
    artifact: Path  # inside the staging folder
    input: dict  # InputSpec.to_dict()
    output: dict  # {"name", "kind", "layout", "dtype"}
    extra_files: list[Path] = field(default_factory=list)  # published beside the artifact
    details: dict[str, Any] = field(default_factory=dict)  # merged into manifest["conversion"]
    tools: dict[str, str] = field(default_factory=dict)
    # Set when the exporter verified the artifact itself (e.g. a TensorRT bundle checked under ONNX Runtime).
    verification: dict[str, Any] | None = None
    runtime: dict[str, Any] = field(default_factory=dict)  # merged into manifest["runtime"] (the backend reads it)
    size_bytes: int | None = None  # the model's size when it is more than the artifact file (an IR's .xml + .bin)
