"""`edgeseg bench`: latency, accuracy and cost of converted models, one row per
model x target x resolution x precision (or per given artifact), on a labelled set.

Every row runs through the same runtime path as the device: `runtime.preprocess`,
`runtime.backends.open_backend` and `runtime.postprocess`, configured from the artifact's
manifest. Artifacts are converted on demand through `convert.pipeline.convert` into a cache
keyed by everything the conversion reads, so a second sweep only measures.

A row always ends with a status: `ok`, `not run` (with why: this machine lacks the runtime,
the target lacks the precision, ...) or `failed` (with the stage: export, verification, run).
The results dict returned by `run_bench` is the source of truth; `benchmarks.report` renders it.
"""

from __future__ import annotations

import datetime as dt
import filecmp
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

import edgeseg
from edgeseg.datasets import evaluation_split, open_dataset
from edgeseg.metrics import ConfusionMatrix
from edgeseg.scenes import SYNTHETIC_LABELS
from edgeseg.convert.resolution import parse_resolution, resolution_tag
from edgeseg.errors import (BackendUnavailableError, ConfigError, DatasetError, EdgesegError, ManifestError,
                            VerificationError)
from edgeseg.manifest import Manifest, load_manifest
from edgeseg.runtime.backends import available_backends, open_backend
from edgeseg.runtime.postprocess import output_to_mask, resize_mask
from edgeseg.runtime.preprocess import preprocess_bgr, preprocess_rgb
from edgeseg.targets import ALL_PRECISIONS, TargetProfile, get_target

if TYPE_CHECKING:  # torch is imported where it is used: `edgeseg --help` must not load it
    import torch

RESULTS_SCHEMA = "edgeseg-bench/1"

# Defaults sized so the full sweep of the issue (2 targets x 2 resolutions x 3 precisions) fits in
# 15 minutes on a 2-core machine, conversions included.
DEFAULT_IMAGES = 50
DEFAULT_RUNS = 30
DEFAULT_WARMUP = 3
DEFAULT_VERIFY_IMAGES = 16
DEFAULT_CALIB_IMAGES = 64
QUICK = {"images": 8, "runs": 10, "warmup": 2, "verify_images": 8, "calib_images": 8}
LATENCY_FRAMES = 8  # distinct frames cycled through the latency loop

# The bench's mIoU on the verification images must reproduce the number recorded at conversion
# (same images, same preprocessing, same metric). The only freedom left is the thread count:
# a different split of a reduction can flip a pixel whose two best logits tie to ~1e-6.
CHECK_TOLERANCE = {"miou_points": 0.05, "argmax_agreement": 0.0005}

STATUS_OK, STATUS_NOT_RUN, STATUS_FAILED = "ok", "not run", "failed"
STAGES = ("export", "verification", "run")
ASPP_VARIANTS = {"aspp-rewrite": True, "no-aspp-rewrite": False}
PEER_DIR = Path(__file__).resolve().parent / "peers"
# The tools whose versions decide the numbers; recorded when installed.
TOOL_PACKAGES = ("numpy", "opencv-python", "opencv-python-headless", "torch", "torchvision", "onnx", "onnxruntime",
                 "ai-edge-litert", "litert-torch", "tensorflow", "tensorrt", "pycuda", "matplotlib")


@dataclass(frozen=True)
class BenchConfig:
    """Everything one `edgeseg bench` run reads; validated by `run_bench`."""

    out: Path
    data: Path | None = None
    split: str | None = "val"
    weights: tuple[str, ...] = ("sample",)
    models: tuple[str | None, ...] = (None,)  # zoo architectures for plain state dicts / torchvision
    targets: tuple[str, ...] = ("host-cpu",)
    resolutions: tuple[str, ...] = ("320",)
    precisions: tuple[str, ...] = ("fp32",)
    images: int = DEFAULT_IMAGES
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    threads: int | None = None  # None: the target profile's, capped at this machine's cores
    calibration: str | None = None  # None: see `default_calibration`
    calib_images: int = DEFAULT_CALIB_IMAGES
    verify_images: int = DEFAULT_VERIFY_IMAGES
    artifacts: tuple[Path, ...] = ()
    peer: bool = False
    peer_manifests: tuple[Path, ...] = ()  # empty: every manifest in benchmarks/peers/
    peer_data: Path | None = None  # None: ../shared/data/voc-sample (val split)
    aspp_compare: bool = False
    quick: bool = False
    cache: Path | None = None
    progress: bool = True
    command: str | None = None

    def effective(self) -> "BenchConfig":
        """`--quick` applied: one resolution, few runs, few images, small calibration."""
        if not self.quick:
            return self
        return replace(self, resolutions=self.resolutions[:1], images=min(self.images, QUICK["images"]),
                       runs=min(self.runs, QUICK["runs"]), warmup=min(self.warmup, QUICK["warmup"]),
                       verify_images=min(self.verify_images, QUICK["verify_images"]),
                       calib_images=min(self.calib_images, QUICK["calib_images"]))


