"""The PyTorch FP32 reference of each model in a sweep: its masks and scores on an evaluation set,
computed once per set and resolution and shared by every row of that model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.benchmarks.evalsets import EvalSet
from edgeseg.benchmarks.flops import model_gflops
from edgeseg.metrics import ConfusionMatrix
from edgeseg.runtime.postprocess import output_to_mask, resize_mask


@dataclass
class Reference:
    """The PyTorch FP32 model's masks (at model resolution) and scores on one EvalSet."""

    masks: list[np.ndarray]
    scores: dict[str, Any]
    gflops: float


class ModelEntry:
    """One model of the sweep: its weights, FP32 reference model and cached references."""

    def __init__(self, weights_arg: str, arch: str | None) -> None:
        from edgeseg.models.weights import load_weights

        self.weights_arg = weights_arg  # as given to --weights: 'sample', 'torchvision' or a path
        self.weights = load_weights(weights_arg, arch=arch)
        self.model = self.weights.build()
        self._references: dict[tuple[str, int, int], Reference] = {}

    @property
    def name(self) -> str:
        """The zoo architecture, which names the model in rows and cache folders."""
        return self.weights.arch

    @property
    def weights_key(self) -> str:
        """What identifies these weights in the cache key: the sha256 of their file, or for weights
        that have none here (torchvision's pretrained enum) their source name."""
        return self.weights.sha256 or self.weights.source

    def describe(self) -> dict[str, Any]:
        """The row's `model` entry."""
        w = self.weights
        return {"name": w.arch, "architecture": w.arch, "weights": w.source, "weights_sha256": w.sha256,
                "num_classes": w.num_classes, "peer": False}

    def reference(self, evalset: EvalSet, height: int, width: int, threads: int) -> Reference:
        """The FP32 reference on `evalset` at HxW, computed on first use with `threads` torch threads."""
        key = (evalset.name, height, width)
        if key not in self._references:
            import torch

            from edgeseg.convert.verify import reference_logits

            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                cm = ConfusionMatrix(self.weights.num_classes)
                masks = []
                for image, gt in zip(evalset.images, evalset.masks):
                    mask = output_to_mask(reference_logits(self.model, image, height, width), "logits", "NCHW")
                    masks.append(mask)
                    cm.update(gt, resize_mask(mask, *gt.shape))
                gflops = model_gflops(self.model, height, width)
            finally:
                torch.set_num_threads(previous)
            self._references[key] = Reference(masks, cm.compute().to_dict(self.weights.labels), gflops)
        return self._references[key]
