"""A row of the results: what to measure (`RowPlan`), the row dict's skeleton and status, and the
artifact and verification entries every row carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgeseg.benchmarks.evalsets import EvalSet
from edgeseg.benchmarks.references import ModelEntry
from edgeseg.errors import ConfigError
from edgeseg.manifest import Manifest
from edgeseg.targets import get_target

STATUS_OK, STATUS_NOT_RUN, STATUS_FAILED = "ok", "not run", "failed"
STAGES = ("export", "verification", "run")


class RowKind(str, Enum):
    """Where a row's artifact comes from (its value is the row's `kind` in results.json)."""

    SWEEP = "sweep"  # a model x target x resolution x precision cell, converted on demand
    ARTIFACT = "artifact"  # an artifact the user gave (--artifacts)
    PEER = "peer"  # a public peer's manifest (--peer)


@dataclass(frozen=True)
class SweepCell:
    """What a sweep row converts: its model, target, precision and resolution, all known."""

    model: ModelEntry
    target: str
    precision: str
    resolution: str


@dataclass
class RowPlan:
    """One row to measure: a sweep cell (model + target + resolution + precision) or a given artifact."""

    kind: RowKind
    evalset: EvalSet
    target: str | None = None
    precision: str | None = None
    resolution: str | None = None
    model: ModelEntry | None = None
    variant: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    calibration: str | None = None
    artifact: Path | None = None

    def cell(self) -> SweepCell:
        """The sweep cell this row converts; ValueError for a given-artifact or peer row."""
        if (self.kind is not RowKind.SWEEP or self.model is None or self.target is None or self.precision is None
                or self.resolution is None):
            raise ValueError(f"a {self.kind.value} row is not a sweep cell")
        return SweepCell(self.model, self.target, self.precision, self.resolution)

    def given_artifact(self) -> Path:
        """The manifest a given-artifact or peer row measures; ValueError for a sweep row."""
        if self.artifact is None:
            raise ValueError(f"a {self.kind.value} row names no artifact")
        return self.artifact

    def label(self) -> str:
        """model/target/precision/resolution[/variant] of a sweep cell, else the artifact's file name."""
        if self.kind is RowKind.SWEEP:
            cell = self.cell()
            parts = [cell.model.name, cell.target, cell.precision, cell.resolution]
            return "/".join(parts + ([self.variant] if self.variant else []))
        return self.given_artifact().name


def new_row(plan: RowPlan) -> dict[str, Any]:
    """A row's skeleton: identity first, results filled in as stages complete."""
    row: dict[str, Any] = {"id": plan.label(), "kind": plan.kind.value,
                           "model": plan.model.describe() if plan.model else None,
                           "variant": plan.variant, "target": plan.target, "backend": None, "host_proxy": False,
                           "resolution": plan.resolution, "input_hw": None, "precision": plan.precision,
                           "status": None, "stage": None, "reason": None,
                           "dataset": plan.evalset.name}
    if plan.target:
        try:
            target = get_target(plan.target)
        except ConfigError:
            target = None
        if target is not None:
            row["backend"] = target.backend
            row["host_proxy"] = target.host_proxy
    return row


def set_status(row: dict, status: str, reason: str | None = None, stage: str | None = None) -> dict:
    """End `row` with its status (and why, and at which stage it failed); return it."""
    row.update(status=status, reason=reason, stage=stage)
    return row


def _artifact_size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return path.stat().st_size / 2**20


def artifact_info(manifest: Manifest, *, from_cache: bool | None) -> dict[str, Any]:
    """A row's `artifact` entry: where the artifact is, its size and hash, how it was converted."""
    d = manifest.data
    info = {"path": str(manifest.artifact_path), "manifest": str(manifest.path),
            "size_mb": round(_artifact_size_mb(manifest.artifact_path), 3), "sha256": d.get("artifact_sha256"),
            "conversion": d.get("conversion")}
    if from_cache is not None:
        info["from_cache"] = from_cache
    return info


def verification_summary(verification: dict | None) -> dict | None:
    """The parts of a manifest's verification record a row repeats."""
    if not verification:
        return None
    keep = ("reference", "passed", "argmax_agreement", "max_abs_logit_diff", "miou_delta", "budget", "sets")
    return {k: verification[k] for k in keep if k in verification}