def default_cache_dir() -> Path:
    """`$EDGESEG_CACHE`, else `$XDG_CACHE_HOME/edgeseg/artifacts` (~/.cache/edgeseg/artifacts)."""
    if os.environ.get("EDGESEG_CACHE"):
        return Path(os.environ["EDGESEG_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeseg" / "artifacts"


# --------------------------------------------------------------------------- the machine

def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, GPU (if any), OS and load: what a reader needs to weigh the numbers."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": platform.platform(),
        "gpu": gpu_info(),
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


def gpu_info() -> list[dict[str, str]]:
    """NVIDIA GPUs as `nvidia-smi` lists them; empty where there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def tool_versions() -> dict[str, str]:
    """Versions of Python, edgeseg and every installed package in TOOL_PACKAGES (read, never imported)."""
    versions = {"python": platform.python_version(), "edgeseg": edgeseg.__version__}
    for name in TOOL_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 10) -> dict[str, Any]:
    """This machine's measured float32 matrix-multiply throughput: the roof in the roofline fraction.

    The best of `repeats` products of two `size`-square matrices through torch (oneDNN/MKL, the
    same kernels family the CPU backends use); best, not mean, because the roof is what the
    hardware can do when nothing else interferes.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        for _ in range(2):
            torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {"gflops_per_s": round(2 * size**3 / best / 1e9, 2), "method": f"torch.mm float32 {size}x{size}, best of {repeats}",
            "threads": threads}


# --------------------------------------------------------------------------- statistics

def latency_stats(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    """mean, p50, p90, p99, min and max of a list of milliseconds (linear-interpolated percentiles)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"mean": round(float(x.mean()), 3), "p50": round(float(p50), 3), "p90": round(float(p90), 3),
            "p99": round(float(p99), 3), "min": round(float(x.min()), 3), "max": round(float(x.max()), 3)}


def model_gflops(model: "torch.nn.Module", height: int, width: int, *, channels: int = 3) -> float:
    """GFLOPs of one forward pass at HxW: 2 x multiply-accumulates of every convolution and matrix
    product, counted by torch's FlopCounterMode from the real weight shapes (a depthwise 3x3 costs
    9 MACs per output pixel, not 9 x channels). Elementwise ops, pooling and resizes are not counted.
    torchvision's tables quote MACs as "GFLOPS": theirs x 2 = ours.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels, height, width))
    return counter.get_total_flops() / 1e9


# --------------------------------------------------------------------------- data

@dataclass
class EvalSet:
    """The labelled images one row is measured on, loaded once."""

    name: str
    root: Path
    split: str | None
    ids: list[str]
    files: list[tuple[Path, Path]]  # (image, mask) of each sample
    images: list[np.ndarray]  # RGB uint8
    masks: list[np.ndarray]
    labels: tuple[str, ...] | None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.root), "split": self.split, "images": len(self.ids),
                "labels": list(self.labels) if self.labels else None, "first_id": self.ids[0], "last_id": self.ids[-1]}


def load_eval_set(root: Path, split: str | None, count: int, name: str, progress: bool = False) -> EvalSet:
    """The first `count` images of `split` (VOC layout; other layouts have no splits) with their masks."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    split = split if (root / "JPEGImages").is_dir() else None
    dataset = open_dataset(root, split).subset(count)
    if not dataset.has_masks:
        missing = next(s.image_path for s in dataset.samples if s.mask_path is None)
        raise DatasetError(f"{missing}: no ground-truth mask; bench needs labelled images")
    pairs = [dataset.pair(i) for i in tqdm(range(len(dataset)), desc=f"load {name}", disable=not progress,
                                           unit="img", leave=False)]
    return EvalSet(name, root, split, [s.id for s in dataset.samples],
                   [(s.image_path, s.mask_path) for s in dataset.samples],
                   [p[0] for p in pairs], [p[1] for p in pairs], dataset.labels)


def verification_view(evalset: EvalSet, count: int, cache: Path) -> Path:
    """A folder (images/ + masks/ + labels.txt) holding copies of the set's first `count` samples, in order.

    Conversion verifies on the leading images of the folder it is given, by its own rule of which
    split to read; handing it exactly the images the bench scores first makes "same images" hold by
    construction for any layout or split. The folder is named by the sha256 of those files, so it
    changes (and so does the conversion cache key) when the data does.
    """
    digest = hashlib.sha256()
    for sample_id, (image, mask) in zip(evalset.ids[:count], evalset.files[:count]):
        digest.update(sample_id.encode())
        digest.update(image.read_bytes())
        digest.update(mask.read_bytes())
    digest.update("\n".join(evalset.labels or ()).encode())
    view = cache / "verify-sets" / digest.hexdigest()[:16]
    if view.is_dir():
        return view
    tmp = Path(tempfile.mkdtemp(prefix=".view-", dir=ensure_dir(cache / "verify-sets")))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i, (sample_id, (image, mask)) in enumerate(zip(evalset.ids[:count], evalset.files[:count])):
            stem = f"{i:05d}_{sample_id}"  # the index keeps the bench's order under a sorted listing
            shutil.copyfile(image, tmp / "images" / f"{stem}{image.suffix.lower()}")
            shutil.copyfile(mask, tmp / "masks" / f"{stem}.png")
        if evalset.labels:
            (tmp / "labels.txt").write_text("".join(f"{n}\n" for n in evalset.labels))
        (tmp / "SOURCE.txt").write_text(f"first {count} images of {evalset.root} (split {evalset.split})\n")
        os.replace(tmp, view)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not view.is_dir():  # a concurrent bench may have written the same view first
            raise
    return view


def ensure_dir(path: Path) -> Path:
    from edgeseg.atomic import ensure_writable_dir

    ensure_writable_dir(path)
    return path


def check_labels(evalset: EvalSet, labels: tuple[str, ...], who: str) -> None:
    """The set must label the model's classes: same names where it names them, ids in range always."""
    if evalset.labels is not None and tuple(evalset.labels) != tuple(labels):
        raise DatasetError(f"{evalset.root}: labels ({', '.join(evalset.labels[:4])}, ...: {len(evalset.labels)}) "
                           f"differ from {who}'s ({', '.join(labels[:4])}, ...: {len(labels)})")
    for sample_id, mask in zip(evalset.ids, evalset.masks):
        ids = np.unique(mask)
        bad = ids[(ids != 255) & (ids >= len(labels))]
        if bad.size:
            raise DatasetError(f"{evalset.root}: mask {sample_id} holds class {int(bad[0])} but {who} has {len(labels)} classes")


