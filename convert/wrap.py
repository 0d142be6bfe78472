"""What export sees: one tensor in, one tensor out.

The torchvision models return a dict; the wrapper returns the logits, or the argmax mask as
uint8 when asked (a device should not copy 21 float planes back to the CPU), and can take raw
uint8 NHWC RGB pixels with the normalization inside the graph (no float work on the device CPU).
"""

from __future__ import annotations

import torch

from edgeseg.conventions import OUTPUT_KINDS
from edgeseg.errors import ConfigError


class ExportWrapper(torch.nn.Module):
    scale: torch.Tensor  # buffers (register_buffer below)
    shift: torch.Tensor

    def __init__(self, model: torch.nn.Module, *, mean: tuple[float, ...], std: tuple[float, ...],
                 output: str = "logits", fuse_preprocessing: bool = False, channels_last_input: bool = False) -> None:
        """`mean` and `std`: the normalization the weights were trained with (`LoadedWeights.mean`/`std`)."""
        super().__init__()
        if output not in OUTPUT_KINDS:
            raise ConfigError(f"--output {output}: choose one of {', '.join(OUTPUT_KINDS)}")
        self.model = model
        self.output = output
        self.fuse_preprocessing = fuse_preprocessing
        # Float NHWC input (LiteRT) without fused normalization.
        self.channels_last_input = channels_last_input
        # x_norm = x * scale + shift, with x in 0..255: one multiply-add per pixel inside the model.
        scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fuse_preprocessing:
            x = x.permute(0, 3, 1, 2).float() * self.scale + self.shift  # uint8 NHWC RGB in
        elif self.channels_last_input:
            x = x.permute(0, 3, 1, 2)
        logits = self.model(x)["out"]
        if self.output == "mask":
            return logits.argmax(dim=1).to(torch.uint8)
        return logits
