"""The labelled images a row is scored on (`EvalSet`), loaded once per run, and the folder view of
their first images that conversion verifies on, so "the same images" holds by construction."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgeseg.conventions import IGNORE_INDEX
from edgeseg.datasets import SegmentationDataset, open_dataset
from edgeseg.errors import DatasetError


@dataclass
class EvalSet:
    """The labelled images one row is measured on, loaded once."""

    name: str
    dataset: SegmentationDataset  # the samples scored, every one with its mask
    split: str | None
    images: list[np.ndarray]  # RGB uint8
    masks: list[np.ndarray]

    @property
    def root(self) -> Path:
        return self.dataset.root

    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.dataset.labels

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.dataset.samples]

    @property
    def files(self) -> list[tuple[Path, Path]]:
        """(image, mask) of each sample."""
        # Every sample: an EvalSet's data set has masks.
        return [(s.image_path, s.mask_path) for s in self.dataset.samples if s.mask_path is not None]

    def describe(self) -> dict[str, Any]:
        """The set's entry under `datasets` in results.json."""
        return {"name": self.name, "path": str(self.root), "split": self.split, "images": len(self.ids),
                "labels": list(self.labels) if self.labels else None, "first_id": self.ids[0], "last_id": self.ids[-1]}


def load_eval_set(root: Path, split: str | None, count: int, name: str, progress: bool = False) -> EvalSet:
    """The first `count` images of `split` (VOC layout; other layouts have no splits) with their masks."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    split = split if (root / "JPEGImages").is_dir() else None
    dataset = open_dataset(root, split).subset(count)
    if not dataset.has_masks:
        missing = next(s.image_path for s in dataset.samples if s.mask_path is None)
        raise DatasetError(f"{missing}: no ground-truth mask; bench needs labelled images")
    pairs = [dataset.pair(i) for i in tqdm(range(len(dataset)), desc=f"load {name}", disable=not progress,
                                           unit="img", leave=False)]
    return EvalSet(name, dataset, split, [p[0] for p in pairs], [p[1] for p in pairs])


def verification_view(evalset: EvalSet, count: int, cache: Path) -> Path:
    """A folder (images/ + masks/ + labels.txt) holding copies of the set's first `count` samples, in order.

    Conversion verifies on the leading images of the folder it is given, by its own rule of which
    split to read; handing it exactly the images the bench scores first makes "same images" hold by
    construction for any layout or split. The folder is named by the sha256 of those files, so it
    changes (and so does the conversion cache key) when the data does.
    """
    digest = hashlib.sha256(evalset.dataset.subset(count).fingerprint().encode())
    digest.update("\n".join(evalset.labels or ()).encode())
    view = cache / "verify-sets" / digest.hexdigest()[:16]
    if view.is_dir():
        return view
    tmp = Path(tempfile.mkdtemp(prefix=".view-", dir=ensure_dir(cache / "verify-sets")))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i, (sample_id, (image, mask)) in enumerate(zip(evalset.ids[:count], evalset.files[:count])):
            stem = f"{i:05d}_{sample_id}"  # the index keeps the bench's order under a sorted listing
            shutil.copyfile(image, tmp / "images" / f"{stem}{image.suffix.lower()}")
            shutil.copyfile(mask, tmp / "masks" / f"{stem}.png")
        if evalset.labels:
            (tmp / "labels.txt").write_text("".join(f"{n}\n" for n in evalset.labels))
        (tmp / "SOURCE.txt").write_text(f"first {count} images of {evalset.root} (split {evalset.split})\n")
        os.replace(tmp, view)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not view.is_dir():  # a concurrent bench may have written the same view first
            raise
    return view


def ensure_dir(path: Path) -> Path:
    """`path`, created and checked writable (a clear error, not an OSError deep in a copy)."""
    from edgeseg.atomic import ensure_writable_dir

    ensure_writable_dir(path)
    return path


def check_labels(evalset: EvalSet, labels: tuple[str, ...], who: str) -> None:
    """The set must label the model's classes: same names where it names them, ids in range always."""
    if evalset.labels is not None and tuple(evalset.labels) != tuple(labels):
        raise DatasetError(f"{evalset.root}: labels ({', '.join(evalset.labels[:4])}, ...: {len(evalset.labels)}) "
                           f"differ from {who}'s ({', '.join(labels[:4])}, ...: {len(labels)})")
    for sample_id, mask in zip(evalset.ids, evalset.masks):
        ids = np.unique(mask)
        bad = ids[(ids != IGNORE_INDEX) & (ids >= len(labels))]
        if bad.size:
            raise DatasetError(f"{evalset.root}: mask {sample_id} holds class {int(bad[0])} "
                               f"but {who} has {len(labels)} classes")
