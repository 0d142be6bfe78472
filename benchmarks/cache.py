"""Sweep artifacts, converted on demand into a cache keyed by everything the conversion reads
(weights, target profile, precision, resolution, options, calibration, verification images), so a
second sweep only measures. A folder is complete once its manifest is published (written last)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

import edgeseg
from edgeseg.benchmarks.evalsets import verification_view
from edgeseg.benchmarks.rows import STATUS_FAILED, STATUS_NOT_RUN, RowPlan, SweepCell, artifact_info, set_status
from edgeseg.errors import BackendUnavailableError, EdgesegError, ManifestError, VerificationError, first_line
from edgeseg.formats import all_formats
from edgeseg.manifest import Manifest, load_manifest
from edgeseg.resolution import parse_resolution, resolution_tag
from edgeseg.runtime.backend import available_backends
from edgeseg.targets import TargetProfile, get_target

CACHE_KEY_FILE = "bench-cache-key.json"


def cache_key(inputs: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of the conversion inputs (sorted JSON)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def obtain_artifact(plan: RowPlan, row: dict, *, cache: Path, verify_images: int,
                    bar: tqdm | None = None) -> Manifest | None:
    """The sweep cell's artifact from the cache, or converted now; None when the row ends here."""
    cell = plan.cell()
    target = get_target(cell.target)
    height, width = parse_resolution(cell.resolution)
    row.update(resolution=resolution_tag((height, width)), input_hw=[height, width])
    why_not = why_not_convertible(plan, cell.precision, target)
    if why_not is not None:
        set_status(row, STATUS_NOT_RUN, why_not)
        return None
    evalset = plan.evalset
    verify_images = min(verify_images, len(evalset.ids))
    verify_data = verification_view(evalset, verify_images, cache)
    inputs = {"edgeseg": edgeseg.__version__, "weights": cell.model.weights_key, "arch": cell.model.name,
              "target": target.to_dict(), "precision": cell.precision, "resolution": [height, width],
              "output_kind": "logits", "fuse_preprocessing": False, "options": plan.options,
              "calibration": plan.calibration, "verify_data": str(verify_data), "verify_images": verify_images}
    folder = cache / f"{cell.model.name}-{target.name}-{cell.precision}-{row['resolution']}-{cache_key(inputs)}"
    manifest = cached_manifest(folder)
    if manifest is not None:
        row["artifact"] = artifact_info(manifest, from_cache=True)
        return manifest
    on_stage: Callable[[str], None] | None = None
    if bar is not None:
        # The conversion's own stages on the bar (it used to sit at "converting" for a minute or more).
        def show_stage(stage: str) -> None:
            bar.set_postfix_str(f"{plan.label()}: converting: {stage}")
            bar.refresh()

        show_stage("starting")
        on_stage = show_stage
    return _convert_into(folder, plan, cell, row, inputs, on_stage)


def why_not_convertible(plan: RowPlan, precision: str, target: TargetProfile) -> str | None:
    """Why this edgeseg cannot convert the cell (a `not run` reason), or None when it can."""
    exporter = all_formats()[target.format].exporter_for(precision)
    if precision not in target.precisions:
        return f"{target.name} has no {precision} (it supports {', '.join(target.precisions)})"
    if target.backend not in available_backends():
        return f"this edgeseg has no '{target.backend}' backend (formats/{target.format}/)"
    if importlib.util.find_spec(exporter) is None:
        return f"this edgeseg has no {target.format} exporter ({exporter})"
    if plan.variant == "aspp-rewrite" and importlib.util.find_spec("edgeseg.convert.aspp_rewrite") is None:
        return "the ASPP rewrite (convert/aspp_rewrite.py) is not in this edgeseg"
    if precision.startswith("int8") and precision != "int8-dynamic" and plan.calibration is None:
        return "int8 needs calibration images: pass --calib DIR (or --calib synthetic:N)"
    return None


def _convert_into(folder: Path, plan: RowPlan, cell: SweepCell, row: dict, inputs: dict[str, Any],
                  on_stage: Callable[[str], None] | None = None) -> Manifest | None:
    """Convert the cell into `folder`, the key file after the conversion's own atomic writes; a
    failure ends the row (`not run` for a missing tool, `failed` at export or verification)."""
    from edgeseg.atomic import write_json_atomic
    from edgeseg.convert.pipeline import ConvertRequest, convert

    weights = cell.model.weights
    request = ConvertRequest(target=cell.target, precision=cell.precision, resolution=cell.resolution,
                             weights=weights.source if Path(weights.source).is_file() else cell.model.weights_arg,
                             arch=cell.model.name, out=folder, calibration=plan.calibration,
                             verify_data=inputs["verify_data"], verify_images=inputs["verify_images"],
                             options=dict(plan.options), progress=False, on_stage=on_stage)
    started = time.perf_counter()
    try:
        result = convert(request)
    except BackendUnavailableError as exc:
        set_status(row, STATUS_NOT_RUN, str(exc))
        return None
    except VerificationError as exc:
        set_status(row, STATUS_FAILED, str(exc), "verification")
        return None
    except ModuleNotFoundError as exc:
        set_status(row, STATUS_NOT_RUN, f"conversion needs the '{exc.name}' package, which is not installed here")
        return None
    except EdgesegError as exc:
        set_status(row, STATUS_FAILED, str(exc), "export")
        return None
    except Exception as exc:  # noqa: BLE001 - exporters raise their frameworks' own types; the row records it
        set_status(row, STATUS_FAILED, error_reason(exc), "export")
        return None
    write_json_atomic(folder / CACHE_KEY_FILE, inputs)
    manifest = load_manifest(result["manifest_path"])
    row["artifact"] = artifact_info(manifest, from_cache=False)
    row["artifact"]["conversion_s"] = round(time.perf_counter() - started, 1)
    return manifest


def error_reason(exc: BaseException) -> str:
    """`Type: first line of the message` (at most 240 characters): a foreign error as a row reason."""
    return f"{type(exc).__name__}: {first_line(exc)[:240]}"


def cached_manifest(folder: Path) -> Manifest | None:
    """The manifest published in a cache folder, if a conversion there completed (manifest last)."""
    if not (folder / CACHE_KEY_FILE).is_file():
        return None
    manifests = [p for p in folder.glob("*.json") if p.name != CACHE_KEY_FILE and not p.name.startswith(".")]
    if len(manifests) != 1:
        return None
    try:
        return load_manifest(manifests[0])
    except ManifestError:
        return None
