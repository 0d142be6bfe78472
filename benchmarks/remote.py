"""`edgeseg bench --device ssh://…`: convert here, measure there, one report.

Each row is converted (or taken from the cache) and verified on this workstation as in a local sweep;
its artifact and the labelled images are copied to the device where missing (`remote_sync`), and the
device install's own `edgeseg bench --artifacts` measures that one row there. Its row comes back as
results.json and is merged with what only this side knows: the row's identity, the conversion and its
verification, and the PyTorch FP32 reference (scored here on the same images at the same size: the
device has no torch). Argmax agreement needs the device's masks, which stay there: device rows have none.

The report is rewritten after every row, so a lost connection leaves the rows finished; a rerun with the
same --out keeps every `ok` row of the same device, artifact and settings and measures only the rest.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from edgeseg.benchmarks.bench import Bench
from edgeseg.benchmarks.checks import matching_verification, verification_check
from edgeseg.benchmarks.config import BenchConfig
from edgeseg.benchmarks.machine import machine_identity, machine_info, tool_versions
from edgeseg.benchmarks.planning import validate
from edgeseg.benchmarks.remote_preflight import DeviceInstall, check_device
from edgeseg.benchmarks.remote_ssh import DeviceConnectionError, DeviceError, SshDevice, last_line, parse_device
from edgeseg.benchmarks.remote_sync import DeviceFiles
from edgeseg.benchmarks.rows import STATUS_FAILED, STATUS_OK, RowPlan, new_row, set_status, verification_summary
from edgeseg.errors import ConfigError
from edgeseg.manifest import Manifest, load_manifest

# What the device's row says about the measurement; identity, artifact and verification stay this side's.
DEVICE_FIELDS = ("status", "stage", "reason", "threads", "threads_note", "latency", "accuracy", "cost")
DEVICE_RUN_TIMEOUT_S = 1800  # one row: a Jetson's first engine build takes minutes, not half an hour


def run_device_bench(config: BenchConfig, url: str, ssh_config: Path | None,
                     on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`edgeseg bench --device URL`: everything that cannot succeed is refused in one line before any
    conversion (the options, the address, the device's edgeseg and engines), then the rows run."""
    validate(config)
    if config.peer:
        raise ConfigError("--peer with --device: the peers' artifacts live outside edgeseg's folders; "
                          "measure them on the device with its own edgeseg bench --peer")
    address = parse_device(url)
    device = SshDevice(address, ssh_config)
    targets = (sorted({str(load_manifest(a).data.get("target")) for a in config.artifacts}) if config.artifacts
               else list(dict.fromkeys(config.targets)))
    install = check_device(device, targets)
    print(f"{address.name}: edgeseg {install.version} ({install.edgeseg}) can run {', '.join(targets)}; "
          f"copies in {install.work}")
    bench = DeviceBench(config, device, install, previous_results(config.out))
    results = bench.run(on_row)
    copied = results["device"]["copied"]
    print(f"{address.name}: {len(results['rows']) - bench.kept_rows} rows measured there, {bench.kept_rows} kept from "
          f"the last run in {config.out}/; copied {copied['files']} files ({copied['mb']} MB)")
    return results


