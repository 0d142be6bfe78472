"""A conversion request, checked in full before any model is built or heavy framework imported.

Everything a user can get wrong on the command line (target, precision, resolution, output kind,
calibration needed and present, files present and readable, output folder writable, an artifact
of other weights already under the same name) is answered here in milliseconds: numpy, torch
and onnx are not imported by this module.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.atomic import ensure_writable_dir, interrupted_publish
from edgeseg.conventions import DEFAULT_ARCH, OUTPUT_KINDS, SAMPLE_NAME, sample_checkpoint_path
from edgeseg.convert.options import DEFAULT_VERIFY_IMAGES, PERCENTILE_ABOVE, PERCENTILE_MAX
from edgeseg.cpu_features import require_bfloat16
from edgeseg.errors import ConfigError, WeightsError
from edgeseg.formats import all_formats
from edgeseg.label_names import read_label_names
from edgeseg.manifest import manifest_path_for, sha256_file
from edgeseg.resolution import parse_resolution, resolution_tag
from edgeseg.targets import TargetProfile, get_target

NEEDS_CALIBRATION = ("int8",)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class ConvertRequest:
    target: str
    precision: str
    resolution: str
    weights: str
    out: Path
    arch: str | None = None
    labels_file: Path | None = None
    output_kind: str = "logits"
    fuse_preprocessing: bool = False
    calibration: str | None = None
    verify_data: str | None = None
    verify_images: int = DEFAULT_VERIFY_IMAGES
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    name: str | None = None  # the weights' identity in the artifact name (default: see weights_identity)
    force: bool = False  # replace an artifact of other weights under the same name
    # Told each stage as it starts ("loading weights", "ASPP check", "export", "verification"): a caller's
    # progress bar (the benchmark's) shows where a conversion is instead of sitting at "converting".
    on_stage: Callable[[str], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ConvertPlan:
    """What a valid request resolves to, before any work."""

    target: TargetProfile
    height: int
    width: int
    basename: str  # artifact file name without suffix
    artifact: Path  # where the artifact will be published
    weights_sha256: str | None  # of the weights file (None: torchvision's download)


def weights_identity(weights: str, arch: str | None) -> str:
    """The weights' part of an artifact name: 'sample', a checkpoint's file stem, or for torchvision's
    download the architecture (its weights are known by the model's name)."""
    if weights == "sample":
        return "sample"
    if weights == "torchvision":
        return arch or DEFAULT_ARCH
    path = Path(weights)
    if path.name == SAMPLE_NAME and path.resolve() == sample_checkpoint_path():
        return "sample"
    return path.stem


def artifact_basename(identity: str, target: str, precision: str, hw: tuple[int, int], output_kind: str,
                      fused: bool) -> str:
    """`<weights>-<target>-<precision>-<resolution>[-mask][-u8in]`: every choice that makes the file differ."""
    parts = [identity, target, precision, resolution_tag(hw)]
    if output_kind == "mask":
        parts.append("mask")
    if fused:
        parts.append("u8in")
    return "-".join(parts)


def _weights_file(request: ConvertRequest) -> Path | None:
    if request.weights == "torchvision":
        return None
    if request.weights == "sample":
        path = sample_checkpoint_path()
        if not path.is_file():
            raise WeightsError(f"{path}: the sample checkpoint is missing from this installation")
        return path
    path = Path(request.weights)
    if path.exists() and not path.is_file():
        raise WeightsError(f"{path}: is not a weights file (a folder, a named pipe or a device)")
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if not os.access(path, os.R_OK):
        raise WeightsError(f"{path}: weights file is not readable (permission denied)")
    return path


def _check_calibration(request: ConvertRequest, target: TargetProfile) -> None:
    if request.precision not in NEEDS_CALIBRATION:
        return
    spec = request.calibration
    if not spec:
        raise ConfigError(f"{request.precision} needs calibration images: pass --calib DIR (or --calib synthetic:N); "
                          "edgeseg never calibrates on random data")
    if spec.startswith("synthetic:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(f"--calib {spec}: expected synthetic:N with N a number of scenes, at least 1")
    elif not Path(spec).is_dir():
        raise ConfigError(f"--calib {spec}: no such folder (a folder of images, VOC layout or images/+masks/)")
    else:
        from edgeseg.convert.calibration import check_calibration_folder  # numpy and OpenCV, no torch

        # A folder without a readable image: now, not after export and verification.
        check_calibration_folder(Path(spec), request.options.get("calib_images"))
    fmt = all_formats()[target.format]
    if not fmt.calibration_methods and request.options.get("calib_method"):
        raise ConfigError(f"--calib-method {request.options['calib_method']}: applies to Q/DQ ONNX (host-cpu, Jetson); "
                          f"{target.format} INT8 uses {fmt.weight_quantizer}'s own calibration")


def _check_counts(request: ConvertRequest) -> None:
    """Image counts: 1 or more. (0 used to mean the default without a word; a negative reached the libraries.)"""
    for option, value in (("--verify-images", request.verify_images),
                          ("--calib-images", request.options.get("calib_images"))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{option} {value}: must be 1 or more")


def _check_percentile(request: ConvertRequest) -> None:
    """--calib-percentile: a number in (50, 100], and only with --calib-method percentile (elsewhere it was
    silently ignored; NaN or -5 reached ONNX Runtime's calibrator after export)."""
    value = request.options.get("calib_percentile")
    if value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not PERCENTILE_ABOVE < value <= PERCENTILE_MAX):
        raise ConfigError(f"--calib-percentile {value}: must be a number above {PERCENTILE_ABOVE:g} and at most "
                          f"{PERCENTILE_MAX:g}")
    if request.options.get("calib_method") != "percentile":
        raise ConfigError(f"--calib-percentile {value}: applies to --calib-method percentile only")


def _check_graph_options(request: ConvertRequest, target: TargetProfile) -> None:
    """Options only some targets' exports take: refused elsewhere, not silently ignored."""
    int8_io = request.options.get("int8_io")
    if int8_io not in (None, "float") and target.litert is None:
        raise ConfigError(f"--int8-io {int8_io}: only a TFLite model (the android-* targets) has integer "
                          f"input/output; {target.name} takes and gives float")
    if request.options.get("region_split") is False and not (target.litert and target.litert.splits_dilated_convs):
        raise ConfigError(f"--no-region-split: only android-cpu (LiteRT with XNNPACK) splits dilated convolutions "
                          f"by region; {target.name}'s export keeps them whole already")


def _check_labels_file(request: ConvertRequest) -> None:
    """--labels names a plain state dict's classes: readable UTF-8 now; weights that carry their own labels
    (the sample, torchvision's, an edgeseg checkpoint: see models.weights) refuse it instead of ignoring it."""
    if request.labels_file is None:
        return
    if request.weights in ("sample", "torchvision"):
        raise ConfigError(f"--labels {request.labels_file}: --weights {request.weights} carries its own label "
                          "names; leave --labels out")
    read_label_names(Path(request.labels_file), WeightsError)


def _check_files(request: ConvertRequest) -> None:
    _check_labels_file(request)
    if request.verify_data and not Path(request.verify_data).is_dir():
        raise ConfigError(f"--verify-data {request.verify_data}: no such folder")
    if request.name is not None and not _NAME.fullmatch(request.name):
        raise ConfigError(f"--name {request.name}: use letters, digits, '.', '_', '+' and '-' (no '/' or spaces)")


def check_name_free(artifact: Path, weights_sha256: str | None, force: bool) -> None:
    """Refuse to replace an artifact of *other* weights unless `force`.

    The same weights converted again may replace their artifact (a re-run after changing an option is
    the normal case); weights are the same when their sha256 matches (torchvision's download: when the
    existing artifact also came from torchvision).
    """
    manifest = manifest_path_for(artifact)
    if force or not (artifact.exists() or manifest.exists()) or interrupted_publish(artifact):
        return  # (a killed run's half-published artifact is replaced: its manifest never appeared)
    try:
        existing = json.loads(manifest.read_text())["model"]
        same = (existing.get("weights_sha256") == weights_sha256 if weights_sha256 is not None
                else str(existing.get("weights_source", "")).startswith("torchvision:"))
        other = existing.get("weights_source")
    except (OSError, ValueError, KeyError, TypeError):
        same, other = False, "unknown weights (no readable manifest)"
    if not same:
        raise ConfigError(f"{artifact}: already holds an artifact of other weights ({other}); "
                          f"pass --name NAME to keep both, or --force to replace it")


def plan(request: ConvertRequest) -> ConvertPlan:
    """Check the whole request (no model built, nothing heavy imported); raise one line per problem."""
    target = get_target(request.target)
    target.check_precision(request.precision)
    if request.precision == "bf16":  # verified under bf16 arithmetic: this CPU must have it
        require_bfloat16(f"--precision bf16 for {target.name}")
    height, width = parse_resolution(request.resolution)
    if request.output_kind not in OUTPUT_KINDS:
        raise ConfigError(f"--output {request.output_kind}: choose one of {', '.join(OUTPUT_KINDS)}")
    _check_counts(request)
    _check_percentile(request)
    _check_calibration(request, target)
    _check_graph_options(request, target)
    _check_files(request)
    weights_path = _weights_file(request)
    ensure_writable_dir(request.out)
    identity = request.name or weights_identity(request.weights, request.arch)
    basename = artifact_basename(identity, target.name, request.precision, (height, width),
                                 request.output_kind, request.fuse_preprocessing)
    artifact = request.out / f"{basename}{all_formats()[target.format].suffix}"
    sha = sha256_file(weights_path) if weights_path is not None else None
    check_name_free(artifact, sha, request.force)
    return ConvertPlan(target=target, height=height, width=width, basename=basename, artifact=artifact,
                       weights_sha256=sha)
