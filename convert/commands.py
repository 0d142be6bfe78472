"""Subcommands of the workstation side: `train`, `convert`, `info`, `targets`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# convert.qdq.CALIBRATION_METHODS, spelled out so that `--help` does not import onnx (a test keeps them equal).
CALIBRATION_METHODS = ("minmax-mean", "minmax", "entropy", "percentile")


def register(sub: argparse._SubParsersAction) -> None:
    _register_convert(sub)
    _register_train(sub)
    _register_info(sub)
    _register_targets(sub)


def _register_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert",
                       help="convert weights for a target; verify against PyTorch; write artifact + manifest",
                       description="Convert weights to a target's format at a fixed resolution, verify the result "
                                   "against the PyTorch FP32 reference, and write the artifact and its manifest "
                                   "atomically into --out as <weights>-<target>-<precision>-<resolution>.<ext>. "
                                   "The whole request is checked before any model is built.")
    p.add_argument("--target", default="host-cpu",
                   help="target profile (see `edgeseg targets`; default: %(default)s)")
    p.add_argument("--precision", default="fp32",
                   help="fp32, fp16, bf16, int8 or int8-dynamic, as the target supports (default: %(default)s)")
    p.add_argument("--resolution", default="320",
                   help="320, 640, 1024, any multiple of 8 from 64, or HxW (default: %(default)s)")
    p.add_argument("--weights", default="sample",
                   help="'sample' (the trained sample model), 'torchvision' (download), or a .pth state dict / "
                        "edgeseg checkpoint (default: %(default)s)")
    p.add_argument("--model", default=None,
                   help="zoo architecture of a plain state dict (default: deeplabv3_mobilenet_v3_large; "
                        "checkpoints carry their own)")
    p.add_argument("--labels", type=Path, default=None,
                   help="text file of label names, one per line, for a plain state dict")
    p.add_argument("--output", choices=("logits", "mask"), default="logits",
                   help="model output: class logits or the uint8 argmax mask (default: %(default)s)")
    p.add_argument("--fuse-preprocessing", action="store_true",
                   help="uint8 NHWC RGB input with the normalization inside the model")
    p.add_argument("--calib", default=None,
                   help="INT8 calibration images: a folder (images, VOC layout or images/+masks/) or synthetic:N")
    p.add_argument("--calib-images", type=int, default=64,
                   help="how many calibration images to use (default: %(default)s)")
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, default=None,
                   help="activation range estimator for INT8 Q/DQ ONNX (host-cpu, Jetson): minmax-mean (the default: "
                        "the mean over the images of each image's min and max), minmax, entropy or percentile; "
                        "TFLite (ai-edge-quantizer) and OpenVINO (NNCF) calibrate their own way and refuse it")
    p.add_argument("--calib-percentile", type=float, default=99.99,
                   help="the percentile of |x| for --calib-method percentile (default: %(default)s)")
    p.add_argument("--int8-io", choices=("float", "int8", "uint8"), default="float",
                   help="input/output type of a full-INT8 TFLite model (default: %(default)s)")
    p.add_argument("--no-aspp-rewrite", action="store_true",
                   help="export the dilated convolutions as they are, even where their off-centre taps only read "
                        "padding at this resolution (see docs/aspp-rewrite.md)")
    p.add_argument("--verify-data", default=None,
                   help="images to verify on (default: ../shared/data/voc-sample when present, else synthetic scenes)")
    p.add_argument("--verify-images", type=int, default=8,
                   help="how many verification images per set (default: %(default)s)")
    p.add_argument("--name", default=None,
                   help="the weights' name in the artifact's file name (default: 'sample' for the sample model, "
                        "the file stem of a checkpoint, the architecture for torchvision's download)")
    p.add_argument("--force", action="store_true",
                   help="replace an artifact of other weights that has the same name (the same weights always may)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(run=_convert)


def _convert(args: argparse.Namespace) -> int:
    from edgeseg.convert.pipeline import ConvertRequest, convert

    manifest = convert(ConvertRequest(
        target=args.target, precision=args.precision, resolution=args.resolution, weights=args.weights,
        out=args.out, arch=args.model, labels_file=args.labels, output_kind=args.output,
        fuse_preprocessing=args.fuse_preprocessing, calibration=args.calib, verify_data=args.verify_data,
        verify_images=args.verify_images, progress=not args.json, name=args.name, force=args.force,
        options={"calib_images": args.calib_images, "calib_method": args.calib_method,
                 "calib_percentile": args.calib_percentile, "int8_io": args.int8_io,
                 "aspp_rewrite": not args.no_aspp_rewrite},
    ))
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        v = manifest["verification"]
        diff = v.get("max_abs_logit_diff")
        print(f"wrote {manifest['manifest_path'][:-len('.json')]}")
        print(f"  verified against PyTorch FP32: argmax agreement {v['argmax_agreement']:.5f}"
              + (f", max |logit diff| {diff:.2e}" if diff is not None else "")
              + (f", mIoU change {v['miou_delta']:+.2f}" if v.get("miou_delta") is not None else ""))
    return 0


def _register_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print an artifact's manifest and its embedded metadata readably",
                       description="Print an artifact's manifest, the metadata the artifact carries itself (TFLite "
                                   "Model Metadata, ONNX metadata_props) and whether the two agree. A .tflite "
                                   "without a manifest is described from its metadata alone.")
    p.add_argument("artifact", help="artifact, its manifest, or a folder holding one manifest")
    p.add_argument("--json", action="store_true", help="print the raw manifest and the embedded metadata as JSON")
    p.set_defaults(run=_info)


def _metadata_lines(m, embedded: dict | None) -> list[str]:
    from edgeseg.runtime.model_metadata import disagreements

    if embedded is None:
        return [f"metadata     none inside {m.artifact_path.name}"]
    if "unread" in embedded:
        return [f"metadata     {embedded['format']} not read: {embedded['unread']}"]
    if embedded["format"] == "TFLite Model Metadata":
        norm = embedded["normalization"]
        normalization = (f"NormalizationOptions mean {norm['mean']} std {norm['std']} (0..255)" if norm
                         else "no NormalizationOptions")
        lines = [f"metadata     {embedded['format']}: {embedded['name']} (version {embedded['version']}, "
                 f"author {embedded['author']}, license {embedded['license']}, "
                 f"parser >= {embedded['min_parser_version']})",
                 f"               input {embedded['color_space']} {embedded['size']}, {normalization}",
                 f"               output {embedded['output']} (activation {embedded['activation']})",
                 f"               labels {embedded['labels']}"]
    else:
        lines = [f"metadata     {embedded['format']}: " + ", ".join(f"{k}={v}" for k, v in embedded.items()
                                                                  if k not in ("format", "labels")),
                 f"               labels {embedded.get('labels')}"]
    if m.data.get("from_metadata"):
        lines.append("               (no manifest: edgeseg runs this model from its metadata)")
    else:
        found = disagreements(m, embedded)
        lines.append("               agrees with the manifest" if not found
                     else f"               DISAGREES with the manifest on: {', '.join(found)}")
    return lines


def _engine_lines(d: dict) -> list[str]:
    """The oldest engine release the artifact is verified with, and whether the installed one is older."""
    import importlib.metadata

    from edgeseg.targets import engine_floor_problem

    floor = d.get("runtime", {}).get("min_engine")
    if not floor:
        return []
    try:
        installed = importlib.metadata.version(floor["package"])
    except importlib.metadata.PackageNotFoundError:
        installed = None
    fmt = d.get("target_profile", {}).get("format")
    problem = engine_floor_problem(fmt, installed) if fmt else None
    here = "not installed here" if installed is None else f"installed {installed}"
    return [f"engine       {floor['package']} >= {floor['version']} (the oldest verified to give the same masks); "
            + (f"OLDER HERE: {problem}" if problem else here)]


def _info(args: argparse.Namespace) -> int:
    from edgeseg.runtime.backends import load_model_manifest
    from edgeseg.runtime.model_metadata import embedded_summary

    m = load_model_manifest(args.artifact)
    d = m.data
    embedded = embedded_summary(m.artifact_path)
    if args.json:
        print(json.dumps({**d, "embedded_metadata": embedded}, indent=2))
        return 0
    model, inp, out = d["model"], d["input"], d["output"]
    norm = inp.get("normalization")
    lines = [
        (f"artifact     {m.artifact_path}  ({d.get('size_mb', '?')} MB, "
         f"sha256 {str(d.get('artifact_sha256', '?'))[:12]})"),
        f"target       {d['target']}  backend {d['backend']}  precision {d['precision']}",
        f"model        {model['architecture']}, {model['num_classes']} classes: {', '.join(model['labels'])}",
        *([f"image pool   over {model['image_pool_window']} px windows where the input is larger"]
          if model.get("image_pool_window") else []),
        f"weights      {model.get('weights_source')}  (sha256 {str(model.get('weights_sha256'))[:12]})",
        (f"input        {inp['height']}x{inp['width']} {inp.get('layout')} {inp.get('dtype')} "
         f"{inp.get('color_order', 'RGB')}, normalization {'in model' if norm == 'in_model' else norm}"),
        f"output       {out['kind']} {out.get('layout')} {out.get('dtype')}",
    ]
    lines += _metadata_lines(m, embedded)
    lines += _engine_lines(d)
    parts = d.get("conversion", {}).get("xnnpack_partitions")
    if parts is not None:  # LiteRT artifacts: 1 = the whole graph runs inside the XNNPACK delegate
        lines.append(f"xnnpack      {parts} partition{'s' if parts != 1 else ''}"
                     + (" (the whole graph delegated)" if parts == 1 else " (ops between them run outside XNNPACK)"))
    v = d.get("verification")
    if v:
        lines.append(f"verification argmax agreement {v['argmax_agreement']:.5f}, "
                     f"max |logit diff| {v.get('max_abs_logit_diff')}, mIoU change {v.get('miou_delta')}, "
                     f"passed {v.get('passed')}")
        for s in v.get("sets", []):
            extra = f", mIoU {s['miou']:.2f} (reference {s['reference_miou']:.2f})" if "miou" in s else ""
            lines.append(f"               {s['set']}: {s['images']} images, "
                         f"agreement {s['argmax_agreement']:.5f}{extra}")
    if d.get("tools"):
        lines.append(f"tools        {', '.join(f'{k} {v}' for k, v in d['tools'].items())}")
    if d.get("created"):
        lines.append(f"created      {d.get('created')}")
    print("\n".join(lines))
    return 0


def _register_targets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list the target profiles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_targets)


def _targets(args: argparse.Namespace) -> int:
    from edgeseg.targets import all_targets

    targets = all_targets()
    if args.json:
        print(json.dumps({n: t.to_dict() for n, t in targets.items()}, indent=2))
        return 0
    for t in targets.values():
        extra = f", delegate {t.litert.delegate}" if t.litert else ""
        extra += f", DLA cores {t.tensorrt.dla_cores}" if t.tensorrt else ""
        extra += f", device {t.openvino.device}" if t.openvino else ""
        print(f"{t.name:18} {t.backend:12} {'/'.join(t.precisions):28} default {t.default_resolution}{extra}")
        print(f"{'':18} {t.description}")
    return 0


def _register_train(sub: argparse._SubParsersAction) -> None:
    from edgeseg.convert.train_config import TrainConfig

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
    from edgeseg.convert.train_config import TrainConfig

    config = TrainConfig(
        data=str(args.data), arch=args.model, resolution=args.resolution, crop=args.crop, epochs=args.epochs,
        scale_min=args.scale_min, scale_max=args.scale_max,
        batch_size=args.batch_size, lr=args.lr, train_split=args.train_split, val_split=args.val_split,
        seed=args.seed, workers=args.workers, save_dtype=args.save_dtype, bf16=not args.no_bf16, init=args.init,
        image_pool_window=args.image_pool_window,
    )
    from edgeseg.atomic import ensure_writable_dir
    from edgeseg.convert.train_config import check_init, parse_image_pool_window

    parse_image_pool_window(config.image_pool_window)
    check_init(config.init)  # before torch is imported: a wrong --init answers at once
    ensure_writable_dir(args.out.parent)
    from edgeseg.convert.train import train

    result = train(config, args.out, resume=args.resume, max_steps_per_epoch=args.max_steps_per_epoch)
    if args.json:
        print(json.dumps({"checkpoint": result["checkpoint"], "val_miou": result["val_miou"]}))
    else:
        print(f"wrote {result['checkpoint']}  (validation mIoU {result['val_miou']:.2f}, "
              f"{len(result['history'])} epochs; convert it with --weights {result['checkpoint']})")
    return 0
