"""INT8 calibration images: a real folder, or seeded synthetic scenes on request; never random noise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgeseg.convert.options import DEFAULT_CALIBRATION_IMAGES
from edgeseg.datasets import SegmentationDataset, open_dataset
from edgeseg.errors import ConfigError, DatasetError
from edgeseg.scenes import generate_scene, scene_rng


def open_calibration_set(root: Path) -> SegmentationDataset:
    """The calibration folder as a data set (its train split where one is listed); DatasetError, in one line,
    for a folder that holds no images. Lists files only: `convert` calls it before any model is built."""
    split = "train" if ((root / "ImageSets" / "Segmentation" / "train.txt").is_file()
                        or (root / "train.txt").is_file()) else None
    return open_dataset(root, split)


def calibration_images(spec: str | None, count: int = DEFAULT_CALIBRATION_IMAGES, *,
                       precision: str = "int8") -> list[np.ndarray]:
    """RGB uint8 images for calibration from `--calib`.

    `spec` is a folder (bare images, VOC layout or images/ + masks/: the train split where one is
    listed) or `synthetic:N` for N seeded synthetic scenes from the calibration stream (disjoint
    from the training and validation scenes).
    """
    if not spec:
        raise ConfigError(f"{precision} needs calibration images: pass --calib DIR (or --calib synthetic:N); "
                          "edgeseg never calibrates on random data")
    if spec.startswith("synthetic:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"--calib {spec}: expected synthetic:N with N a number of scenes") from None
        if n < 1:
            raise ConfigError(f"--calib {spec}: need at least one scene")
        return [generate_scene(scene_rng(0, "calib", i))[0] for i in range(n)]
    root = Path(spec)
    dataset = open_calibration_set(root)
    images = list(_readable_images(dataset, count))
    if not images:
        raise DatasetError(f"{root}: no readable calibration images")
    return images


def _readable_images(dataset: SegmentationDataset, count: int) -> Iterator[np.ndarray]:
    """The first `count` images that decode; one unreadable file among many is not fatal."""
    for i in range(min(count, len(dataset))):
        try:
            yield dataset.image(i)
        except DatasetError:
            continue


def check_calibration_folder(root: Path, count: int | None = None) -> None:
    """Refuse, in one line and before any model is built, a folder whose first `count` files (default
    DEFAULT_CALIBRATION_IMAGES) hold no image that decodes. Stops at the first that does: one decode."""
    if next(_readable_images(open_calibration_set(root), count or DEFAULT_CALIBRATION_IMAGES), None) is None:
        raise DatasetError(f"{root}: no readable calibration images")
