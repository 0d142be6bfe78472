"""The manifest: one JSON file beside every artifact, saying everything the runtime needs.

Reader and writer live here, at the package top, so the device side (`runtime/`) reads it without
pulling in the conversion stack. Manifest of `model.onnx` is `model.onnx.json`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import ManifestError
from edgeseg.input_spec import InputSpec

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".json"
REQUIRED_KEYS = ("artifact", "backend", "target", "precision", "model", "input", "output")


def manifest_path_for(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks (weights and engines can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    path: Path  # the manifest file itself
    data: dict[str, Any]

    @property
    def artifact_path(self) -> Path:
        return self.path.parent / self.data["artifact"]

    @property
    def backend(self) -> str:
        return self.data["backend"]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.data["model"]["labels"])

    @property
    def num_classes(self) -> int:
        return int(self.data["model"]["num_classes"])

    def input_spec(self) -> InputSpec:
        return InputSpec.from_dict(self.data["input"])

    @property
    def output(self) -> dict[str, Any]:
        return self.data["output"]


def resolve_manifest_path(path: Path | str) -> Path:
    """Accept the manifest, the artifact, or a folder holding exactly one manifest."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob(f"*{MANIFEST_SUFFIX}"))
        found = [p for p in found if not p.name.startswith(".")]
        if len(found) != 1:
            raise ManifestError(f"{path}: expected one manifest (*.json) in the folder, found {len(found)}")
        return found[0]
    if path.suffix == MANIFEST_SUFFIX and path.name.count(".") >= 2:
        return path
    candidate = manifest_path_for(path)
    if candidate.is_file():
        return candidate
    if not path.exists():
        raise ManifestError(f"{path}: no such artifact")
    raise ManifestError(f"{path}: has no manifest beside it (expected {candidate.name}); convert it with edgeseg or write one")


def load_manifest(path: Path | str, *, check_artifact: bool = True) -> Manifest:
    """Read and validate a manifest; with `check_artifact`, the artifact must exist beside it."""
    mpath = resolve_manifest_path(path)
    try:
        data = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{mpath}: manifest not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{mpath}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{mpath}: not a manifest (top level is not an object)")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ManifestError(f"{mpath}: manifest lacks {', '.join(missing)}")
    for key in ("height", "width"):
        if key not in data["input"]:
            raise ManifestError(f"{mpath}: manifest input lacks {key}")
    manifest = Manifest(mpath, data)
    if check_artifact and not manifest.artifact_path.is_file():
        raise ManifestError(f"{manifest.artifact_path}: artifact named by {mpath.name} is missing")
    return manifest
