"""Target profiles: one small YAML file per device, read once and validated here.

The converter, argument validation, the benchmark and `edgeseg targets` all read this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from edgeseg.errors import ConfigError
from edgeseg.formats import all_formats
from edgeseg.formats.openvino import OpenVINOOptions
from edgeseg.formats.tensorrt import JetPackRelease, TensorRTOptions
from edgeseg.formats.tflite import LiteRTOptions
from edgeseg.optional import pip_install

PROFILE_DIR = Path(__file__).resolve().parent
# bf16: float weights, bfloat16 arithmetic (OpenVINO on x86 CPUs with AVX512_BF16 / AMX).
ALL_PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-dynamic")


def backend_sections() -> dict[str, type]:
    """Backend name -> the section that only targets of that backend have (the YAML key is the backend's
    name), as each format registers it."""
    return {f.backend: f.section for f in all_formats().values() if f.section is not None}


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    backend: str
    format: str
    precisions: tuple[str, ...]
    default_resolution: int
    threads: int
    # True when this workstation measures the target by running its backend on the host CPU
    # (LiteRT here stands in for the phone): its latencies are not the device's.
    host_proxy: bool = False
    tensorrt: TensorRTOptions | None = None
    litert: LiteRTOptions | None = None
    openvino: OpenVINOOptions | None = None

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            raise ConfigError(
                f"target {self.name} does not support precision '{precision}'; it supports: "
                f"{', '.join(self.precisions)}"
            )

    def tensorrt_options(self) -> TensorRTOptions:
        if self.tensorrt is None:
            raise ConfigError(f"target {self.name} is not a TensorRT target (its backend is {self.backend})")
        return self.tensorrt

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "description", "backend", "format", "default_resolution", "threads",
                                           "host_proxy")}
        d["precisions"] = list(self.precisions)
        for key in backend_sections():
            section = getattr(self, key)
            if section is not None:
                d[key] = section.to_dict()
        return d


def _section(path: Path, raw: dict, key: str):
    """Build the backend's own section; a section that belongs to another backend is an error."""
    fields = raw.pop(key, None)
    if fields is None:
        return None
    if raw["backend"] != key:
        raise ConfigError(f"{path}: a '{key}:' section belongs to {key} targets, not to backend {raw['backend']}")
    cls = backend_sections()[key]
    unknown = set(fields) - set(cls.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{path}: unknown keys in '{key}:' {sorted(unknown)}")
    try:
        if "jetpack" in fields:
            fields["jetpack"] = tuple(_jetpack_release(path, entry) for entry in fields["jetpack"])
        return cls(**fields)
    except TypeError as exc:
        raise ConfigError(f"{path}: '{key}:' section: {exc}") from None


def _jetpack_release(path: Path, entry: dict) -> JetPackRelease:
    """One `jetpack:` entry; versions are kept as strings ("3.10" must not become the float 3.1)."""
    if not isinstance(entry, dict) or set(entry) != {"release", "python", "tensorrt"}:
        raise ConfigError(f"{path}: each 'jetpack:' entry needs exactly release, python and tensorrt, got {entry!r}")
    values = {k: str(v) for k, v in entry.items()}
    for key in ("release", "python", "tensorrt"):
        parts = values[key].split(".")
        # An unquoted 3.10 reaches us as the float 3.1: only a quoted string keeps the version.
        if not isinstance(entry[key], str) or len(parts) < 2 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"{path}: JetPack {values['release']}: {key} {entry[key]!r} must be a quoted "
                              'MAJOR.MINOR string, e.g. "3.10"')
    return JetPackRelease(**values)


def _load(path: Path) -> TargetProfile:
    raw = yaml.safe_load(path.read_text())
    known = set(TargetProfile.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    bad = set(raw["precisions"]) - set(ALL_PRECISIONS)
    if bad or raw["format"] not in all_formats():
        raise ConfigError(f"{path}: bad precision {sorted(bad)} or format {raw['format']}")
    raw["precisions"] = tuple(raw["precisions"])
    if raw["name"] != path.stem:
        raise ConfigError(f"{path}: name '{raw['name']}' differs from the file name")
    raw.update({key: _section(path, raw, key) for key in backend_sections()})
    if raw["backend"] in backend_sections() and raw[raw["backend"]] is None:
        raise ConfigError(f"{path}: a {raw['backend']} target needs its '{raw['backend']}:' section")
    return TargetProfile(**raw)


@cache
def all_targets() -> dict[str, TargetProfile]:
    return {p.stem: _load(p) for p in sorted(PROFILE_DIR.glob("*.yaml"))}


def get_target(name: str) -> TargetProfile:
    targets = all_targets()
    if name not in targets:
        raise ConfigError(f"unknown target '{name}'; choose one of: {', '.join(targets)}")
    return targets[name]


def version_tuple(version: str) -> tuple[int, ...]:
    """(1, 23, 2) from "1.23.2": the leading dotted numbers (a pre-release or local tail is ignored)."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def engine_floor_problem(artifact_format: str, installed: str | None) -> str | None:
    """A line saying the installed engine is older than the format's measured floor, else None."""
    fmt = all_formats().get(artifact_format)
    if fmt is None or fmt.engine_min_version is None or installed is None:
        return None
    if version_tuple(installed) >= version_tuple(fmt.engine_min_version):
        return None
    return (f"{fmt.engine_package} {installed} is older than {fmt.engine_min_version}, the oldest release "
            f"{artifact_format} artifacts are verified to load with the same masks "
            f"({pip_install(f'{fmt.engine_package}>={fmt.engine_min_version}')})")
