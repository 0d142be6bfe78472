"""`edgeseg convert`: its options and its run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeseg.conventions import OUTPUT_KINDS
from edgeseg.convert.options import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_CALIBRATION_METHOD,
    DEFAULT_PERCENTILE,
    DEFAULT_VERIFY_IMAGES,
    PERCENTILE_ABOVE,
    PERCENTILE_MAX,
)


def register(sub: argparse._SubParsersAction) -> None:
    _register_convert(sub)


def _register_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert",
                       help="convert weights for a target; verify against PyTorch; write artifact + manifest",
                       description="Convert weights to a target's format at a fixed resolution, verify the result "
                                   "against the PyTorch FP32 reference, and write the artifact and its manifest "
                                   "atomically into --out as <weights>-<target>-<precision>-<resolution>.<ext>. "
                                   "The whole request is checked before any model is built.")
    from edgeseg.targets import all_targets  # the YAML profiles only: --help stays light

    p.add_argument("--target", default="host-cpu",
                   help=f"target profile: {', '.join(all_targets())} (`edgeseg targets` describes them; "
                        "default: %(default)s)")
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
                   help="text file of label names (UTF-8, one per line) for a plain state dict; refused with weights "
                        "that carry their own (sample, torchvision, an edgeseg checkpoint)")
    p.add_argument("--output", choices=OUTPUT_KINDS, default=OUTPUT_KINDS[0],
                   help="model output: class logits or the uint8 argmax mask (default: %(default)s)")
    p.add_argument("--fuse-preprocessing", action="store_true",
                   help="uint8 NHWC RGB input with the normalization inside the model")
    p.add_argument("--calib", default=None,
                   help="INT8 calibration images: a folder (images, VOC layout or images/+masks/) or synthetic:N")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                   help="how many calibration images to use (default: %(default)s)")
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, default=None,
                   help="activation range estimator for INT8 Q/DQ ONNX (host-cpu, Jetson): "
                        f"{DEFAULT_CALIBRATION_METHOD} (the default: "
                        "the mean over the images of each image's min and max), minmax, entropy or percentile; "
                        "TFLite (ai-edge-quantizer) and OpenVINO (NNCF) calibrate their own way and refuse it")
    p.add_argument("--calib-percentile", type=float, default=None,
                   help=f"the percentile of |x| for --calib-method percentile, above {PERCENTILE_ABOVE:g} and at most "
                        f"{PERCENTILE_MAX:g} (default: {DEFAULT_PERCENTILE})")
    _add_graph_options(p)
    p.add_argument("--verify-data", default=None,
                   help="images to verify on (default: ../shared/data/voc-sample when present, else synthetic scenes)")
    p.add_argument("--verify-images", type=int, default=DEFAULT_VERIFY_IMAGES,
                   help="how many verification images per set (default: %(default)s)")
    p.add_argument("--name", default=None,
                   help="the weights' name in the artifact's file name (default: 'sample' for the sample model, "
                        "the file stem of a checkpoint, the architecture for torchvision's download)")
    p.add_argument("--force", action="store_true",
                   help="replace an artifact of other weights that has the same name (the same weights always may)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(run=_convert)


def _add_graph_options(p: argparse.ArgumentParser) -> None:
    """The options that change the exported graph (each recorded in the manifest's `conversion`)."""
    p.add_argument("--int8-io", choices=("float", "int8", "uint8"), default="float",
                   help="input/output type of a full-INT8 TFLite model (android-* targets only; default: %(default)s)")
    p.add_argument("--no-aspp-rewrite", action="store_true",
                   help="export the dilated convolutions as they are, even where their off-centre taps only read "
                        "padding at this resolution (see docs/aspp-rewrite.md)")
    p.add_argument("--no-region-split", action="store_true",
                   help="android-cpu (LiteRT with XNNPACK): keep each dilated convolution whole instead of splitting "
                        "it by output region so only the taps that read the map are computed; the split is exact and "
                        "faster (1.3-1.4x at 640) but repeats weights per region: the .tflite is about 1.6x as large "
                        "at 320 and 2.6x at 640 (see docs/android.md); other targets refuse it")


def _convert(args: argparse.Namespace) -> int:
    from edgeseg.convert.pipeline import ConvertRequest, convert
    from edgeseg.manifest import MANIFEST_SUFFIX

    manifest = convert(ConvertRequest(
        target=args.target, precision=args.precision, resolution=args.resolution, weights=args.weights,
        out=args.out, arch=args.model, labels_file=args.labels, output_kind=args.output,
        fuse_preprocessing=args.fuse_preprocessing, calibration=args.calib, verify_data=args.verify_data,
        verify_images=args.verify_images, progress=not args.json, name=args.name, force=args.force,
        options={"calib_images": args.calib_images, "calib_method": args.calib_method,
                 "calib_percentile": args.calib_percentile, "int8_io": args.int8_io,
                 "aspp_rewrite": not args.no_aspp_rewrite, "region_split": not args.no_region_split},
    ))
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        v = manifest["verification"]
        diff = v.get("max_abs_logit_diff")
        print(f"wrote {manifest['manifest_path'].removesuffix(MANIFEST_SUFFIX)}")
        print(f"  verified against PyTorch FP32: argmax agreement {v['argmax_agreement']:.5f}"
              + (f", max |logit diff| {diff:.2e}" if diff is not None else "")
              + (f", mIoU change {v['miou_delta']:+.2f}" if v.get("miou_delta") is not None else ""))
    return 0
