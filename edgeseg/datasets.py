"""Labelled image sets behind one interface: PASCAL VOC layout or a plain images/ + masks/ folder.

Training, INT8 calibration and evaluation all read data through `open_dataset`, so a user's own
folder works everywhere a VOC folder does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg.conventions import IGNORE_INDEX, IMAGE_SUFFIXES
from edgeseg.errors import DatasetError, first_line
from edgeseg.label_names import read_label_names
from edgeseg.palette import VOC_LABELS
from edgeseg.palette_png import read_class_ids_png


@dataclass(frozen=True)
class Sample:
    id: str
    image_path: Path
    mask_path: Path | None


def read_image_rgb(path: Path) -> np.ndarray:
    """An image as RGB uint8 HxWx3, or a DatasetError naming the file."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise DatasetError(f"{path}: image file not found")
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # a header claiming more pixels than OpenCV's limit
        raise DatasetError(f"{path}: an image OpenCV refuses to decode ({(exc.err or 'no reason given')[:160]})") \
            from None
    if bgr is None:
        raise DatasetError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _pillow():
    """Pillow's Image module, or None: the device install has no Pillow (edgeseg.palette_png reads masks there)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def read_mask(path: Path) -> np.ndarray:
    """Class ids as uint8 HxW: palette indices of a VOC PNG, or grey values of a plain mask."""
    image_module = _pillow()
    if image_module is None:
        return read_class_ids_png(path)
    try:
        with image_module.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DatasetError(f"{path}: mask must be a palette or greyscale PNG of class ids, got mode {im.mode}")
            return np.array(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"{path}: mask file not found") from None
    except (OSError, image_module.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise DatasetError(f"{path}: not a readable mask ({first_line(exc)[:160]})") from None


class SegmentationDataset:
    """An ordered list of samples with optional label names; images come back as RGB uint8."""

    def __init__(self, root: Path, samples: list[Sample], labels: tuple[str, ...] | None, kind: str) -> None:
        if not samples:
            raise DatasetError(f"{root}: no images found")
        self.root = root
        self.samples = samples
        self.labels = labels
        self.kind = kind
        self.labels_assumed = False  # True: a VOC-layout folder without labels.txt, taken to have VOC's classes

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def has_masks(self) -> bool:
        return all(s.mask_path is not None for s in self.samples)

    def image(self, index: int) -> np.ndarray:
        return read_image_rgb(self.samples[index].image_path)

    def mask(self, index: int) -> np.ndarray:
        sample = self.samples[index]
        if sample.mask_path is None:
            raise DatasetError(f"{sample.image_path}: no ground-truth mask")
        return read_mask(sample.mask_path)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.image(index), self.mask(index)
        if image.shape[:2] != mask.shape:
            raise DatasetError(
                f"{self.samples[index].mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} "
                f"but its image is {image.shape[1]}x{image.shape[0]}"
            )
        return image, mask

    def subset(self, count: int) -> SegmentationDataset:
        subset = SegmentationDataset(self.root, self.samples[:count], self.labels, self.kind)
        subset.labels_assumed = self.labels_assumed
        return subset

    def check(self, num_classes: int) -> set[int]:
        """Decode every image and mask once; stop at the first one that cannot serve a `num_classes`
        model. Returns the class ids the masks use (255 = ignore left out)."""
        used: set[int] = set()
        for sample in self.samples:
            if sample.mask_path is None:
                raise DatasetError(f"{sample.image_path}: no ground-truth mask")
            mask = read_mask(sample.mask_path)
            size = _decoded_size(sample.image_path)
            if size != (mask.shape[1], mask.shape[0]):
                raise DatasetError(
                    f"{sample.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]}"
                )
            ids = np.unique(mask)
            bad = ids[(ids != IGNORE_INDEX) & (ids >= num_classes)]
            if bad.size:
                raise DatasetError(
                    f"{sample.mask_path}: class id {int(bad[0])} but the model has {num_classes} classes "
                    f"(0..{num_classes - 1}, {IGNORE_INDEX} = ignore)"
                )
            used.update(int(i) for i in ids if i != IGNORE_INDEX)
        return used

    def fingerprint(self) -> str:
        """sha256 over the ids and bytes of every file: identifies the exact data a model saw."""
        digest = hashlib.sha256()
        for sample in self.samples:
            digest.update(sample.id.encode())
            for path in (sample.image_path, sample.mask_path):
                if path is not None:
                    digest.update(path.read_bytes())
        return digest.hexdigest()


def _decoded_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image decoded in full (a truncated file passes a header check and fails
    mid-training): with Pillow where it is installed, else with OpenCV."""
    image_module = _pillow()
    if image_module is None:
        height, width = read_image_rgb(path).shape[:2]
        return width, height
    try:
        with image_module.open(path) as im:
            im.load()
            return im.size
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, image_module.DecompressionBombError) as exc:  # a header claiming a huge size too
        raise DatasetError(f"{path}: not a readable image ({first_line(exc)[:160]})") from None


