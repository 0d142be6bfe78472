"""What one `edgeseg bench` run reads: `BenchConfig`, its defaults and the `--quick` sizes."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from edgeseg.convert.options import DEFAULT_CALIBRATION_IMAGES

# Defaults sized so the full sweep of the issue (2 targets x 2 resolutions x 3 precisions) fits in
# 15 minutes on a 2-core machine, conversions included.
DEFAULT_IMAGES = 50
DEFAULT_RUNS = 30
DEFAULT_WARMUP = 3
DEFAULT_VERIFY_IMAGES = 16
DEFAULT_CALIB_IMAGES = DEFAULT_CALIBRATION_IMAGES  # convert's own default
QUICK = {"images": 8, "runs": 10, "warmup": 2, "verify_images": 8, "calib_images": 8}


@dataclass(frozen=True)
class BenchConfig:
    """Everything one `edgeseg bench` run reads; validated by `benchmarks.planning.validate`."""

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
    calibration: str | None = None  # None: see `benchmarks.planning.default_calibration`
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

    def effective(self) -> BenchConfig:
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