def _split_ids(root: Path, split: str) -> list[str]:
    for path in (root / "ImageSets" / "Segmentation" / f"{split}.txt", root / f"{split}.txt"):
        if path.is_file():
            return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    return []


def default_calibration(config: BenchConfig, labels: tuple[str, ...]) -> tuple[str | None, str]:
    """INT8 calibration images and why: --calib; else the data's train split (never the images being
    scored); else, for a model of the synthetic classes, the synthetic calibration stream (seeded,
    disjoint from train and val scenes). Otherwise none: int8 rows then say what to pass."""
    if config.calibration:
        return config.calibration, "--calib"
    if config.data is not None and (config.data / "JPEGImages").is_dir() and _split_ids(config.data, "train"):
        return str(config.data.resolve()), f"train split of {config.data}"
    if tuple(labels) == SYNTHETIC_LABELS:
        return f"synthetic:{config.calib_images}", "synthetic calibration scenes (the model's classes are the synthetic ones)"
    return None, "none: pass --calib DIR or --calib synthetic:N"


# --------------------------------------------------------------------------- references

@dataclass
class Reference:
    """The PyTorch FP32 model's masks (at model resolution) and scores on one EvalSet."""

    masks: list[np.ndarray]
    scores: dict[str, Any]
    gflops: float


class ModelEntry:
    """One model of the sweep: its weights, FP32 reference model and cached references."""

    def __init__(self, weights_spec: str, arch: str | None) -> None:
        from edgeseg.convert.weights import load_weights

        self.spec = weights_spec
        self.weights = load_weights(weights_spec, arch=arch)
        self.model = self.weights.build()
        self._references: dict[tuple[str, int, int], Reference] = {}

    @property
    def name(self) -> str:
        return self.weights.arch

    @property
    def identity(self) -> str:
        return self.weights.sha256 or self.weights.source

    def describe(self) -> dict[str, Any]:
        w = self.weights
        return {"name": w.arch, "architecture": w.arch, "weights": w.source, "weights_sha256": w.sha256,
                "num_classes": w.num_classes, "peer": False}

    def reference(self, evalset: EvalSet, height: int, width: int, threads: int) -> Reference:
        key = (evalset.name, height, width)
        if key not in self._references:
            import torch

            from edgeseg.convert.verify import reference_logits

            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                cm = ConfusionMatrix(self.weights.num_classes)
                masks = []
                for image, gt in zip(evalset.images, evalset.masks):
                    mask = output_to_mask(reference_logits(self.model, image, height, width), "logits", "NCHW")
                    masks.append(mask)
                    cm.update(gt, resize_mask(mask, *gt.shape))
                gflops = model_gflops(self.model, height, width)
            finally:
                torch.set_num_threads(previous)
            self._references[key] = Reference(masks, cm.compute().to_dict(self.weights.labels), gflops)
        return self._references[key]


# --------------------------------------------------------------------------- rows

@dataclass
class RowPlan:
    """One row to measure: a sweep cell (model + target + resolution + precision) or a given artifact."""

    kind: str  # "sweep", "artifact" or "peer"
    target: str | None = None
    precision: str | None = None
    resolution: str | None = None
    model: ModelEntry | None = None
    variant: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    calibration: str | None = None
    artifact: Path | None = None
    evalset: EvalSet | None = None

    def label(self) -> str:
        if self.kind == "sweep":
            parts = [self.model.name, self.target, self.precision, self.resolution]
            return "/".join(parts + ([self.variant] if self.variant else []))
        return Path(self.artifact).name


def new_row(plan: RowPlan) -> dict[str, Any]:
    """A row's skeleton: identity first, results filled in as stages complete."""
    row: dict[str, Any] = {"id": plan.label(), "kind": plan.kind, "model": plan.model.describe() if plan.model else None,
                           "variant": plan.variant, "target": plan.target, "backend": None, "host_proxy": False,
                           "resolution": plan.resolution, "input_hw": None, "precision": plan.precision,
                           "status": None, "stage": None, "reason": None,
                           "dataset": plan.evalset.name if plan.evalset else None}
    if plan.target:
        try:
            target = get_target(plan.target)
        except ConfigError:
            target = None
        if target is not None:
            row["backend"] = target.backend
            row["host_proxy"] = target.host_proxy
    return row


