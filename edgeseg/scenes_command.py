"""`edgeseg make-scenes`: the sample world's seeded synthetic scenes, written in the PASCAL VOC layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-scenes", help="write seeded synthetic scenes with masks in the PASCAL VOC layout")
    p.add_argument("--out", type=Path, required=True,
                   help="folder to write (JPEGImages/, SegmentationClass/, ImageSets/, labels.txt), published whole at "
                        "the end: new, empty, or an earlier set (replaced)")
    p.add_argument("--train", type=int, default=1600, help="training scenes (default: %(default)s)")
    p.add_argument("--val", type=int, default=200, help="validation scenes (default: %(default)s)")
    p.add_argument("--size", type=int, default=1024,
                   help="scene width and height in native pixels, 16 to 4096; ground truth at that size (default: "
                        "%(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed, 0 or more; the same seed writes the same files (default: %(default)s)")
    p.set_defaults(run=_make_scenes)


def _make_scenes(args: argparse.Namespace) -> int:
    from edgeseg.scenes import SceneConfig, write_voc_dataset

    out = write_voc_dataset(args.out, train=args.train, val=args.val, seed=args.seed,
                            config=SceneConfig(height=args.size, width=args.size))
    print(f"wrote {args.train} train + {args.val} val scenes to {out}")
    return 0