def _read_labels(root: Path) -> tuple[str, ...] | None:
    path = root / "labels.txt"
    if not path.is_file():
        return None
    return read_label_names(path, DatasetError)


def split_list(root: Path | str, split: str) -> Path | None:
    """The file listing a split's ids: VOC's ImageSets/Segmentation/<split>.txt, else <split>.txt at
    the root; None when the folder lists no such split."""
    root = Path(root)
    for candidate in (root / "ImageSets" / "Segmentation" / f"{split}.txt", root / f"{split}.txt"):
        if candidate.is_file():
            return candidate
    return None


def split_ids(root: Path | str, split: str) -> list[str]:
    """The ids a split lists (first word of each non-empty line); empty when it is not listed."""
    path = split_list(root, split)
    return _read_ids(path) if path is not None else []


def _read_ids(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the split list ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: split list is not UTF-8 text (byte at offset {exc.start}); one image id "
                           "per line") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _voc_ids(root: Path, split: str | None) -> list[str]:
    if split is None:
        return sorted(p.stem for p in (root / "JPEGImages").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    path = Path(split) if Path(split).is_file() else split_list(root, split)  # a list file may be named directly
    if path is None:
        raise DatasetError(f"{root}: no list for split '{split}' "
                           f"(looked for ImageSets/Segmentation/{split}.txt and {split}.txt)")
    return _read_ids(path)


def evaluation_split(root: Path | str) -> str | None:
    """`"val"` when the folder lists a val split (VOC's ImageSets/Segmentation/val.txt or a root
    val.txt), else None (every image): the images verification and evaluation score by default."""
    return "val" if split_list(root, "val") is not None else None


def open_dataset(path: Path | str, split: str | None = None) -> SegmentationDataset:
    """Open a VOC-layout folder (JPEGImages/ + SegmentationClass/), an images/ + masks/ folder,
    or a folder of bare images (no masks: calibration and agreement only)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if (root / "JPEGImages").is_dir():
        masks = root / "SegmentationClass"
        samples = []
        for sample_id in _voc_ids(root, split):
            image = next((root / "JPEGImages" / f"{sample_id}{s}" for s in IMAGE_SUFFIXES
                          if (root / "JPEGImages" / f"{sample_id}{s}").is_file()), None)
            if image is None:
                raise DatasetError(f"{root / 'JPEGImages' / sample_id}.jpg: listed in split '{split}' but missing")
            mask = masks / f"{sample_id}.png"
            samples.append(Sample(sample_id, image, mask if mask.is_file() else None))
        labels = _read_labels(root)
        dataset = SegmentationDataset(root, samples, labels or VOC_LABELS, "voc")
        dataset.labels_assumed = labels is None  # PASCAL VOC itself has no labels.txt
        return dataset
    if (root / "images").is_dir():
        image_dir, mask_dir = root / "images", root / "masks"
        samples = []
        for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            mask = mask_dir / f"{image.stem}.png"
            samples.append(Sample(image.stem, image, mask if mask.is_file() else None))
        return SegmentationDataset(root, samples, _read_labels(root), "folder")
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return SegmentationDataset(root, [Sample(p.stem, p, None) for p in images], None, "images")
