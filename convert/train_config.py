"""Training options, importable without torch (the CLI reads the defaults for --help)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import ConfigError

INIT_CHOICES = ("sample", "torchvision", "scratch")  # or the path of an edgeseg checkpoint


@dataclass(frozen=True)
class TrainConfig:
    data: str
    arch: str = "deeplabv3_mobilenet_v3_large"
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


def parse_image_pool_window(value: str) -> str:
    """--image-pool-window: 'init', 'global' or a positive pixel count (checked against the model later)."""
    if value in ("init", "global") or (value.isdigit() and int(value) > 0):
        return value
    raise ConfigError(f"--image-pool-window {value}: give a window in pixels, 'global', or 'init'")


def check_init(init: str) -> None:
    """Refuse an unknown --init before any data is read or torch imported."""
    if init not in INIT_CHOICES and not Path(init).is_file():
        raise ConfigError(f"--init {init}: choose {', '.join(INIT_CHOICES)} or the path of an edgeseg checkpoint")
