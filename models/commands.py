"""`edgeseg train`: fine-tune a zoo model on a labelled folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeseg.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    _register_train(sub)


def _register_train(sub: argparse._SubParsersAction) -> None:
    from edgeseg.models.train_config import TrainConfig

    d = TrainConfig(data="")
    p = sub.add_parser("train", help="fine-tune a zoo model on a labelled folder and write an edgeseg checkpoint")
    p.add_argument("--data", required=True, help="VOC-layout folder or images/ + masks/ folder with labels.txt")
    p.add_argument("--model", default=d.arch, help="zoo architecture (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help="training crop and validation size (default: %(default)s)")
    p.add_argument("--crop", type=int, default=None,
                   help="training crop size (default: --resolution; smaller trains faster)")
    p.add_argument("--scale-min", type=float, default=d.scale_min,
                   help="smallest scene scale, as a fraction of --resolution on the short side (default: %(default)s)")
    p.add_argument("--scale-max", type=float, default=d.scale_max,
                   help="largest scene scale; scales are drawn log-uniform between the two (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="epochs to train; 0 writes the --init weights unchanged, with the --image-pool-window and "
                        "their validation score (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate, poly decay (default: %(default)s)")
    p.add_argument("--train-split", default=d.train_split, help="split list for training (default: %(default)s)")
    p.add_argument("--val-split", default=d.val_split, help="split list for validation (default: %(default)s)")
    p.add_argument("--init", default=d.init, metavar="sample|CKPT|torchvision|scratch",
                   help="start from the sample model or an edgeseg checkpoint (fine-tuning keeps its labels unless the "
                        "data's differ, then the classifier head is re-initialised), from torchvision's weights (falls "
                        "back to scratch offline) or from scratch (default: %(default)s)")
    p.add_argument("--image-pool-window", default=d.image_pool_window, metavar="PIXELS|global|init",
                   help="average the ASPP image-pooling branch over a window of this many input pixels where the "
                        "input is larger (TensorFlow DeepLab's image_pooling_crop_size), or over the whole map "
                        "(global); recorded in the checkpoint, so conversion and the bench use it too (default: "
                        "%(default)s, the --init checkpoint's setting, global without one)")
    p.add_argument("--save-dtype", choices=("fp32", "fp16"), default=d.save_dtype,
                   help="dtype of the saved weights (default: %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="data-loading processes; 0 loads in the training process (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 instead of bfloat16 autocast")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help="continue from the training state saved beside --out")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (usable as --weights)")
    p.add_argument("--json", action="store_true",
                   help="print the checkpoint path and validation mIoU as JSON on stdout")
    p.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> int:
    from edgeseg.models.train_config import TrainConfig

    config = TrainConfig(
        data=str(args.data), arch=args.model, resolution=args.resolution, crop=args.crop, epochs=args.epochs,
        scale_min=args.scale_min, scale_max=args.scale_max,
        batch_size=args.batch_size, lr=args.lr, train_split=args.train_split, val_split=args.val_split,
        seed=args.seed, workers=args.workers, save_dtype=args.save_dtype, bf16=not args.no_bf16, init=args.init,
        image_pool_window=args.image_pool_window,
    )
    from edgeseg.atomic import make_folder, unmake
    from edgeseg.models.train_config import check_init, parse_image_pool_window

    parse_image_pool_window(config.image_pool_window)
    if args.max_steps_per_epoch is not None and args.max_steps_per_epoch < 1:
        raise ConfigError(f"--max-steps-per-epoch {args.max_steps_per_epoch}: must be 1 or more")
    check_init(config.init)  # before torch is imported: a wrong --init answers at once
    made = make_folder(args.out.parent)
    try:
        from edgeseg.models.train import train

        result = train(config, args.out, resume=args.resume, max_steps_per_epoch=args.max_steps_per_epoch)
    except BaseException:
        unmake(made)  # a run that wrote nothing leaves no folder behind (one holding a kept state stays)
        raise
    if args.json:
        print(json.dumps({"checkpoint": result["checkpoint"], "val_miou": result["val_miou"]}))
    else:
        print(f"wrote {result['checkpoint']}  (validation mIoU {result['val_miou']:.2f}, "
              f"{len(result['history'])} epochs; convert it with --weights {result['checkpoint']})")
    return 0
