"""Regenerate the golden reference outputs of the sample model: `python tests/golden/make_golden.py`.

Stores, per resolution, the PyTorch FP32 outputs on a fixed set of inputs: 8 held-out synthetic
validation scenes at their native 1024x1024 (regenerated from their seed and index at test time,
so the file stays small; the sha256 of each image and ground truth is stored to catch a changed
generator) and the first 8 images of ../shared/data/voc-sample/val.txt (read from there; their
sha256 is stored). Predictions are scored against the native ground truth, as deployment is. Logits are kept at
the classifier's own resolution (output stride 16) and upsampled at comparison time exactly as
DeepLabV3 does (bilinear, align_corners=False), which makes them tiny and exact.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeseg.convert.verify import reference_spec
from edgeseg.convert.weights import load_weights
from edgeseg.datasets import read_image_rgb
from edgeseg.runtime.preprocess import preprocess_rgb
from edgeseg.scenes import generate_scene, scene_rng

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "sample_golden.npz"
RESOLUTIONS = (128, 320)
SYNTHETIC_COUNT = 8
SYNTHETIC_SEED = 0
VOC_COUNT = 8


@torch.no_grad()
def low_res_logits(model, image: np.ndarray, resolution: int) -> np.ndarray:
    x = torch.from_numpy(preprocess_rgb(image, reference_spec(resolution, resolution)))
    low = model.classifier(model.backbone(x)["out"])
    full = model(x)["out"]
    # The stored form must reproduce the model's own output exactly.
    assert torch.equal(F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False), full)
    return low[0].numpy()


def scene_sha256(image: np.ndarray, mask: np.ndarray) -> str:
    """Digest of a generated scene (image and ground truth), to notice a changed generator."""
    return hashlib.sha256(image.tobytes() + mask.tobytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="sample")
    parser.add_argument("--voc", type=Path, default=HERE.parents[2] / "shared" / "data" / "voc-sample")
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    weights = load_weights(args.weights)
    model = weights.build()
    arrays: dict[str, np.ndarray] = {"weights_sha256": np.array(weights.sha256)}
    inputs: list[tuple[str, np.ndarray]] = []
    for i in range(SYNTHETIC_COUNT):
        image, mask = generate_scene(scene_rng(SYNTHETIC_SEED, "val", i))
        name = f"synthetic_val_{i:05d}"
        arrays[f"sha256/{name}"] = np.array(scene_sha256(image, mask))
        inputs.append((name, image))
    voc_ids = [line.strip() for line in (args.voc / "val.txt").read_text().splitlines() if line.strip()][:VOC_COUNT]
    for voc_id in voc_ids:
        path = args.voc / "JPEGImages" / f"{voc_id}.jpg"
        arrays[f"sha256/voc_{voc_id}"] = np.array(hashlib.sha256(path.read_bytes()).hexdigest())
        inputs.append((f"voc_{voc_id}", read_image_rgb(path)))
    for resolution in RESOLUTIONS:
        for name, image in inputs:
            low = low_res_logits(model, image, resolution)
            arrays[f"logits/{resolution}/{name}"] = low.astype(np.float32)
    arrays["names"] = np.array([n for n, _ in inputs])
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB): {len(inputs)} inputs x {len(RESOLUTIONS)} "
          "resolutions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
