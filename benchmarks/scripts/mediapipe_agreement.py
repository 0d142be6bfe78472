"""How closely MediaPipe's ImageSegmenter, reading only a `.tflite`'s own metadata, agrees with edgeseg's
runtime on the same model: the share of pixels where MediaPipe's category mask equals edgeseg's mask.

Images are resized to the model's resolution first (both then take the same pixels; MediaPipe's own
resize of larger images is another method than edgeseg's stretch and is left out). Prints one JSON line
per artifact. For edgeseg's multi-class artifacts (a one-channel model's classes are numbered otherwise by
MediaPipe). Needs mediapipe (pip install 'edgeseg[dev]').

    python benchmarks/scripts/mediapipe_agreement.py ARTIFACT.tflite [...] [--voc DIR] [--scenes 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np


def agreement(path: Path, images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Share of equal pixels between MediaPipe's category mask and edgeseg's mask, and MediaPipe's labels."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from edgeseg.runtime.backend import open_backend
    from edgeseg.runtime.postprocess import output_to_mask
    from edgeseg.runtime.preprocess import preprocess_rgb

    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           output_category_mask=True, output_confidence_masks=False)
    same = total = 0
    with open_backend(path, threads=1) as backend:
        spec, out = backend.manifest.input_spec(), backend.manifest.output_spec()
        task = vision.ImageSegmenter.create_from_options(options)
        try:
            labels = list(task.labels)
            for image in images:
                pixels = cv2.resize(image, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
                pixels = np.ascontiguousarray(pixels)
                ours = output_to_mask(backend.infer(preprocess_rgb(pixels, spec)), out.kind, out.layout)
                result = task.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
                theirs = result.category_mask.numpy_view().reshape(ours.shape)
                same += int(np.count_nonzero(theirs == ours))
                total += ours.size
        finally:
            task.close()
    return same / total, labels


def main() -> None:
    from edgeseg.datasets import open_dataset
    from edgeseg.runtime.backend import load_model_manifest
    from edgeseg.scenes import generate_scene, scene_rng

    parser = argparse.ArgumentParser(description=__doc__ and __doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--voc", type=Path, default=Path("../shared/data/voc-sample"), help="VOC folder (val split)")
    parser.add_argument("--scenes", type=int, default=8, help="synthetic scenes besides the photos")
    args = parser.parse_args()
    images = [generate_scene(scene_rng(11, "val", i))[0] for i in range(args.scenes)]
    if args.voc.is_dir():
        dataset = open_dataset(args.voc, "val")
        images += [dataset.pair(i)[0] for i in range(len(dataset))]
    for path in args.artifacts:
        share, labels = agreement(path, images)
        print(json.dumps({"artifact": path.name, "images": len(images), "agreement": round(share, 6),
                          "labels_match": labels == list(load_model_manifest(path).labels)}), flush=True)


if __name__ == "__main__":
    main()
