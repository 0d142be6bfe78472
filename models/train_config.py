"""Training options, importable without torch (the CLI reads the defaults for --help)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgeseg.conventions import DEFAULT_ARCH
from edgeseg.errors import ConfigError
from edgeseg.resolution import MAX_SIDE

INIT_CHOICES = ("sample", "torchvision", "scratch")  # or the path of an edgeseg checkpoint
MAX_LR = 1000.0  # a learning rate beyond any use; 1e38 overflowed inside AdamW as an `internal error`


@dataclass(frozen=True)
class TrainConfig:
    data: str
    arch: str = DEFAULT_ARCH
    resolution: int = 320
    crop: int | None = None  # training crop; None = resolution (smaller crops train faster)
    epochs: int = 10
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    scale_min: float = 0.6
    scale_max: float = 1.6
    train_split: str = "train"
    val_split: str = "val"
    seed: int = 0
    workers: int = 1
    bn_images: int = 128
    save_dtype: str = "fp32"
    bf16: bool = True
    init: str = "torchvision"  # "sample", "scratch", or the path of an edgeseg checkpoint
    # ASPP image-pooling window in input pixels, "global", or "init": the --init checkpoint's (global if none).
    image_pool_window: str = "init"

    def __post_init__(self) -> None:
        """Every number checked here, once, before torch is imported or data read: a bad one used to end
        as an `internal error` inside PyTorch (a batch of 0, NaN as the learning rate, -1 workers)."""
        if self.resolution % 8 or not 64 <= self.resolution <= MAX_SIDE:
            raise ConfigError(f"--resolution {self.resolution}: must be a multiple of 8 from 64 to {MAX_SIDE}")
        if self.crop is not None and not 1 <= self.crop <= MAX_SIDE:
            raise ConfigError(f"--crop {self.crop}: must be from 1 to {MAX_SIDE} pixels")
        if self.epochs < 0:
            raise ConfigError(f"--epochs {self.epochs}: must be 0 or more")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: must be 1 or more")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr {self.lr}: must be a number above 0")
        if self.lr > MAX_LR:
            raise ConfigError(f"--lr {self.lr:g}: at most {MAX_LR:g} (AdamW moves each weight by about the learning "
                              "rate per step; far above it, its step sizes overflow float32)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight decay {self.weight_decay}: must be a number, 0 or more")
        if not (math.isfinite(self.scale_max) and 0 < self.scale_min <= self.scale_max):
            raise ConfigError(f"--scale-min {self.scale_min} --scale-max {self.scale_max}: need 0 < min <= max")
        if self.workers < 0:
            raise ConfigError(f"--workers {self.workers}: must be 0 (load in the training process) or more")
        if self.bn_images < 0:
            raise ConfigError(f"BatchNorm images {self.bn_images}: must be 0 or more")


def parse_image_pool_window(value: str) -> str:
    """--image-pool-window: 'init', 'global' or a positive pixel count (checked against the model later)."""
    if value in ("init", "global") or (value.isdigit() and int(value) > 0):
        return value
    raise ConfigError(f"--image-pool-window {value}: give a window in pixels, 'global', or 'init'")


def check_init(init: str) -> None:
    """Refuse an unknown --init before any data is read or torch imported."""
    if init not in INIT_CHOICES and not Path(init).is_file():
        raise ConfigError(f"--init {init}: choose {', '.join(INIT_CHOICES)} or the path of an edgeseg checkpoint")
