"""`edgeseg bench`: latency, accuracy and cost of converted models, one row per
model x target x resolution x precision (or per given artifact), on a labelled set.

Every row runs through the same frame path as the device (`runtime.segmenter.Segmenter`: the
preprocessing, backend and checked mask the demo runs), configured from the artifact's
manifest. Artifacts are converted on demand through `convert.pipeline.convert` into a cache
keyed by everything the conversion reads, so a second sweep only measures.

A row always ends with a status: `ok`, `not run` (with why: this machine lacks the runtime,
the target lacks the precision, ...) or `failed` (with the stage: export, verification, run).
The results dict returned by `run_bench` is the source of truth; `benchmarks.report` renders it.

This module runs the rows; each concern it uses has its own module:
`config` (BenchConfig and defaults), `planning` (validation, rows to measure), `evalsets` (the
labelled images), `references` (PyTorch FP32 references), `cache` (artifacts converted on demand),
`measure` (accuracy and latency), `flops` (GFLOPs and the cost columns), `checks` (agreement with
recorded numbers), `machine` (machine and tool info), `rows` (the row dict and its status).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edgeseg.benchmarks.cache import error_reason, obtain_artifact
from edgeseg.benchmarks.checks import CHECK_TOLERANCE, matching_verification, peer_check, verification_check
from edgeseg.benchmarks.config import BenchConfig, default_cache_dir
from edgeseg.benchmarks.evalsets import EvalSet, check_labels, load_eval_set
from edgeseg.benchmarks.flops import artifact_gflops, cost_entry, cost_on_final_peak
from edgeseg.benchmarks.machine import machine_info, matmul_peak_gflops, tool_versions, usable_cores
from edgeseg.benchmarks.measure import measure_accuracy, measure_latency
from edgeseg.benchmarks.planning import default_calibration, peer_evalset, peer_manifests, sweep_plans, validate
from edgeseg.benchmarks.references import ModelEntry
from edgeseg.benchmarks.rows import (
    STATUS_FAILED,
    STATUS_NOT_RUN,
    STATUS_OK,
    RowKind,
    RowPlan,
    artifact_info,
    new_row,
    set_status,
    verification_summary,
)
from edgeseg.errors import BackendUnavailableError, ConfigError, DatasetError, EdgesegError, ManifestError
from edgeseg.manifest import Manifest, load_manifest
from edgeseg.optional import not_installed
from edgeseg.packages import TORCH
from edgeseg.resolution import resolution_tag
from edgeseg.runtime.backend import available_backends, check_threads, manifest_threads
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.targets import get_target

RESULTS_SCHEMA = "edgeseg-bench/1"


def run_bench(config: BenchConfig, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure every row; return the results (the dict `benchmarks.report` writes as results.json).
    `on_row` receives the partial results after each row but the last."""
    return Bench(config).run(on_row)


