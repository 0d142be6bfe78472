"""Segmentation accuracy from one confusion matrix over the whole evaluation set.

mIoU is the mean over classes whose union is non-zero (present in ground truth or prediction),
as mmsegmentation reports it, in points (60.3, like torchvision's tables). Pixels labelled with
`ignore_index` count for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeseg.conventions import IGNORE_INDEX


@dataclass(frozen=True)
class SegmentationScores:
    miou: float  # points, 0..100
    pixel_accuracy: float  # percent
    per_class_iou: tuple[float | None, ...]  # points; None where the class is in neither GT nor prediction
    miou_gt_classes: float  # mean over classes present in the ground truth only

    def to_dict(self, labels: tuple[str, ...] | None = None) -> dict:
        names = labels or tuple(str(i) for i in range(len(self.per_class_iou)))
        return {
            "miou": round(self.miou, 4),
            "miou_gt_classes": round(self.miou_gt_classes, 4),
            "pixel_accuracy": round(self.pixel_accuracy, 4),
            "per_class_iou": {n: (None if v is None else round(v, 4)) for n, v in zip(names, self.per_class_iou)},
        }


class ConfusionMatrix:
    """Rows are ground truth, columns prediction; accumulated with `bincount`."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, target: np.ndarray, prediction: np.ndarray) -> None:
        if target.shape != prediction.shape:
            raise ValueError(f"target {target.shape} and prediction {prediction.shape} differ in shape")
        t = target.reshape(-1).astype(np.int64)
        p = prediction.reshape(-1).astype(np.int64)
        keep = (t != self.ignore_index) & (t >= 0) & (t < self.num_classes)
        t, p = t[keep], p[keep]
        if p.size and (p.min() < 0 or p.max() >= self.num_classes):
            raise ValueError(f"prediction holds class ids outside 0..{self.num_classes - 1}")
        self.matrix += np.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def compute(self) -> SegmentationScores:
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        gt = m.sum(axis=1)
        pred = m.sum(axis=0)
        union = gt + pred - tp
        present = union > 0
        iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
        total = m.sum()
        return SegmentationScores(
            miou=float(iou[present].mean() * 100) if present.any() else float("nan"),
            pixel_accuracy=float(tp.sum() / total * 100) if total else float("nan"),
            per_class_iou=tuple(float(v * 100) if ok else None for v, ok in zip(iou, present)),
            miou_gt_classes=float(iou[gt > 0].mean() * 100) if (gt > 0).any() else float("nan"),
        )


class Agreement:
    """Pixels on which pairs of class masks agree, pooled over every pair given to `update`
    (pooled, not averaged per image, so an image counts by its pixels as in the confusion matrix)."""

    def __init__(self) -> None:
        self.agreeing = 0
        self.pixels = 0

    def update(self, a: np.ndarray, b: np.ndarray) -> None:
        if a.shape != b.shape:
            raise ValueError(f"masks {a.shape} and {b.shape} differ in shape")
        self.agreeing += int(np.count_nonzero(a == b))
        self.pixels += a.size

    def compute(self) -> float | None:
        """The agreeing fraction, 0..1; None before any pixel."""
        return self.agreeing / self.pixels if self.pixels else None

    def rounded(self, digits: int) -> float | None:
        """`compute()` rounded to `digits` decimals, as reports keep it; None before any pixel."""
        value = self.compute()
        return None if value is None else round(value, digits)


def argmax_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels on which two class masks agree."""
    agreement = Agreement()
    agreement.update(a, b)
    value = agreement.compute()
    return float("nan") if value is None else value
