"""The model zoo: torchvision segmentation builders and what edgeseg needs to know about each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchvision.models import WeightsEnum
from torchvision.models import segmentation as tvseg

from edgeseg.conventions import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ZooEntry:
    name: str
    builder: Callable[..., torch.nn.Module]
    weights_enum: type[WeightsEnum]
    # State-dict keys whose first dimension is the class count.
    classifier_keys: tuple[str, ...]
    has_aux: bool
    # Input pixels per feature cell where the ASPP sees the map; None: no ASPP (no image pooling).
    output_stride: int | None = None
    # The input normalization its weights were trained with (RGB in [0, 1]; torchvision's transforms).
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("deeplabv3_mobilenet_v3_large", tvseg.deeplabv3_mobilenet_v3_large,
                 tvseg.DeepLabV3_MobileNet_V3_Large_Weights, ("classifier.4.weight",), True, 16),
        ZooEntry("deeplabv3_resnet50", tvseg.deeplabv3_resnet50,
                 tvseg.DeepLabV3_ResNet50_Weights, ("classifier.4.weight",), True, 8),
        ZooEntry("deeplabv3_resnet101", tvseg.deeplabv3_resnet101,
                 tvseg.DeepLabV3_ResNet101_Weights, ("classifier.4.weight",), True, 8),
        ZooEntry("lraspp_mobilenet_v3_large", tvseg.lraspp_mobilenet_v3_large,
                 tvseg.LRASPP_MobileNet_V3_Large_Weights,
                 ("classifier.low_classifier.weight", "classifier.high_classifier.weight"), False),
        ZooEntry("fcn_resnet50", tvseg.fcn_resnet50, tvseg.FCN_ResNet50_Weights, ("classifier.4.weight",), True),
    )
}


def zoo_entry(name: str) -> ZooEntry:
    from edgeseg.errors import ConfigError

    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(ZOO)}") from None


def build_model(name: str, *, num_classes: int, aux_loss: bool = False) -> torch.nn.Module:
    """An untrained zoo model (no download: weights are loaded separately)."""
    entry = zoo_entry(name)
    kwargs = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if entry.has_aux:
        kwargs["aux_loss"] = aux_loss
    return entry.builder(**kwargs)