class Bench:
    """One run of the harness: the machine, the data, the models and the rows."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config.effective()
        self.cores = usable_cores()
        self.cache = Path(self.config.cache or default_cache_dir())
        self.evalsets: dict[str, EvalSet] = {}
        self.models: list[ModelEntry] = []
        self.calibration: dict[str, dict[str, str | None]] = {}

    # ---- planning (errors here are the user's input: one line, exit 2)

    def plan(self) -> list[RowPlan]:
        """Load the evaluation sets and models; return every row to measure, in order."""
        c = self.config
        plans: list[RowPlan] = []
        if c.data is not None:
            self.evalsets["data"] = load_eval_set(c.data, c.split, c.images, c.data.resolve().name, c.progress)
        if c.artifacts:
            for path in c.artifacts:
                # A wrong path or a set of other classes is the user's error: one line now, not a row.
                check_labels(self.evalsets["data"], load_manifest(path).labels, str(path))
                plans.append(RowPlan(RowKind.ARTIFACT, artifact=Path(path), evalset=self.evalsets["data"]))
        elif c.data is not None:
            for weights_arg in c.weights:
                for arch in c.models:
                    entry = ModelEntry(weights_arg, arch)
                    check_labels(self.evalsets["data"], entry.weights.labels, entry.weights.source)
                    self.models.append(entry)
                    calib, why = default_calibration(c, entry.weights.labels)
                    self.calibration[entry.name] = {"images": calib, "source": why}
                    plans.extend(sweep_plans(c, entry, calib, self.evalsets["data"]))
        if c.peer:
            manifests = peer_manifests(c)
            if "peer" not in self.evalsets:
                self.evalsets["peer"] = peer_evalset(c)
            plans.extend(RowPlan(RowKind.PEER, artifact=Path(m), evalset=self.evalsets["peer"]) for m in manifests)
        return plans

    # ---- running

    def threads_for(self, manifest: Manifest) -> tuple[int, str | None]:
        """--threads, else the target's, capped at this machine's cores (more only oversubscribes)."""
        if self.config.threads is not None:
            return self.config.threads, None
        threads = manifest_threads(manifest)  # refuses a count that is not one, caps at the usable cores
        if threads is None:
            return self.cores, None
        wanted = manifest.data["runtime"]["threads"]
        if wanted > threads:
            return threads, f"target profile asks for {wanted} threads; capped at this machine's {threads} cores"
        return threads, None

    def run(self, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Measure every row. `on_row(results)` gets the results so far after each row (marked
        `"complete": false`), so an interrupted sweep still leaves the rows it finished."""
        started = time.perf_counter()
        validate(self.config)
        check_threads(self.config.threads)  # this machine's cores (a --device run is bounded by the device's)
        machine = machine_info()
        tools = tool_versions()
        plans = self.plan()
        peak_start = matmul_peak_gflops(self.cores)
        machine["matmul_peak"] = {**peak_start, "measured_gflops_per_s": [v for v in [peak_start["gflops_per_s"]] if v]}
        rows: list[dict[str, Any]] = []
        bar = tqdm(plans, desc="bench", unit="row", disable=not self.config.progress)
        for plan in bar:
            bar.set_postfix_str(plan.label())
            row_started = time.perf_counter()
            row = self.run_row(plan, peak_start, bar)
            row["wall_s"] = round(time.perf_counter() - row_started, 1)  # conversion (if any) + measurement
            rows.append(row)
            if on_row is not None and len(rows) < len(plans):
                on_row(self.results(machine, tools, rows, started, planned=len(plans)))
        bar.close()
        if hasattr(os, "getloadavg"):
            machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        # Measured before and after the rows: the roof is the better of the two (another process
        # sharing the CPU can only lower a measurement), and each row's fraction is restated on it.
        peak_end = matmul_peak_gflops(self.cores) if peak_start["gflops_per_s"] is not None else peak_start
        peak = max(peak_start, peak_end, key=lambda p: p["gflops_per_s"] or 0.0)
        measured = [p["gflops_per_s"] for p in (peak_start, peak_end) if p["gflops_per_s"] is not None]
        machine["matmul_peak"] = {**peak, "measured_gflops_per_s": measured}
        for row in rows:
            if row.get("cost"):
                row["cost"] = cost_on_final_peak(row["cost"], row, peak)
        return self.results(machine, tools, rows, started, planned=len(plans))

    def results(self, machine: dict, tools: dict, rows: list[dict], started: float, *, planned: int) -> dict[str, Any]:
        """The results document (results.json) for the rows measured so far."""
        c = self.config
        return {
            "schema": RESULTS_SCHEMA,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": c.command,
            "complete": len(rows) == planned,
            "rows_planned": planned,
            "duration_s": round(time.perf_counter() - started, 1),
            "config": {"quick": c.quick, "images": c.images, "runs": c.runs, "warmup": c.warmup, "threads": c.threads,
                       "targets": list(c.targets), "resolutions": list(c.resolutions), "precisions": list(c.precisions),
                       "verify_images": c.verify_images, "calibration": self.calibration,
                       "cache": str(self.cache), "aspp_compare": c.aspp_compare,
                       "artifacts": [str(a) for a in c.artifacts], "peer": c.peer},
            "check_tolerance": CHECK_TOLERANCE,
            "machine": dict(machine),
            "tools": tools,
            "datasets": {key: s.describe() for key, s in self.evalsets.items()},
            "rows": list(rows),
        }

    def run_row(self, plan: RowPlan, peak: dict[str, Any], bar: tqdm | None = None) -> dict[str, Any]:
        """Obtain the row's artifact, open its backend, measure; the row ends ok, not run or failed."""
        row = new_row(plan)
        manifest = self._row_manifest(plan, row, bar)
        if manifest is None:
            return row
        row["verification"] = verification_summary(manifest.data.get("verification"))
        if manifest.backend not in available_backends():
            return set_status(row, STATUS_NOT_RUN, f"this edgeseg has no '{manifest.backend}' backend "
                                                   f"(edgeseg.formats registers none)")
        try:
            threads, note = self.threads_for(manifest)
        except ManifestError as exc:
            return set_status(row, STATUS_FAILED, str(exc), "run")
        row["threads"] = threads
        if note:
            row["threads_note"] = note
        if bar is not None:
            bar.set_postfix_str(f"{plan.label()}: measuring")
        try:
            segmenter = Segmenter.open(manifest, threads=threads)
        except BackendUnavailableError as exc:
            return set_status(row, STATUS_NOT_RUN, str(exc))
        except EdgesegError as exc:
            return set_status(row, STATUS_FAILED, str(exc), "run")
        try:
            with segmenter:
                reference = None
                if plan.model is not None:
                    spec = manifest.input_spec()
                    reference = plan.model.reference(plan.evalset, spec.height, spec.width, self.cores)
                recorded = matching_verification(manifest, plan.evalset)
                row["accuracy"], measured = measure_accuracy(segmenter, plan.evalset, reference,
                                                             recorded["images"] if recorded else 0)
                row["latency"] = measure_latency(segmenter, plan.evalset, self.config.runs, self.config.warmup)
        except EdgesegError as exc:
            return set_status(row, STATUS_FAILED, str(exc), "run")
        except Exception as exc:  # noqa: BLE001 - an engine's own error types; the row records it and the sweep goes on
            return set_status(row, STATUS_FAILED, error_reason(exc), "run")
        gflops, source = artifact_gflops(manifest, reference)
        row["cost"] = cost_entry(row, gflops, source, peak)
        row["verification_check"] = verification_check(recorded, measured)
        if "peer" in manifest.data:
            row["peer_check"] = peer_check(manifest, plan.evalset, row["accuracy"])
        return set_status(row, STATUS_OK)

    def _row_manifest(self, plan: RowPlan, row: dict, bar: tqdm | None) -> Manifest | None:
        """The row's artifact: converted (or cached) for a sweep cell, else the given manifest,
        checked against the set's labels. None when the row ended here (its status says why)."""
        if plan.kind is RowKind.SWEEP:
            return obtain_artifact(plan, row, cache=self.cache, verify_images=self.config.verify_images, bar=bar)
        try:
            manifest = load_manifest(plan.given_artifact())
        except ManifestError as exc:
            set_status(row, STATUS_FAILED, str(exc), "run")
            return None
        self.identify_from_manifest(plan, row, manifest)
        try:
            check_labels(plan.evalset, manifest.labels, manifest.artifact_path.name)
        except DatasetError as exc:
            set_status(row, STATUS_FAILED, str(exc), "run")
            return None
        return manifest

    def identify_from_manifest(self, plan: RowPlan, row: dict, manifest: Manifest) -> None:
        """Fill the identity columns of a given-artifact or peer row from its manifest (a sweep row
        knows them from its plan), and find the PyTorch reference of a given artifact."""
        d = manifest.data
        spec = manifest.input_spec()
        target = d.get("target")
        row.update(target=target, backend=d.get("backend"), precision=d.get("precision"),
                   resolution=resolution_tag((spec.height, spec.width)), input_hw=[spec.height, spec.width])
        try:
            row["host_proxy"] = isinstance(target, str) and get_target(target).host_proxy
        except ConfigError:
            row["host_proxy"] = False
        model = d.get("model", {})
        name = d.get("name") or model.get("name") or model.get("architecture") or manifest.artifact_path.stem
        row["model"] = {"name": name,
                        "architecture": model.get("architecture"), "weights": model.get("weights_source"),
                        "weights_sha256": model.get("weights_sha256"), "num_classes": manifest.num_classes,
                        "peer": plan.kind is RowKind.PEER}
        row["artifact"] = artifact_info(manifest, from_cache=None)
        if plan.kind is RowKind.ARTIFACT and importlib.util.find_spec("torch") is None:
            # A device install measures the artifact alone: mIoU against the labels, no PyTorch reference.
            row["reference_note"] = (f"{not_installed(TORCH)}: no PyTorch FP32 reference, so no mIoU change or "
                                     "agreement")
        elif plan.kind is RowKind.ARTIFACT:
            plan.model = self._reference_model_for(manifest)
            if plan.model is None:
                row["reference_note"] = "PyTorch FP32 reference weights not found here: no mIoU change or agreement"

    def _reference_model_for(self, manifest: Manifest) -> ModelEntry | None:
        """The PyTorch reference of a given artifact: its source weights, if they are here unchanged."""
        model = manifest.data.get("model", {})
        source, sha = model.get("weights_source"), model.get("weights_sha256")
        for entry in self.models:
            if entry.weights.sha256 == sha and entry.weights.arch == model.get("architecture"):
                return entry
        if not source or not sha or not Path(source).is_file():
            return None
        try:
            entry = ModelEntry(source, model.get("architecture"))
        except EdgesegError:
            return None
        if entry.weights.sha256 != sha:
            return None
        self.models.append(entry)
        return entry

