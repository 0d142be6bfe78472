"""Checks of a row's numbers against what was recorded elsewhere: the accuracy verification
measured at conversion on the same images, and a peer's independently measured score."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

from edgeseg.benchmarks.evalsets import EvalSet
from edgeseg.datasets import evaluation_split, open_dataset, split_ids
from edgeseg.errors import DatasetError
from edgeseg.manifest import Manifest

# The bench's mIoU on the verification images must reproduce the number recorded at conversion
# (same images, same preprocessing, same metric). The only freedom left is the thread count:
# a different split of a reduction can flip a pixel whose two best logits tie to ~1e-6.
CHECK_TOLERANCE = {"miou_points": 0.05, "argmax_agreement": 0.0005}


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
    return all(s.mask_path is not None and filecmp.cmp(s.image_path, image, shallow=False)
               and filecmp.cmp(s.mask_path, mask, shallow=False)
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
        difference = abs(measured["argmax_agreement"] - recorded["argmax_agreement"])
        ok = ok and difference <= CHECK_TOLERANCE["argmax_agreement"]
    result["agrees"] = ok
    return result


def peer_check(manifest: Manifest, evalset: EvalSet, accuracy: dict[str, Any]) -> dict[str, Any]:
    """A peer's mIoU against the score its manifest records (measured independently, see PROVENANCE)."""
    ref = (manifest.data.get("peer") or {}).get("reference_score")
    if not ref:
        return {"comparable": False, "why": "the peer manifest records no reference score"}
    result = {"set": ref.get("set"), "recorded_miou": ref.get("miou"), "tolerance": ref.get("tolerance"),
              "bench_miou": accuracy["miou"], "bench_images": accuracy["images"]}
    whole = len(split_ids(evalset.root, evalset.split)) if evalset.split else None
    if whole != accuracy["images"]:
        return {**result, "comparable": False,
                "why": f"scored {accuracy['images']} images, not the whole '{evalset.split}' split the record is on"}
    result["comparable"] = True
    result["agrees"] = abs(accuracy["miou"] - ref["miou"]) <= float(ref.get("tolerance", 0))
    return result