def _mark(row: dict, status: str, reason: str | None = None, stage: str | None = None) -> dict:
    row.update(status=status, reason=reason, stage=stage)
    return row


def cache_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Bench:
    """One run of the harness: the machine, the data, the models and the rows."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config.effective()
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.cache = Path(self.config.cache or default_cache_dir())
        self.evalsets: dict[str, EvalSet] = {}
        self.models: list[ModelEntry] = []
        self.calibration: dict[str, dict[str, str | None]] = {}

    # ---- validation and planning (errors here are the user's input: one line, exit 2)

    def validate(self) -> None:
        c = self.config
        for n, what in ((c.images, "--images"), (c.runs, "--runs"), (c.verify_images, "--verify-images"),
                        (c.calib_images, "--calib-images")):
            if n < 1:
                raise ConfigError(f"{what} {n}: must be at least 1")
        if c.warmup < 0:
            raise ConfigError(f"--warmup {c.warmup}: must be 0 or more")
        if c.threads is not None and c.threads < 1:
            raise ConfigError(f"--threads {c.threads}: must be at least 1")
        for name in c.targets:
            get_target(name)
        for p in c.precisions:
            if p not in ALL_PRECISIONS:
                raise ConfigError(f"--precisions {p}: choose from {', '.join(ALL_PRECISIONS)}")
        for r in c.resolutions:
            parse_resolution(r)
        if c.data is None and (c.artifacts or not c.peer):
            raise ConfigError("--data DIR is required: a labelled set (VOC layout or images/ + masks/)")
        if not c.artifacts and not c.targets and not c.peer:
            raise ConfigError("nothing to measure: give --targets, --artifacts or --peer")

    def plan(self) -> list[RowPlan]:
        c = self.config
        plans: list[RowPlan] = []
        if c.data is not None:
            self.evalsets["data"] = load_eval_set(c.data, c.split, c.images, c.data.resolve().name, c.progress)
        if c.artifacts:
            for path in c.artifacts:
                # A wrong path or a set of other classes is the user's error: one line now, not a row.
                check_labels(self.evalsets["data"], load_manifest(path).labels, str(path))
                plans.append(RowPlan("artifact", artifact=Path(path), evalset=self.evalsets["data"]))
        elif c.data is not None:
            for spec in c.weights:
                for arch in c.models:
                    entry = ModelEntry(spec, arch)
                    check_labels(self.evalsets["data"], entry.weights.labels, entry.weights.source)
                    self.models.append(entry)
                    calib, why = default_calibration(c, entry.weights.labels)
                    self.calibration[entry.name] = {"images": calib, "source": why}
                    variants = list(ASPP_VARIANTS.items()) if c.aspp_compare else [(None, None)]
                    for target in c.targets:
                        for res in c.resolutions:
                            for precision in c.precisions:
                                for variant, rewrite in variants:
                                    options = {"calib_images": c.calib_images}
                                    if rewrite is not None:
                                        options["aspp_rewrite"] = rewrite
                                    plans.append(RowPlan("sweep", target=target, precision=precision, resolution=res,
                                                         model=entry, variant=variant, options=options,
                                                         calibration=calib if precision.startswith("int8") else None,
                                                         evalset=self.evalsets["data"]))
        if c.peer:
            plans.extend(self.plan_peers())
        return plans

    def plan_peers(self) -> list[RowPlan]:
        """Rows for the public peers: their manifests, measured on their own data (VOC val)."""
        c = self.config
        manifests = list(c.peer_manifests) or sorted(PEER_DIR.glob("*.json"))
        if not manifests:
            raise ConfigError(f"--peer: no peer manifests in {PEER_DIR} (the LiteRT peer manifest is not in this edgeseg)")
        if c.peer_data is not None:
            root = c.peer_data
        else:
            from edgeseg.convert.verify import default_real_images_dir

            root = default_real_images_dir()
            if root is None:
                raise ConfigError("--peer: no VOC data found (../shared/data/voc-sample); pass --peer-data DIR")
        if "peer" not in self.evalsets:
            self.evalsets["peer"] = load_eval_set(root, "val", c.images, f"{Path(root).resolve().name} (val)", c.progress)
        return [RowPlan("peer", artifact=Path(m), evalset=self.evalsets["peer"]) for m in manifests]

    # ---- running

    def threads_for(self, profile_threads: int | None) -> tuple[int, str | None]:
        """--threads, else the target's, capped at this machine's cores (more only oversubscribes)."""
        if self.config.threads is not None:
            return self.config.threads, None
        wanted = int(profile_threads or self.cores)
        if wanted > self.cores:
            return self.cores, f"target profile asks for {wanted} threads; capped at this machine's {self.cores} cores"
        return wanted, None

    def run(self, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Measure every row. `on_row(results)` gets the results so far after each row (marked
        `"complete": false`), so an interrupted sweep still leaves the rows it finished."""
        started = time.perf_counter()
        self.validate()
        machine = machine_info()
        tools = tool_versions()
        plans = self.plan()
        peak_start = matmul_peak_gflops(self.cores)
        machine["matmul_peak"] = {**peak_start, "measured_gflops_per_s": [peak_start["gflops_per_s"]]}
        rows: list[dict[str, Any]] = []
        bar = tqdm(plans, desc="bench", unit="row", disable=not self.config.progress)
        for plan in bar:
            bar.set_postfix_str(plan.label())
            row_started = time.perf_counter()
            row = self.run_row(plan, peak_start["gflops_per_s"], bar)
            row["wall_s"] = round(time.perf_counter() - row_started, 1)  # conversion (if any) + measurement
            rows.append(row)
            if on_row is not None and len(rows) < len(plans):
                on_row(self.results(machine, tools, rows, started, planned=len(plans)))
        bar.close()
        if hasattr(os, "getloadavg"):
            machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        # Measured before and after the rows: the roof is the better of the two (another process
        # sharing the CPU can only lower a measurement), and each row's fraction is restated on it.
        peak_end = matmul_peak_gflops(self.cores)
        peak = max(peak_start, peak_end, key=lambda p: p["gflops_per_s"])
        machine["matmul_peak"] = {**peak, "measured_gflops_per_s": [peak_start["gflops_per_s"], peak_end["gflops_per_s"]]}
        for row in rows:
            if row.get("cost"):
                row["cost"] = restate_roofline(row["cost"], peak["gflops_per_s"])
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

    def run_row(self, plan: RowPlan, peak_gflops: float, bar: tqdm | None = None) -> dict[str, Any]:
        row = new_row(plan)
        if plan.kind == "sweep":
            manifest = self.obtain_artifact(plan, row, bar)
            if manifest is None:
                return row
        else:
            try:
                manifest = load_manifest(plan.artifact)
            except ManifestError as exc:
                return _mark(row, STATUS_FAILED, str(exc), "run")
            self.describe_given(plan, row, manifest)
            try:
                check_labels(plan.evalset, manifest.labels, manifest.artifact_path.name)
            except DatasetError as exc:
                return _mark(row, STATUS_FAILED, str(exc), "run")
        row["verification"] = _verification_summary(manifest.data.get("verification"))
        if manifest.backend not in available_backends():
            return _mark(row, STATUS_NOT_RUN, f"this edgeseg has no '{manifest.backend}' backend "
                                              f"(runtime/backends/{manifest.backend}.py)")
        threads, note = self.threads_for(manifest.data.get("runtime", {}).get("threads"))
        row["threads"] = threads
        if note:
            row["threads_note"] = note
        if bar is not None:
            bar.set_postfix_str(f"{plan.label()}: measuring")
        try:
            backend = open_backend(manifest, threads=threads)
        except BackendUnavailableError as exc:
            return _mark(row, STATUS_NOT_RUN, str(exc))
        except EdgesegError as exc:
            return _mark(row, STATUS_FAILED, str(exc), "run")
        try:
            with backend:
                reference = None
                if plan.model is not None:
                    spec = manifest.input_spec()
                    reference = plan.model.reference(plan.evalset, spec.height, spec.width, self.cores)
                recorded = matching_verification(manifest, plan.evalset)
                row["accuracy"], measured = measure_accuracy(backend, plan.evalset, manifest, reference,
                                                             recorded["images"] if recorded else 0)
                row["latency"] = measure_latency(backend, plan.evalset, manifest, self.config.runs, self.config.warmup)
        except EdgesegError as exc:
            return _mark(row, STATUS_FAILED, str(exc), "run")
        except Exception as exc:  # noqa: BLE001 - an engine's own error types; the row records it and the sweep goes on
            return _mark(row, STATUS_FAILED, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:240] if str(exc).strip() else ''}", "run")
        gflops, source = artifact_gflops(manifest, reference)
        row["cost"] = cost(row, gflops, source, peak_gflops)
        row["verification_check"] = verification_check(recorded, measured)
        if "peer" in manifest.data:
            row["peer_check"] = peer_check(manifest, plan.evalset, row["accuracy"])
        return _mark(row, STATUS_OK)

    def describe_given(self, plan: RowPlan, row: dict, manifest: Manifest) -> None:
        """Identity of a row that comes from a manifest (given artifact or peer)."""
        d = manifest.data
        spec = manifest.input_spec()
        target = d.get("target")
        row.update(target=target, backend=d.get("backend"), precision=d.get("precision"),
                   resolution=resolution_tag((spec.height, spec.width)), input_hw=[spec.height, spec.width])
        try:
            row["host_proxy"] = get_target(target).host_proxy
        except (ConfigError, TypeError):
            row["host_proxy"] = False
        model = d.get("model", {})
        row["model"] = {"name": d.get("name") or model.get("name") or model.get("architecture") or manifest.artifact_path.stem,
                        "architecture": model.get("architecture"), "weights": model.get("weights_source"),
                        "weights_sha256": model.get("weights_sha256"), "num_classes": manifest.num_classes,
                        "peer": plan.kind == "peer"}
        row["artifact"] = _artifact_info(manifest, from_cache=None)
        if plan.kind == "artifact":
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

    def obtain_artifact(self, plan: RowPlan, row: dict, bar: tqdm | None) -> Manifest | None:
        """The sweep cell's artifact from the cache, or converted now; None when the row ends here."""
        from edgeseg.convert.export import EXPORTERS
        from edgeseg.convert.pipeline import ConvertRequest, convert

        target = get_target(plan.target)
        height, width = parse_resolution(plan.resolution)
        row.update(resolution=resolution_tag((height, width)), input_hw=[height, width])
        if plan.precision not in target.precisions:
            _mark(row, STATUS_NOT_RUN, f"{target.name} has no {plan.precision} (it supports {', '.join(target.precisions)})")
            return None
        if target.backend not in available_backends():
            _mark(row, STATUS_NOT_RUN, f"this edgeseg has no '{target.backend}' backend (runtime/backends/{target.backend}.py)")
            return None
        if importlib.util.find_spec(EXPORTERS[target.format]) is None:
            _mark(row, STATUS_NOT_RUN, f"this edgeseg has no {target.format} exporter ({EXPORTERS[target.format]})")
            return None
        if plan.variant == "aspp-rewrite" and importlib.util.find_spec("edgeseg.convert.aspp_rewrite") is None:
            _mark(row, STATUS_NOT_RUN, "the ASPP rewrite (convert/aspp_rewrite.py) is not in this edgeseg")
            return None
        if plan.precision.startswith("int8") and plan.precision != "int8-dynamic" and plan.calibration is None:
            _mark(row, STATUS_NOT_RUN, "int8 needs calibration images: pass --calib DIR (or --calib synthetic:N)")
            return None
        evalset = plan.evalset
        verify_images = min(self.config.verify_images, len(evalset.ids))
        verify_data = verification_view(evalset, verify_images, self.cache)
        inputs = {"edgeseg": edgeseg.__version__, "weights_sha256": plan.model.identity, "arch": plan.model.name,
                  "target": target.to_dict(), "precision": plan.precision, "resolution": [height, width],
                  "output_kind": "logits", "fuse_preprocessing": False, "options": plan.options,
                  "calibration": plan.calibration, "verify_data": str(verify_data), "verify_images": verify_images}
        folder = self.cache / f"{plan.model.name}-{target.name}-{plan.precision}-{row['resolution']}-{cache_key(inputs)}"
        manifest = _cached_manifest(folder)
        if manifest is not None:
            row["artifact"] = _artifact_info(manifest, from_cache=True)
            return manifest
        if bar is not None:
            bar.set_postfix_str(f"{plan.label()}: converting")
        request = ConvertRequest(target=target.name, precision=plan.precision, resolution=plan.resolution,
                                 weights=plan.model.weights.source if Path(plan.model.weights.source).is_file() else plan.model.spec,
                                 arch=plan.model.name, out=folder, calibration=plan.calibration,
                                 verify_data=str(verify_data), verify_images=verify_images,
                                 options=dict(plan.options), progress=False)
        started = time.perf_counter()
        try:
            result = convert(request)
        except BackendUnavailableError as exc:
            _mark(row, STATUS_NOT_RUN, str(exc))
            return None
        except VerificationError as exc:
            _mark(row, STATUS_FAILED, str(exc), "verification")
            return None
        except ModuleNotFoundError as exc:
            _mark(row, STATUS_NOT_RUN, f"conversion needs the '{exc.name}' package, which is not installed here")
            return None
        except EdgesegError as exc:
            _mark(row, STATUS_FAILED, str(exc), "export")
            return None
        except Exception as exc:  # noqa: BLE001 - exporters raise their frameworks' own types; the row records it
            first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else ""
            _mark(row, STATUS_FAILED, f"{type(exc).__name__}: {first}", "export")
            return None
        from edgeseg.atomic import write_json_atomic

        write_json_atomic(folder / "bench-cache-key.json", inputs)
        manifest = load_manifest(result["manifest_path"])
        row["artifact"] = _artifact_info(manifest, from_cache=False)
        row["artifact"]["conversion_s"] = round(time.perf_counter() - started, 1)
        return manifest


