"""From a `BenchConfig` to the rows to measure: validation of the user's input (errors here are one
line, exit 2), the calibration each model's INT8 rows use, and one `RowPlan` per sweep cell, given
artifact or peer."""

from __future__ import annotations

from pathlib import Path

from edgeseg.benchmarks.config import BenchConfig
from edgeseg.benchmarks.evalsets import EvalSet, load_eval_set
from edgeseg.benchmarks.references import ModelEntry
from edgeseg.benchmarks.rows import RowKind, RowPlan
from edgeseg.datasets import split_ids
from edgeseg.errors import ConfigError
from edgeseg.resolution import parse_resolution
from edgeseg.runtime.backend import check_threads
from edgeseg.scenes import SYNTHETIC_LABELS
from edgeseg.targets import ALL_PRECISIONS, get_target

ASPP_VARIANTS = {"aspp-rewrite": True, "no-aspp-rewrite": False}
PEER_DIR = Path(__file__).resolve().parent / "peers"


def validate(c: BenchConfig) -> None:
    """Refuse a configuration that cannot succeed, before anything is loaded or converted."""
    for n, what in ((c.images, "--images"), (c.runs, "--runs"), (c.verify_images, "--verify-images"),
                    (c.calib_images, "--calib-images")):
        if n < 1:
            raise ConfigError(f"{what} {n}: must be at least 1")
    if c.warmup < 0:
        raise ConfigError(f"--warmup {c.warmup}: must be 0 or more")
    if c.threads is not None and c.threads < 1:  # the upper bound is the measuring machine's (`Bench.run`)
        check_threads(c.threads)
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


def default_calibration(config: BenchConfig, labels: tuple[str, ...]) -> tuple[str | None, str]:
    """INT8 calibration images and why: --calib; else the data's train split (never the images being
    scored); else, for a model of the synthetic classes, the synthetic calibration stream (seeded,
    disjoint from train and val scenes). Otherwise none: int8 rows then say what to pass."""
    if config.calibration:
        return config.calibration, "--calib"
    if config.data is not None and (config.data / "JPEGImages").is_dir() and split_ids(config.data, "train"):
        return str(config.data.resolve()), f"train split of {config.data}"
    if tuple(labels) == SYNTHETIC_LABELS:
        why = "synthetic calibration scenes (the model's classes are the synthetic ones)"
        return f"synthetic:{config.calib_images}", why
    return None, "none: pass --calib DIR or --calib synthetic:N"


def sweep_plans(c: BenchConfig, model: ModelEntry, calibration: str | None, evalset: EvalSet) -> list[RowPlan]:
    """One row per target x resolution x precision (x ASPP variant with --aspp-compare) of `model`."""
    variants = list(ASPP_VARIANTS.items()) if c.aspp_compare else [(None, None)]
    plans = []
    for target in c.targets:
        for res in c.resolutions:
            for precision in c.precisions:
                for variant, rewrite in variants:
                    options = {"calib_images": c.calib_images}
                    if rewrite is not None:
                        options["aspp_rewrite"] = rewrite
                    plans.append(RowPlan(RowKind.SWEEP, target=target, precision=precision, resolution=res, model=model,
                                         variant=variant, options=options,
                                         calibration=calibration if precision.startswith("int8") else None,
                                         evalset=evalset))
    return plans


def peer_manifests(c: BenchConfig) -> list[Path]:
    """--peer-manifest, else every manifest in benchmarks/peers/."""
    manifests = list(c.peer_manifests) or sorted(PEER_DIR.glob("*.json"))
    if not manifests:
        raise ConfigError(f"--peer: no peer manifests in {PEER_DIR} (the LiteRT peer manifest is not in this edgeseg)")
    return manifests


def peer_evalset(c: BenchConfig) -> EvalSet:
    """The peers' own data (VOC val): --peer-data, else ../shared/data/voc-sample."""
    if c.peer_data is not None:
        root = c.peer_data
    else:
        from edgeseg.convert.verify import default_real_images_dir

        root = default_real_images_dir()
        if root is None:
            raise ConfigError("--peer: no VOC data found (../shared/data/voc-sample); pass --peer-data DIR")
    return load_eval_set(root, "val", c.images, f"{Path(root).resolve().name} (val)", c.progress)
