"""The rules every side shares, each written once: normalization, the ignore index, what a converted model
outputs, file suffixes, the default architecture and the sample checkpoint, the Python floor of the device
runtime.

The conversion side, the device runtime, the benchmarks and the tests import these; nobody re-types them
(tests/core/test_one_place.py greps the tree for copies).
"""

from __future__ import annotations

from pathlib import Path

# torchvision's ImageNet normalization, which every zoo model was trained with (RGB, 0-1 scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The label value a mask uses for "not scored" (PASCAL VOC's object borders).
IGNORE_INDEX = 255

# What a converted model outputs: class logits, or the uint8 argmax mask.
OUTPUT_KINDS = ("logits", "mask")

# Image files: what predict reads from a folder and what a labelled data set may hold. Lower case;
# compare with `path.suffix.lower()`.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")

# The zoo architecture of a plain state dict that names none, and of torchvision's download.
DEFAULT_ARCH = "deeplabv3_mobilenet_v3_large"
# The trained sample model that ships inside the package (docs/sample-model.md: how it was trained).
SAMPLE_NAME = "deeplabv3_mobilenet_v3_large_synthetic.pt"

# The edgeseg runtime's own floor (setup.cfg python_requires); a JetPack with an older Python can
# still build and run the bundle's engine with its trtexec script.
RUNTIME_MIN_PYTHON = (3, 10)


def sample_checkpoint_path() -> Path:
    """The sample checkpoint inside this installation (it may be missing from a trimmed one)."""
    return Path(__file__).resolve().parent / "sample" / SAMPLE_NAME
