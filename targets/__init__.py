"""Target profiles: one small YAML file per device, read once and validated here.

The converter, argument validation, the benchmark and `edgeseg targets` all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from edgeseg.errors import ConfigError

PROFILE_DIR = Path(__file__).resolve().parent
ALL_PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")
FORMATS = ("onnx", "tflite", "tensorrt-bundle")


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    backend: str
    format: str
    precisions: tuple[str, ...]
    default_resolution: int
    threads: int
    delegate: str | None = None
    workspace_mb: int | None = None
    dla_cores: int = 0
    gpu_fallback: bool = True
    tensorrt_versions: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            raise ConfigError(
                f"target {self.name} does not support precision '{precision}'; it supports: {', '.join(self.precisions)}"
            )

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "description", "backend", "format", "default_resolution", "threads")}
        d["precisions"] = list(self.precisions)
        for key in ("delegate", "workspace_mb"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.format == "tensorrt-bundle":
            d.update(dla_cores=self.dla_cores, gpu_fallback=self.gpu_fallback, tensorrt_versions=list(self.tensorrt_versions))
        return d


def _load(path: Path) -> TargetProfile:
    raw = yaml.safe_load(path.read_text())
    known = {f for f in TargetProfile.__dataclass_fields__ if f != "extra"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    bad = set(raw["precisions"]) - set(ALL_PRECISIONS)
    if bad or raw["format"] not in FORMATS:
        raise ConfigError(f"{path}: bad precision {sorted(bad)} or format {raw['format']}")
    raw["precisions"] = tuple(raw["precisions"])
    raw["tensorrt_versions"] = tuple(str(v) for v in raw.get("tensorrt_versions", ()))
    if raw["name"] != path.stem:
        raise ConfigError(f"{path}: name '{raw['name']}' differs from the file name")
    return TargetProfile(**raw)


@lru_cache(maxsize=None)
def all_targets() -> dict[str, TargetProfile]:
    return {p.stem: _load(p) for p in sorted(PROFILE_DIR.glob("*.yaml"))}


def get_target(name: str) -> TargetProfile:
    targets = all_targets()
    if name not in targets:
        raise ConfigError(f"unknown target '{name}'; choose one of: {', '.join(targets)}")
    return targets[name]