def _cached_manifest(folder: Path) -> Manifest | None:
    """The manifest published in a cache folder, if a conversion there completed (manifest last)."""
    if not (folder / "bench-cache-key.json").is_file():
        return None
    manifests = [p for p in folder.glob("*.json") if p.name != "bench-cache-key.json" and not p.name.startswith(".")]
    if len(manifests) != 1:
        return None
    try:
        return load_manifest(manifests[0])
    except ManifestError:
        return None


def _artifact_size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return path.stat().st_size / 2**20


def _artifact_info(manifest: Manifest, *, from_cache: bool | None) -> dict[str, Any]:
    d = manifest.data
    info = {"path": str(manifest.artifact_path), "manifest": str(manifest.path),
            "size_mb": round(_artifact_size_mb(manifest.artifact_path), 3), "sha256": d.get("artifact_sha256"),
            "conversion": d.get("conversion")}
    if from_cache is not None:
        info["from_cache"] = from_cache
    return info


def artifact_gflops(manifest: Manifest, reference: "Reference | None") -> tuple[float | None, str | None]:
    """GFLOPs of the model the artifact runs, and where the number comes from.

    The ASPP rewrite's own count when the conversion applied it (the artifact then does less work
    than the original model); else FlopCounterMode on the PyTorch model; else, for a TFLite file
    with no PyTorch model (a peer), the count read from its graph.
    """
    record = (manifest.data.get("conversion") or {}).get("aspp_rewrite") or {}
    if record.get("applied") and record.get("flops_after"):
        return record["flops_after"] / 1e9, "ASPP rewrite's count of the exported model (manifest)"
    if reference is not None:
        return reference.gflops, "FlopCounterMode on the PyTorch model"
    if manifest.artifact_path.suffix == ".tflite":
        try:
            return tflite_gflops(manifest.artifact_path), "convolutions and fully-connected layers of the TFLite graph"
        except (ImportError, ValueError) as exc:
            return None, f"not counted ({exc})"
    return None, None


