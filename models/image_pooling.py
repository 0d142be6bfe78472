"""DeepLabV3's image pooling over a window instead of the whole feature map: a model setting the checkpoint records.

The ASPP image-pooling branch averages the whole feature map into one vector and adds it to every
pixel. A model trained on crops of a given extent learns that vector as the mean of one crop; at a
larger input the same branch averages a larger scene, and large objects that the crop's mean told
apart can vanish (docs/sample-world.md measures it at 1024). TensorFlow's DeepLab has the same
remedy under `image_pooling_crop_size`: average over a window of the training crop's extent,
stride 1, and resize the pooled map back to the feature map bilinearly. Where the feature map is
no larger than the window the branch is exactly torchvision's global pooling, same graph and all,
so the setting only changes inputs larger than the window.

The window is given in input pixels and must be a multiple of the model's output stride (16 for
DeepLabV3-MobileNetV3, 8 for DeepLabV3-ResNet); it travels in the edgeseg checkpoint
(`image_pool_window`), so conversion, verification, the bench and training all build the same model.
Training with a window uses it too, where the training crop is larger than the window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPPPooling

from edgeseg.errors import ConfigError, EdgesegError
from edgeseg.models.zoo import zoo_entry


class WindowedASPPPooling(ASPPPooling):
    """ASPPPooling averaging over `window_cells` feature cells per side (stride 1) where the map is larger."""

    def __init__(self, pooling: ASPPPooling, window_cells: int) -> None:
        # Same children in the same order: the state-dict keys (and so every checkpoint) are unchanged.
        nn.Sequential.__init__(self, *pooling)
        self.window_cells = window_cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        if height <= self.window_cells and width <= self.window_cells:
            return super().forward(x)  # the window covers the map: global pooling, the graph as torchvision's
        kernel = (min(self.window_cells, height), min(self.window_cells, width))
        y = F.avg_pool2d(x, kernel, stride=1)
        for layer in list(self)[1:]:  # the 1x1 convolution, BatchNorm and ReLU, per pooled cell
            y = layer(y)
        return F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False)


def check_window(arch: str, window: int | None, source: str, error: type[EdgesegError] = ConfigError) -> None:
    """Refuse a window the architecture cannot honour, naming where it came from (`error`: the exception type)."""
    if window is None:
        return
    stride = zoo_entry(arch).output_stride
    if stride is None:
        raise error(f"{source}: image_pool_window {window}: {arch} has no ASPP image pooling")
    if isinstance(window, bool) or not isinstance(window, int) or window < stride or window % stride:
        raise error(f"{source}: image_pool_window {window!r}: must be a multiple of {arch}'s output "
                          f"stride {stride} (pixels), or absent for global pooling")


def set_image_pool_window(model: nn.Module, arch: str, window: int | None) -> nn.Module:
    """Give every ASPP image-pooling branch of `model` a `window`-pixel window (None: global). In place."""
    check_window(arch, window, arch)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, ASPPPooling):
                continue
            # torchvision's own class around the same layers: no new parameters, whatever `child` was before.
            plain = ASPPPooling.__new__(ASPPPooling)
            nn.Sequential.__init__(plain, *child)
            if window is None:
                replacement: nn.Module = plain
            else:
                stride = zoo_entry(arch).output_stride
                assert stride is not None  # check_window refused architectures without ASPP
                replacement = WindowedASPPPooling(plain, window // stride)
            replacement.train(child.training)
            setattr(parent, name, replacement)
    return model
