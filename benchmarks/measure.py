"""Measuring one artifact through the frame path the device uses (`runtime.segmenter.Segmenter`):
accuracy on the evaluation set (against the PyTorch reference where there is one) and per-stage latency."""

from __future__ import annotations

import gc
from typing import Any

import cv2
import numpy as np

from edgeseg.benchmarks.evalsets import EvalSet
from edgeseg.benchmarks.references import Reference
from edgeseg.metrics import Agreement, ConfusionMatrix
from edgeseg.runtime.segmenter import Segmenter

LATENCY_FRAMES = 8  # distinct frames cycled through the latency loop


def latency_stats(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    """mean, p50, p90, p99, min and max of a list of milliseconds (linear-interpolated percentiles)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"mean": round(float(x.mean()), 3), "p50": round(float(p50), 3), "p90": round(float(p90), 3),
            "p99": round(float(p99), 3), "min": round(float(x.min()), 3), "max": round(float(x.max()), 3)}


def measure_accuracy(segmenter: Segmenter, evalset: EvalSet, reference: Reference | None,
                     check_count: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """mIoU, per-class IoU and pixel accuracy on the set; mIoU change and argmax agreement against the
    PyTorch FP32 reference on the same images (agreement at model resolution, as verification does).

    Returns the accuracy and, over the first `check_count` images (the ones verification scored),
    the numbers to compare with the manifest's.
    """
    manifest = segmenter.manifest
    labels = manifest.labels
    cm, check_cm = ConfusionMatrix(manifest.num_classes), ConfusionMatrix(manifest.num_classes)
    agreement, check_agreement = Agreement(), Agreement()
    for i, (image, gt) in enumerate(zip(evalset.images, evalset.masks)):
        full = segmenter.segment_rgb(image, gt.shape)
        mask = segmenter.last_model_mask
        cm.update(gt, full)
        if reference is not None:
            agreement.update(reference.masks[i], mask)
        if i < check_count:
            check_cm.update(gt, full)
            if reference is not None:
                check_agreement.update(reference.masks[i], mask)
    scores = cm.compute()
    accuracy = {"images": len(evalset.images), **scores.to_dict(labels)}
    if reference is not None:
        accuracy.update(reference_miou=reference.scores["miou"],
                        miou_delta=round(scores.miou - reference.scores["miou"], 4),
                        argmax_agreement=agreement.rounded(6),
                        reference_per_class_iou=reference.scores["per_class_iou"])
    check = None
    if check_count:
        check = {"images": check_count, "miou": check_cm.compute().miou,
                 "argmax_agreement": check_agreement.compute()}
    return accuracy, check


def measure_latency(segmenter: Segmenter, evalset: EvalSet, runs: int, warmup: int) -> dict[str, Any]:
    """Warm-up, then `runs` frames end to end as the demo does them (`Segmenter.segment`: BGR frame ->
    preprocessing -> inference -> checked mask at frame size); each stage timed on its own."""
    times = segmenter.times
    # Frames as a camera delivers them (BGR), converted once outside the timed loop.
    frames = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in evalset.images[:LATENCY_FRAMES]]
    pre, inf, post, total = [], [], [], []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed frame is noise, not the model's latency
    try:
        for i in range(warmup + runs):
            segmenter.segment(frames[i % len(frames)])
            if i >= warmup:
                pre.append(times.preprocess_ms)
                inf.append(times.inference_ms)
                post.append(times.postprocess_ms)
                total.append(times.total_ms)
    finally:
        if gc_was_enabled:
            gc.enable()
    total_stats = latency_stats(total)
    return {"runs": runs, "warmup": warmup, "frames": len(frames), "total_ms": total_stats,
            "preprocess_ms": latency_stats(pre), "inference_ms": latency_stats(inf),
            "postprocess_ms": latency_stats(post),
            "fps": round(1000 / total_stats["mean"], 2)}


