"""Compare any artifact's outputs with the golden PyTorch FP32 references, with a tolerance per precision.

Every conversion test calls `assert_matches_golden(backend, precision)`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.datasets import read_image_rgb
from edgeseg.metrics import ConfusionMatrix

GOLDEN = Path(__file__).resolve().parent / "sample_golden.npz"
REPO = Path(__file__).resolve().parents[2]

# Agreement with the golden argmax, largest |logit| difference, and largest mIoU loss (points, on the
# synthetic scenes' ground truth) allowed per precision.
TOLERANCES = {
    "fp32": {"min_agreement": 0.999, "max_abs_logit_diff": 1e-3, "max_miou_drop": 0.1},
    "fp16": {"min_agreement": 0.995, "max_abs_logit_diff": None, "max_miou_drop": 0.5},
    "int8": {"min_agreement": 0.90, "max_abs_logit_diff": None, "max_miou_drop": 1.0},
    "int8-dynamic": {"min_agreement": 0.90, "max_abs_logit_diff": None, "max_miou_drop": 1.0},
}


@dataclass
class GoldenCase:
    name: str
    image: np.ndarray
    gt: np.ndarray | None


@lru_cache(maxsize=1)
def _arrays() -> dict:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


def golden_resolutions() -> tuple[int, ...]:
    return tuple(sorted({int(k.split("/")[1]) for k in _arrays() if k.startswith("logits/")}))


@cache
def _synthetic_case(name: str) -> GoldenCase:
    """A golden synthetic scene, regenerated at its native size; refuses a generator that changed."""
    from edgeseg.scenes import generate_scene, scene_rng

    index = int(name.rsplit("_", 1)[1])
    image, mask = generate_scene(scene_rng(0, "val", index))
    digest = hashlib.sha256(image.tobytes() + mask.tobytes()).hexdigest()
    assert digest == str(_arrays()[f"sha256/{name}"]), (
        f"{name}: the scene generator changed since {GOLDEN.name} was written; run tests/golden/make_golden.py")
    return GoldenCase(name, image, mask)


def golden_cases(voc_dir: Path | None = None) -> list[GoldenCase]:
    """Synthetic scenes named in the golden file, plus the VOC images when ../shared is present."""
    arrays = _arrays()
    voc_dir = voc_dir or REPO.parent / "shared" / "data" / "voc-sample"
    cases = []
    for name in arrays["names"]:
        name = str(name)
        if name.startswith("synthetic_"):
            cases.append(_synthetic_case(name))
        else:
            path = voc_dir / "JPEGImages" / f"{name[len('voc_'):]}.jpg"
            if not path.is_file():
                continue
            assert hashlib.sha256(path.read_bytes()).hexdigest() == str(arrays[f"sha256/{name}"]), f"{path} changed"
            cases.append(GoldenCase(name, read_image_rgb(path), None))
    return cases


def golden_logits(name: str, resolution: int) -> np.ndarray:
    """Full-resolution NCHW logits, upsampled from the stored classifier output exactly as DeepLabV3 does."""
    low = torch.from_numpy(_arrays()[f"logits/{resolution}/{name}"])[None]
    return F.interpolate(low, size=(resolution, resolution), mode="bilinear", align_corners=False).numpy()


def golden_weights_sha256() -> str:
    return str(_arrays()["weights_sha256"])


def compare_with_golden(backend, precision: str) -> dict:
    """Run `backend` on the golden inputs; return agreement, max |logit diff| and mIoU change."""
    from edgeseg.runtime.postprocess import output_to_mask
    from edgeseg.runtime.preprocess import preprocess_rgb

    manifest = backend.manifest
    spec = manifest.input_spec()
    if spec.height != spec.width or spec.height not in golden_resolutions():
        pytest.fail(f"no golden outputs at {spec.height}x{spec.width}; golden resolutions: {golden_resolutions()}")
    kind, layout = manifest.output["kind"], manifest.output.get("layout", "NCHW")
    n_classes = manifest.num_classes
    agree = pixels = 0
    max_diff = 0.0
    ref_cm, art_cm = ConfusionMatrix(n_classes), ConfusionMatrix(n_classes)
    for case in golden_cases():
        ref = golden_logits(case.name, spec.height)
        out = backend.infer(preprocess_rgb(case.image, spec))
        ref_mask = ref[0].argmax(0).astype(np.uint8)
        art_mask = output_to_mask(out, kind, layout)
        if kind == "logits":
            logits = out.transpose(0, 3, 1, 2) if layout == "NHWC" else out
            max_diff = max(max_diff, float(np.abs(logits - ref).max()))
        agree += int((ref_mask == art_mask).sum())
        pixels += ref_mask.size
        if case.gt is not None:
            import cv2

            h, w = case.gt.shape
            ref_cm.update(case.gt, cv2.resize(ref_mask, (w, h), interpolation=cv2.INTER_NEAREST))
            art_cm.update(case.gt, cv2.resize(art_mask, (w, h), interpolation=cv2.INTER_NEAREST))
    return {"agreement": agree / pixels, "max_abs_logit_diff": max_diff if kind == "logits" else None,
            "miou_delta": art_cm.compute().miou - ref_cm.compute().miou}


def assert_matches_golden(backend, precision: str) -> dict:
    tol = TOLERANCES[precision]
    result = compare_with_golden(backend, precision)
    assert result["agreement"] >= tol["min_agreement"], result
    if tol["max_abs_logit_diff"] is not None and result["max_abs_logit_diff"] is not None:
        assert result["max_abs_logit_diff"] <= tol["max_abs_logit_diff"], result
    assert result["miou_delta"] >= -tol["max_miou_drop"], result
    return result