def tflite_gflops(path: Path) -> float:
    """2 x multiply-accumulates of the CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV and FULLY_CONNECTED
    operators of a `.tflite` file, from its tensor shapes (weights [out, kh, kw, in] for convolutions,
    [1, kh, kw, channels] for depthwise: one kh x kw window per output value)."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"{path}: not a TFLite flatbuffer")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    model = schema.Model.GetRootAs(data, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        codes.append(names.get(max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode())), "?"))
    macs = 0
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)

        def shape(index: int) -> list[int]:
            return [int(v) for v in graph.Tensors(index).ShapeAsNumpy()]

        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = codes[op.OpcodeIndex()]
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                weights, out = shape(op.Inputs(1)), shape(op.Outputs(0))
                per_output = {"CONV_2D": int(np.prod(weights[1:])), "DEPTHWISE_CONV_2D": int(np.prod(weights[1:3])),
                              "FULLY_CONNECTED": weights[-1]}[name]
                macs += int(np.prod(out)) * per_output
            elif name == "TRANSPOSE_CONV":  # inputs: output shape, weights [out, kh, kw, in], input
                weights, inp = shape(op.Inputs(1)), shape(op.Inputs(2))
                macs += int(np.prod(inp)) * int(np.prod(weights[:3]))
    return 2 * macs / 1e9


def _verification_summary(verification: dict | None) -> dict | None:
    if not verification:
        return None
    keep = ("reference", "passed", "argmax_agreement", "max_abs_logit_diff", "miou_delta", "budget", "sets")
    return {k: verification[k] for k in keep if k in verification}


# --------------------------------------------------------------------------- measurements

def measure_accuracy(backend, evalset: EvalSet, manifest: Manifest, reference: Reference | None,
                     check_count: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """mIoU, per-class IoU and pixel accuracy on the set; mIoU change and argmax agreement against the
    PyTorch FP32 reference on the same images (agreement at model resolution, as verification does).

    Returns the accuracy and, over the first `check_count` images (the ones verification scored),
    the numbers to compare with the manifest's.
    """
    spec = manifest.input_spec()
    kind, layout = manifest.output["kind"], manifest.output.get("layout", "NCHW")
    labels = manifest.labels
    cm = ConfusionMatrix(manifest.num_classes)
    check_cm = ConfusionMatrix(manifest.num_classes)
    agree = pixels = check_agree = check_pixels = 0
    for i, (image, gt) in enumerate(zip(evalset.images, evalset.masks)):
        mask = output_to_mask(backend.infer(preprocess_rgb(image, spec)), kind, layout)
        full = resize_mask(mask, *gt.shape)
        cm.update(gt, full)
        if reference is not None:
            same = int((reference.masks[i] == mask).sum())
            agree += same
            pixels += mask.size
        if i < check_count:
            check_cm.update(gt, full)
            if reference is not None:
                check_agree += same
                check_pixels += mask.size
    scores = cm.compute()
    accuracy = {"images": len(evalset.images), **scores.to_dict(labels)}
    if reference is not None:
        accuracy.update(reference_miou=reference.scores["miou"],
                        miou_delta=round(scores.miou - reference.scores["miou"], 4),
                        argmax_agreement=round(agree / pixels, 6),
                        reference_per_class_iou=reference.scores["per_class_iou"])
    check = None
    if check_count:
        check = {"images": check_count, "miou": check_cm.compute().miou,
                 "argmax_agreement": check_agree / check_pixels if check_pixels else None}
    return accuracy, check


def measure_latency(backend, evalset: EvalSet, manifest: Manifest, runs: int, warmup: int) -> dict[str, Any]:
    """Warm-up, then `runs` frames end to end as the demo does them: BGR frame -> `preprocess_bgr` ->
    inference -> `output_to_mask` + `resize_mask` to frame size; each stage timed on its own."""
    spec = manifest.input_spec()
    kind, layout = manifest.output["kind"], manifest.output.get("layout", "NCHW")
    # Frames as a camera delivers them (BGR), converted once outside the timed loop.
    frames = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in evalset.images[:LATENCY_FRAMES]]
    pre, inf, post, total = [], [], [], []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed frame is noise, not the model's latency
    try:
        for i in range(warmup + runs):
            frame = frames[i % len(frames)]
            t0 = time.perf_counter()
            batch = preprocess_bgr(frame, spec)
            t1 = time.perf_counter()
            out = backend.infer(batch)
            t2 = time.perf_counter()
            resize_mask(output_to_mask(out, kind, layout), frame.shape[0], frame.shape[1])
            t3 = time.perf_counter()
            if i >= warmup:
                pre.append((t1 - t0) * 1000)
                inf.append(backend.last_inference_ms)
                post.append((t3 - t2) * 1000)
                total.append((t3 - t0) * 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    total_stats = latency_stats(total)
    return {"runs": runs, "warmup": warmup, "frames": len(frames), "total_ms": total_stats,
            "preprocess_ms": latency_stats(pre), "inference_ms": latency_stats(inf), "postprocess_ms": latency_stats(post),
            "fps": round(1000 / total_stats["mean"], 2)}


def cost(row: dict, gflops: float | None, source: str | None, peak_gflops: float) -> dict[str, Any]:
    """Size, GFLOPs at this resolution, achieved GFLOP/s (at median inference time) and its fraction of
    the machine's measured matmul peak (the roofline fraction)."""
    out: dict[str, Any] = {"size_mb": row["artifact"]["size_mb"], "gflops": None, "gflops_source": source,
                           "achieved_gflops_per_s": None, "roofline_fraction": None,
                           "matmul_peak_gflops_per_s": peak_gflops}
    if gflops is not None:
        achieved = gflops / (row["latency"]["inference_ms"]["p50"] / 1000)
        out.update(gflops=round(gflops, 3), achieved_gflops_per_s=round(achieved, 2),
                   roofline_fraction=round(achieved / peak_gflops, 4))
    return out


