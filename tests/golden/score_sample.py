"""Score the sample model per input size and write its sidecar JSON: `python tests/golden/score_sample.py`.

Scored as deployment is scored: each held-out scene (seed 0, val 0..N-1, native 1024x1024, as
`edgeseg make-scenes` stores it, i.e. after its JPEG round trip; or a VOC folder given with --data)
is resized to the input size R, the PyTorch FP32 model's argmax is resized back (nearest) to the
native ground truth, and one confusion matrix per R accumulates over all scenes. The sidecar
(`<checkpoint stem>.json` beside the checkpoint) carries the checkpoint's training history and
these scores, so a reader sees what the shipped model does at 320, 640 and 1024 without running
anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgeseg.atomic import write_bytes_atomic
from edgeseg.convert.verify import reference_spec
from edgeseg.convert.weights import load_weights
from edgeseg.datasets import open_dataset
from edgeseg.metrics import ConfusionMatrix
from edgeseg.runtime.postprocess import resize_mask
from edgeseg.runtime.preprocess import preprocess_rgb
from edgeseg.scenes import scene_rng, stored_scene

RESOLUTIONS = (320, 640, 1024)


def held_out_pairs(data: Path | None, count: int, start: int = 0):
    """(image, mask) pairs start..start+count-1: the VOC folder's val split when given, else generated val scenes."""
    if data is not None:
        dataset = open_dataset(data, "val").subset(start + count)
        for i in range(start, len(dataset)):
            yield dataset.pair(i)
    else:
        for i in range(start, start + count):
            yield stored_scene(scene_rng(0, "val", i))


@torch.no_grad()
def score(model: torch.nn.Module, pairs, count: int, resolutions, labels) -> dict[int, dict]:
    """FP32 mIoU per input size, predictions brought back to the native ground truth."""
    matrices = {r: ConfusionMatrix(len(labels)) for r in resolutions}
    for image, mask in tqdm(pairs, total=count, desc="score", unit="scene"):
        for r in resolutions:
            logits = model(torch.from_numpy(preprocess_rgb(image, reference_spec(r, r))))["out"]
            pred = logits[0].argmax(0).numpy().astype(np.uint8)
            matrices[r].update(mask, resize_mask(pred, *mask.shape))
    # The confusion matrix rides along, so scores of disjoint parts of the set can be summed exactly.
    return {r: m.compute().to_dict(labels) | {"confusion_matrix": m.matrix.tolist()} for r, m in matrices.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="sample", help="'sample' or an edgeseg checkpoint")
    parser.add_argument("--data", type=Path, default=None,
                        help="VOC folder whose val split to score (default: generate the scenes)")
    parser.add_argument("--count", type=int, default=200, help="held-out scenes (default: %(default)s)")
    parser.add_argument("--start", type=int, default=0, help="first held-out scene (to score a set in parts)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=list(RESOLUTIONS))
    parser.add_argument("--sidecar", type=Path, default=None, help="JSON to write (default: beside the checkpoint)")
    parser.add_argument("--training-command", default=None, help="the command that trained it, for the record")
    args = parser.parse_args(argv)
    weights = load_weights(args.weights)
    model = weights.build()
    pairs = held_out_pairs(args.data, args.count, args.start)
    scores = score(model, pairs, args.count, args.resolutions, weights.labels)
    meta = weights.metadata
    record = {
        "checkpoint": Path(weights.source).name, "sha256": weights.sha256, "arch": weights.arch,
        "labels": list(weights.labels), "init": meta.get("init"), "dataset_sha256": meta.get("dataset_sha256"),
        "train_config": meta.get("train_config"), "training_command": args.training_command,
        "history": meta.get("history"), "image_pool_window": weights.image_pool_window,
        "validation": {
            "images": args.count,
            "source": str(args.data) if args.data else
            f"synthetic scenes, seed 0, val {args.start}..{args.start + args.count - 1}, native 1024x1024, "
            "as make-scenes stores them (JPEG quality 92)",
            "scoring": "FP32 PyTorch; input resized to R (bilinear), argmax resized back to the native ground "
                       "truth (nearest)" + (f"; ASPP image pooling over {weights.image_pool_window}-pixel windows"
                                            if weights.image_pool_window else ""),
            "by_resolution": {str(r): s for r, s in scores.items()},
        },
    }
    out = args.sidecar or Path(weights.source).with_suffix(".json")
    write_bytes_atomic(out, (json.dumps(record, indent=1) + "\n").encode())
    for r, s in scores.items():
        print(f"{r}: mIoU {s['miou']:.2f}  pixel acc {s['pixel_accuracy']:.2f}  "
              + "  ".join(f"{k} {v:.1f}" for k, v in s["per_class_iou"].items() if v is not None))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