def previous_results(out: Path) -> dict[str, Any] | None:
    """The results.json a run left in `out`, if it is readable: its finished rows may be kept."""
    try:
        data = json.loads((Path(out) / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("rows"), list) else None


class DeviceBench(Bench):
    """A sweep whose rows are measured on a device over SSH."""

    def __init__(self, config: BenchConfig, device: SshDevice, install: DeviceInstall,
                 previous: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.device = device
        self.install = install
        self.files = DeviceFiles(device, install)
        self.machine: dict[str, Any] | None = None
        self.tools: dict[str, str] = {}
        self.kept: dict[tuple[str, str], dict[str, Any]] = {}
        self.kept_rows = 0
        if previous is not None and self.resumable(previous):
            self.machine, self.tools = previous["machine"], previous["tools"]
            self.kept = {(r["id"], r["artifact"]["sha256"]): r for r in previous["rows"]
                         if r["status"] == STATUS_OK and (r.get("artifact") or {}).get("sha256")}

    def settings(self) -> dict[str, Any]:
        """What a measured row depends on besides its artifact; a rerun keeps rows only when equal."""
        c = self.config
        return {"images": c.images, "runs": c.runs, "warmup": c.warmup, "threads": c.threads, "split": c.split,
                "data": str(Path(c.data).resolve()) if c.data else None}

    def resumable(self, previous: dict[str, Any]) -> bool:
        device = previous.get("device") or {}
        return device.get("name") == self.device.address.name and device.get("settings") == self.settings()

    def run(self, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        self.workstation = {"machine": machine_identity(machine_info()), "tools": tool_versions()}
        plans = self.plan()
        rows: list[dict[str, Any]] = []
        bar = tqdm(plans, desc=f"bench on {self.device.address.name}", unit="row", disable=not self.config.progress)
        try:
            for plan in bar:
                bar.set_postfix_str(plan.label())
                row_started = time.perf_counter()
                try:
                    row = self.run_row(plan, {}, bar)
                except DeviceConnectionError as exc:
                    raise DeviceConnectionError(
                        f"lost the connection after {len(rows)} of {len(plans)} rows ({exc}); the finished rows are "
                        f"in {self.config.out}/, and the same command again measures the rest") from None
                if not any(row is kept for kept in self.kept.values()):
                    row["wall_s"] = round(time.perf_counter() - row_started, 1)
                rows.append(row)
                if on_row is not None and len(rows) < len(plans):
                    on_row(self.results({}, {}, rows, started, planned=len(plans)))
        finally:
            bar.close()
            self.files.close()
        return self.results({}, {}, rows, started, planned=len(plans))

    def results(self, machine: dict, tools: dict, rows: list[dict], started: float, *, planned: int) -> dict[str, Any]:
        """The results document, with the device's machine block and tools and this side's in `converted_on`."""
        doc = super().results(self.machine or {}, self.tools, rows, started, planned=planned)
        doc["device"] = {"name": self.device.address.name, "url": self.device.address.url,
                         "edgeseg": self.install.edgeseg, "version": self.install.version, "work": self.install.work,
                         "platform": self.install.doctor.get("platform"), "settings": self.settings(),
                         "rows_kept_from_before": self.kept_rows,
                         "copied": {"files": self.files.copied_files, "mb": round(self.files.copied_bytes / 2**20, 2)}}
        doc["converted_on"] = self.workstation
        return doc

    def run_row(self, plan: RowPlan, peak: dict[str, Any], bar: tqdm | None = None) -> dict[str, Any]:
        """Convert (or take from the cache) here, measure there; a row finished before is kept as it was."""
        row = new_row(plan)
        manifest = self._row_manifest(plan, row, bar)
        if manifest is None:
            return row
        kept = self.kept.get((row["id"], manifest.data["artifact_sha256"]))
        if kept is not None:
            self.kept_rows += 1
            return kept
        row.update(verification=verification_summary(manifest.data.get("verification")), host_proxy=False,
                   device=self.device.address.name)
        if bar is not None:
            bar.set_postfix_str(f"{plan.label()}: copying to the device")
        measured = self.measure_there(plan, manifest, row)
        if measured is None:
            return row  # the status says why
        self.adopt_machine(measured)
        there = measured["rows"][0]
        row.update({k: there[k] for k in DEVICE_FIELDS if k in there})
        row["artifact"]["device_manifest"] = there.get("artifact", {}).get("manifest")
        if row["status"] == STATUS_OK:
            self.add_reference(plan, manifest, row)
        return row

    def measure_there(self, plan: RowPlan, manifest: Manifest, row: dict[str, Any]) -> dict[str, Any] | None:
        """The device's `edgeseg bench --artifacts` results for this one artifact, or None when `row` failed
        there (its status says why)."""
        remote_manifest = self.files.artifact(manifest)
        remote_set = self.files.evalset(plan.evalset)
        out = f"runs/{uuid.uuid4().hex[:12]}"
        c = self.config
        argv = [self.install.edgeseg, "bench", "--artifacts", self.files.remote_path(remote_manifest),
                "--data", self.files.remote_path(remote_set.folder), "--split", remote_set.split,
                "--images", str(len(plan.evalset.ids)), "--runs", str(c.runs), "--warmup", str(c.warmup),
                "--no-progress", "--out", self.files.remote_path(out)]
        if c.threads is not None:
            argv += ["--threads", str(c.threads)]
        results = shlex.quote(str(PurePosixPath(self.files.remote_path(out)) / "results.json"))
        script = (f"{shlex.join(argv)} 1>&2 && cat {results} && rm -rf {shlex.quote(self.files.remote_path(out))}")
        done = self.device.run(script, timeout=DEVICE_RUN_TIMEOUT_S)
        try:
            measured = json.loads(done.stdout) if done.returncode == 0 else None
        except json.JSONDecodeError:
            measured = None
        if not isinstance(measured, dict) or len(measured.get("rows") or []) != 1:
            said = last_line(done.stderr) or f"exit status {done.returncode}"
            set_status(row, STATUS_FAILED, f"on {self.device.address.name}: {said}", "run")
            return None
        return measured

    def adopt_machine(self, measured: dict[str, Any]) -> None:
        """The report's machine block is the device's; every row of one report comes from one machine."""
        if self.machine is None:
            self.machine, self.tools = dict(measured["machine"]), measured["tools"]
            return
        if machine_identity(self.machine) != machine_identity(measured["machine"]):
            raise DeviceError(f"{self.device.address.name} is not the machine that measured the rows in "
                              f"{self.config.out}/ ({measured['machine'].get('cpu_model')} now, "
                              f"{self.machine.get('cpu_model')} then): give another --out")
        self.machine["load_average_at_end"] = measured["machine"].get("load_average_at_end")

    def add_reference(self, plan: RowPlan, manifest: Manifest, row: dict[str, Any]) -> None:
        """The PyTorch FP32 reference scored here on the same images at the same size, and the check against
        the conversion-time verification (mIoU only: agreement needs the device's masks)."""
        accuracy = row["accuracy"]
        note = ("argmax agreement needs the device's masks, which are not brought back; the PyTorch FP32 "
                "reference ran on the workstation")
        if plan.model is not None:
            spec = manifest.input_spec()
            reference = plan.model.reference(plan.evalset, spec.height, spec.width, self.cores)
            accuracy.update(reference_miou=reference.scores["miou"],
                            miou_delta=round(accuracy["miou"] - reference.scores["miou"], 4),
                            argmax_agreement=None, reference_per_class_iou=reference.scores["per_class_iou"])
        else:
            note = "no PyTorch FP32 reference for this artifact here: no mIoU change or agreement"
        row["reference_note"] = note
        recorded = matching_verification(manifest, plan.evalset)
        if recorded is not None and recorded["images"] == accuracy["images"]:
            row["verification_check"] = verification_check(recorded, {"miou": accuracy["miou"]})
        else:
            row["verification_check"] = {
                "comparable": False,
                "why": "the device scores all the images, the conversion-time verification the first "
                       f"{recorded['images'] if recorded else '?'}: equal --images and --verify-images compare them"}