def restate_roofline(cost_entry: dict[str, Any], peak_gflops: float) -> dict[str, Any]:
    """The cost entry with its roofline fraction on the run's final peak."""
    out = {**cost_entry, "matmul_peak_gflops_per_s": peak_gflops}
    if out.get("achieved_gflops_per_s") is not None:
        out["roofline_fraction"] = round(out["achieved_gflops_per_s"] / peak_gflops, 4)
    return out


def matching_verification(manifest: Manifest, evalset: EvalSet) -> dict[str, Any] | None:
    """The manifest's verification entry scored on exactly the first images of `evalset` (byte for
    byte, in order, with masks), if there is one: those numbers the bench must reproduce."""
    for entry in (manifest.data.get("verification") or {}).get("sets", []):
        if "miou" in entry and _same_leading_images(Path(entry.get("source", "")), int(entry["images"]), evalset):
            return entry
    return None


def _same_leading_images(folder: Path, count: int, evalset: EvalSet) -> bool:
    """Does `convert.verify.image_sets_for`'s pick of `count` images from `folder` (its rule: the root
    val split when one is listed, else every image) hold the set's first `count` samples?"""
    if not folder.is_dir() or not 0 < count <= len(evalset.files):
        return False
    try:
        dataset = open_dataset(folder, evaluation_split(folder)).subset(count)
    except DatasetError:
        return False
    if len(dataset) != count or not dataset.has_masks:
        return False
    return all(filecmp.cmp(s.image_path, image, shallow=False) and filecmp.cmp(s.mask_path, mask, shallow=False)
               for s, (image, mask) in zip(dataset.samples, evalset.files))


