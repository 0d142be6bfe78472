"""What `edgeseg bench --quick` uses when it is given nothing: its own labelled set and report folder.

The set is a few seeded synthetic scenes (the sample model's classes), written once into the cache
and reused: a fresh clone runs `edgeseg bench --quick` without first discovering `make-scenes`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

QUICK_OUT = Path("edgeseg-bench-quick")  # relative to where the command runs; printed at the end
QUICK_SCENES = {"train": 8, "val": 8, "seed": 0, "size": 320}  # train: INT8 calibration never scores its own images


def quick_scenes_dir(cache: Path) -> Path:
    """Where the quick set lives in the cache: named by everything that makes its files."""
    s = QUICK_SCENES
    return Path(cache) / "scenes" / f"quick-seed{s['seed']}-train{s['train']}-val{s['val']}-{s['size']}px"


def quick_scenes(cache: Path, progress: bool = True) -> Path:
    """The quick labelled set (VOC layout), generated on first use and published whole (a rename)."""
    from edgeseg.atomic import ensure_writable_dir
    from edgeseg.scenes import SceneConfig, write_voc_dataset

    folder = quick_scenes_dir(cache)
    if (folder / "labels.txt").is_file():
        return folder
    ensure_writable_dir(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=".scenes-", dir=folder.parent))
    try:
        s = QUICK_SCENES
        write_voc_dataset(staging, train=s["train"], val=s["val"], seed=s["seed"],
                          config=SceneConfig(height=s["size"], width=s["size"]), progress=progress)
        os.replace(staging, folder)
    except OSError:
        if not (folder / "labels.txt").is_file():  # another run may have published the same set first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
