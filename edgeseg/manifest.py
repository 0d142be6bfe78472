"""The manifest: one JSON file beside every artifact, saying everything the runtime needs.

Reader and writer live here, at the package top, so the device side (`runtime/`) reads it without
pulling in the conversion stack. Manifest of `model.onnx` is `model.onnx.json`.

Nothing false is used: a manifest is checked against its schema when read (required fields and
their types, one label per class, the normalization stated, the artifact inside the manifest's
folder, no format newer than this reader), and the artifact's sha256 must match the manifest's
before anything runs it. Conversion publishes the artifact before its manifest, so a reader that
meets a new artifact beside an old manifest (a crash between the two renames) sees a mismatch,
never a wrong pair.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.conventions import OUTPUT_KINDS
from edgeseg.errors import ManifestError
from edgeseg.input_spec import COLOR_ORDERS, INPUT_LAYOUTS, PIXEL_SCALE, QUANTIZED_DTYPES, RESIZE_MODES, InputSpec

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".json"
REQUIRED_KEYS = ("artifact", "backend", "target", "precision", "model", "input", "output")
# The layouts each kind of output comes in. 'foreground' (one channel of foreground probability, MediaPipe's
# selfie segmenters) only comes from a .tflite's own metadata, never from a manifest file.
OUTPUT_LAYOUTS: dict[str, tuple[str, ...]] = {"logits": ("NCHW", "NHWC"), "mask": ("NHW",),
                                              "foreground": ("NCHW", "NHWC")}
# Field -> required type, per section ("" is the top level). bool is refused where int is asked.
SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"format_version": int, "artifact": str, "artifact_sha256": str, "backend": str, "target": str,
         "precision": str, "model": dict, "input": dict, "output": dict},
    "model": {"num_classes": int, "labels": list},
    "input": {"height": int, "width": int, "normalization": (str, dict)},
    "output": {"kind": str},
}


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
class OutputSpec:
    """What a model outputs, as its manifest records it: class scores ('logits', NCHW or NHWC), the argmax
    mask ('mask', NHW) or one channel of foreground probability ('foreground', NCHW or NHWC)."""

    kind: str
    layout: str
    dtype: str | None = None  # recorded by conversion; the decoder takes whatever the engine returns
    name: str | None = None

    @classmethod
    def from_dict(cls, output: dict[str, Any], mpath: Path,
                  kinds: tuple[str, ...] = tuple(OUTPUT_LAYOUTS)) -> OutputSpec:
        """The manifest's `output` section, checked: one ManifestError line naming `mpath` for a kind not in
        `kinds` or a layout that kind does not come in. A missing layout is the kind's first (NCHW, NHW)."""
        kind = output.get("kind", "logits")
        if kind not in kinds:
            raise ManifestError(f"{mpath}: manifest output.kind '{kind}' is not one of {', '.join(kinds)}")
        layouts = OUTPUT_LAYOUTS[kind]
        layout = output.get("layout", layouts[0])
        if layout not in layouts:
            raise ManifestError(f"{mpath}: manifest output.layout '{layout}' is not one of {', '.join(layouts)} "
                                f"(the layouts of a '{kind}' output)")
        return cls(kind=kind, layout=layout, dtype=output.get("dtype"), name=output.get("name"))


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

    def output_spec(self) -> OutputSpec:
        """The output's kind and layout: the one place they are read (one ManifestError line when wrong)."""
        return OutputSpec.from_dict(self.output, self.path)

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
    raise ManifestError(f"{path}: has no manifest beside it (expected {candidate.name}); convert it with edgeseg or "
                        "write one")


def _type_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def _check_fields(data: dict, mpath: Path) -> None:
    for section, fields in SCHEMA.items():
        part = data[section] if section else data
        for key, kind in fields.items():
            name = f"{section}.{key}" if section else key
            if key not in part:
                raise ManifestError(f"{mpath}: manifest lacks {name}")
            value = part[key]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
                raise ManifestError(f"{mpath}: manifest field {name} is {type(value).__name__}, expected "
                                    f"{_type_name(kind)}")