def verification_check(recorded: dict[str, Any] | None, measured: dict[str, Any] | None) -> dict[str, Any]:
    """Does the bench reproduce the accuracy recorded at conversion on the same images?"""
    if recorded is None or measured is None:
        return {"comparable": False, "why": "verification at conversion did not score these images"}
    result = {"comparable": True, "images": recorded["images"], "source": recorded.get("source"),
              "recorded_miou": recorded["miou"], "bench_miou": round(measured["miou"], 4),
              "miou_difference": round(measured["miou"] - recorded["miou"], 4),
              "tolerance": CHECK_TOLERANCE}
    ok = abs(result["miou_difference"]) <= CHECK_TOLERANCE["miou_points"]
    if measured.get("argmax_agreement") is not None and "argmax_agreement" in recorded:
        result.update(recorded_argmax_agreement=recorded["argmax_agreement"],
                      bench_argmax_agreement=round(measured["argmax_agreement"], 6))
        ok = ok and abs(measured["argmax_agreement"] - recorded["argmax_agreement"]) <= CHECK_TOLERANCE["argmax_agreement"]
    result["agrees"] = ok
    return result


def peer_check(manifest: Manifest, evalset: EvalSet, accuracy: dict[str, Any]) -> dict[str, Any]:
    """A peer's mIoU against the score its manifest records (measured independently, see PROVENANCE)."""
    ref = (manifest.data.get("peer") or {}).get("reference_score")
    if not ref:
        return {"comparable": False, "why": "the peer manifest records no reference score"}
    result = {"set": ref.get("set"), "recorded_miou": ref.get("miou"), "tolerance": ref.get("tolerance"),
              "bench_miou": accuracy["miou"], "bench_images": accuracy["images"]}
    whole = len(_split_ids(evalset.root, evalset.split)) if evalset.split else None
    if whole != accuracy["images"]:
        return {**result, "comparable": False,
                "why": f"scored {accuracy['images']} images, not the whole '{evalset.split}' split the record is on"}
    result["comparable"] = True
    result["agrees"] = abs(accuracy["miou"] - ref["miou"]) <= float(ref.get("tolerance", 0))
    return result


def run_bench(config: BenchConfig, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure every row; return the results (the dict `benchmarks.report` writes as results.json).
    `on_row` receives the partial results after each row but the last."""
    return Bench(config).run(on_row)


