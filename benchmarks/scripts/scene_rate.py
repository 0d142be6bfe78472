"""Scene generation rate: `python benchmarks/scripts/scene_rate.py [--size 1024] [--count 50]`.

Reports scenes per second of wall time and per CPU-second (process time, one process), for
generation alone and for generation plus the JPEG/PNG encoding `make-scenes` does. CPU time is
the number to compare on a shared machine: wall time there measures the neighbours.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import cv2
from PIL import Image

from edgeseg.scenes import SceneConfig, generate_scene, scene_rng


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__ and __doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # one core's rate; make-scenes is one process
    config = SceneConfig(height=args.size, width=args.size)
    for encode in (False, True):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.count):
            image, mask = generate_scene(scene_rng(0, "train", i), config)
            if encode:
                cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
                Image.fromarray(mask, mode="P").save(io.BytesIO(), format="PNG")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        what = "generate + encode" if encode else "generate"
        print(f"{args.size}x{args.size} {what}: {args.count / cpu:.2f} scenes per CPU-second, "
              f"{args.count / wall:.2f} scenes/s wall ({args.count} scenes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