def _check_normalization(norm: Any, mpath: Path) -> None:
    if norm == "in_model":
        return
    if not isinstance(norm, dict):
        raise ManifestError(f"{mpath}: manifest input.normalization must be 'in_model' or {{mean, std}}, got {norm!r}")
    for key in ("mean", "std"):
        values = norm.get(key)
        if (not isinstance(values, list) or len(values) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise ManifestError(f"{mpath}: manifest input.normalization.{key} must be three numbers, got {values!r}")
        if not all(math.isfinite(v) for v in values):
            raise ManifestError(f"{mpath}: manifest input.normalization.{key} must be finite, got {json.dumps(values)}")
    if any(v <= 0 for v in norm["std"]):
        raise ManifestError(f"{mpath}: manifest input.normalization.std must be positive, got {norm['std']}")
    # The preprocessing always maps 0..255 to 0..1 first: a manifest asking for another scale would be ignored.
    scale = norm.get("scale", PIXEL_SCALE)
    if not _is_finite_number(scale) or abs(scale - PIXEL_SCALE) > 1e-9:
        raise ManifestError(f"{mpath}: manifest input.normalization.scale {json.dumps(scale)} is not 1/255, the only "
                            "pixel scale edgeseg applies")


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_input(inp: dict, mpath: Path) -> None:
    """The input section's values are ones the preprocessing implements (its types are checked by SCHEMA)."""
    if inp["height"] < 1 or inp["width"] < 1:
        raise ManifestError(f"{mpath}: manifest input size {inp['width']}x{inp['height']} is not positive")
    for key, allowed, default in (("layout", INPUT_LAYOUTS, "NCHW"), ("color_order", COLOR_ORDERS, "RGB"),
                                  ("resize", RESIZE_MODES, "stretch")):
        if inp.get(key, default) not in allowed:
            raise ManifestError(f"{mpath}: manifest input.{key} {json.dumps(inp[key])} is not one of "
                                f"{', '.join(allowed)}")
    _check_normalization(inp["normalization"], mpath)
    quant = inp.get("quantization")
    if quant is None:
        return
    if inp.get("dtype") not in QUANTIZED_DTYPES:
        raise ManifestError(f"{mpath}: manifest input.quantization is for an {' or '.join(QUANTIZED_DTYPES)} input; "
                            f"this one is {json.dumps(inp.get('dtype', 'float32'))}")
    if (not isinstance(quant, dict) or not _is_finite_number(quant.get("scale")) or quant["scale"] <= 0
            or isinstance(quant.get("zero_point"), bool) or not isinstance(quant.get("zero_point"), int)):
        raise ManifestError(f"{mpath}: manifest input.quantization must hold a positive finite scale and a whole "
                            f"zero_point, got {json.dumps(quant)}")


def runtime_threads(data: dict, mpath: Path) -> int | None:
    """The manifest's runtime.threads: None when it names none, else a count (1 or more; the runtime caps it
    at this machine's cores when it uses it); anything else is one ManifestError line."""
    runtime = data.get("runtime", {})
    if not isinstance(runtime, dict):
        raise ManifestError(f"{mpath}: manifest runtime is {type(runtime).__name__}, expected dict")
    threads = runtime.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ManifestError(f"{mpath}: manifest runtime.threads {json.dumps(threads)} must be a whole number, "
                            "1 or more")
    return threads


def validate_manifest(data: Any, mpath: Path) -> None:
    """Raise one ManifestError line for the first way `data` is not a manifest this edgeseg can trust."""
    if not isinstance(data, dict):
        raise ManifestError(f"{mpath}: not a manifest (top level is not an object)")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ManifestError(f"{mpath}: manifest lacks {', '.join(missing)}")
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > MANIFEST_VERSION:
        raise ManifestError(f"{mpath}: manifest format_version {version} is newer than this edgeseg reads "
                            f"({MANIFEST_VERSION}); upgrade edgeseg to use it")
    _check_fields(data, mpath)
    version = data["format_version"]  # an int from here on
    if version < 1:
        raise ManifestError(f"{mpath}: manifest format_version {version} is not a version (1 is the first)")
    model, inp = data["model"], data["input"]
    if model["num_classes"] < 1 or not all(isinstance(name, str) for name in model["labels"]):
        raise ManifestError(f"{mpath}: manifest model.num_classes must be >= 1 and model.labels names (strings)")
    if len(model["labels"]) != model["num_classes"]:
        raise ManifestError(f"{mpath}: manifest has {len(model['labels'])} labels for {model['num_classes']} classes")
    _check_input(inp, mpath)
    runtime_threads(data, mpath)
    OutputSpec.from_dict(data["output"], mpath, OUTPUT_KINDS)
    sha = data["artifact_sha256"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{mpath}: manifest artifact_sha256 is not a sha256 (64 lowercase hex digits)")
    _check_artifact_location(data, mpath)


def _check_artifact_location(data: dict, mpath: Path) -> None:
    # A hand-written manifest for a file edgeseg did not produce (the public peers) may say so and point
    # elsewhere; its sha256 still pins the file. Anything else names a file in its own folder.
    if data.get("external_artifact") is True:
        return
    # normpath, not resolve: an artifact symlinked into the folder is fine (the sha256 pins the bytes).
    folder = Path(os.path.normpath(mpath.parent.absolute()))
    if Path(os.path.normpath(folder / data["artifact"])).parent != folder:
        raise ManifestError(f"{mpath}: manifest names an artifact outside its folder ({data['artifact']}); "
                            f"keep the artifact beside its manifest")


# (resolved path, size, mtime_ns) -> sha256: a demo or benchmark that opens one artifact many times
# hashes it once; any write to the file changes its size or mtime and so is hashed again.
_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def cached_sha256(path: Path) -> str:
    """sha256_file, remembered per (path, size, mtime_ns) for the life of the process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        known = _SHA_CACHE.get(key)
    if known is None:
        known = sha256_file(path)
        with _SHA_LOCK:
            _SHA_CACHE[key] = known
    return known


def verify_artifact(manifest: Manifest) -> None:
    """Raise one line unless the artifact exists and its sha256 is the one its manifest records."""
    path = manifest.artifact_path
    if not path.is_file():
        raise ManifestError(f"{path}: artifact named by {manifest.path.name} is missing")
    expected = manifest.data.get("artifact_sha256")
    if expected is None:
        raise ManifestError(f"{manifest.path}: manifest lacks artifact_sha256, so {path.name} cannot be checked")
    actual = cached_sha256(path)
    if actual != expected:
        raise ManifestError(f"{path}: sha256 {actual[:12]}… does not match {manifest.path.name} ({expected[:12]}…): "
                            f"the artifact changed or is not the one its manifest describes; convert it again")


def load_manifest(path: Path | str, *, check_artifact: bool = True) -> Manifest:
    """Read and validate a manifest; with `check_artifact`, the artifact must exist beside it and
    match the manifest's sha256."""
    mpath = resolve_manifest_path(path)
    try:
        data = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{mpath}: manifest not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{mpath}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise ManifestError(f"{mpath}: cannot read the manifest ({exc.strerror})") from None
    validate_manifest(data, mpath)
    manifest = Manifest(mpath, data)
    if check_artifact:
        verify_artifact(manifest)
    return manifest
