"""The device-side subcommands: `edgeseg demo` and `edgeseg predict`.

Its options come from the parts that own them (capture: the source; rendering: how masks are
drawn; sinks: where frames go), so the usage text and the code cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from edgeseg.runtime.capture import add_source_arguments
    from edgeseg.runtime.render import add_render_arguments
    from edgeseg.runtime.sinks import add_sink_arguments

    p = sub.add_parser(
        "demo", help="real-time segmentation of a camera, stream, video or images with a converted model",
        description="Run a converted model on a camera, stream, video file or images and draw the masks.\n"
                    "Capture, inference and rendering run on separate threads, so the model is the only bottleneck.\n"
                    "Ends at the end of the source, after --max-frames, when the window is closed ('q' or Esc),\n"
                    "when a camera is lost, or on Ctrl-C; a --save video is finished and playable on each of those.\n"
                    "Prints a summary: frames, dropped frames, end-to-end and inference-only FPS, per-stage p50/p90.",
        epilog="examples:\n"
               "  edgeseg demo --model model.engine --source csi://0\n"
               "  edgeseg demo --model model.onnx --source v4l2:///dev/video0 --mode side-by-side\n"
               "  edgeseg demo --model model.onnx --source clip.mp4 --headless --save out.mp4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p)
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    add_source_arguments(p)
    add_render_arguments(p)
    add_sink_arguments(p)
    p.set_defaults(run=_demo)
    _register_predict(sub)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model and --threads: how every command that runs a converted model names it and its CPU threads."""
    p.add_argument("--model", required=True, type=Path, metavar="ARTIFACT",
                   help="a converted model: the artifact, its manifest, or a folder holding one")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for the engine, 1 to this machine's usable cores (default: the manifest's "
                        "target profile, at most those cores)")


def _register_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="segment images, folders, videos or streams and keep the class-id masks",
        description="Segment every input with a converted model and write, under --out:\n"
                    "  masks/<name>.png         class ids as pixel values, PASCAL VOC palette, the source's size\n"
                    "  overlay/, side-by-side/  renderings, when --save asks (a video: one .mp4 per kind)\n"
                    "  probs/<name>.npy         float16 class probabilities (C x H x W, model resolution), when asked\n"
                    "  predictions.json         per input: size, classes present, pixel shares, inference ms\n"
                    "A video's frames are named <video>_000000 …. An input that cannot be decoded is skipped with\n"
                    "one line naming it. The exit status is non-zero, and nothing of the run is left under --out,\n"
                    "when nothing could be processed, when the model's output is not a mask (NaN/Inf, class ids past\n"
                    "its labels) or when an output cannot be written. --out holds one run: a folder holding another\n"
                    "run's results (or a killed run's leftovers) is refused unless --force, which removes them first;\n"
                    "a folder another predict is writing into is refused, naming its process.",
        epilog="examples:\n"
               "  edgeseg predict --model out/sample-host-cpu-fp32-320.onnx --source photos/ --out pred\n"
               "  edgeseg predict --model model.tflite --source clip.mp4 --out pred --save mask,overlay\n"
               "  edgeseg predict --model model.onnx --source rtsp://cam/stream --out pred --max-frames 100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p)
    p.add_argument("--source", required=True, metavar="IMAGE|DIR|VIDEO|URI",
                   help="an image, a folder of images (a VOC folder: its JPEGImages/), a video file, "
                        "or a stream/camera URI")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--force", action="store_true",
                   help="--out holds another run's results: remove them (predictions.json, masks/, overlay/, "
                        "side-by-side/, probs/; nothing else) and write this run's")
    p.add_argument("--save", default="mask", metavar="KINDS",
                   help="comma-separated: mask (always), overlay, side-by-side, probs (default: %(default)s)")
    p.add_argument("--classes", default=None, metavar="NAMES",
                   help="comma-separated class names or ids to keep; other pixels become background (class 0)")
    p.add_argument("--video-frames", action="store_true",
                   help="videos: write overlay/side-by-side as one PNG per frame instead of one .mp4 per kind")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="videos and streams: stop after N frames")
    p.add_argument("--first-frame-timeout", type=float, default=15.0, metavar="S",
                   help="videos and streams: skip one that has not delivered its first frame after S seconds "
                        "(a pipe with no writer, a silent stream; 0 waits forever; default: %(default)s)")
    p.add_argument("--alpha", type=float, default=0.5, metavar="A", help="overlay opacity, 0..1 (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_predict)


def _predict(args: argparse.Namespace) -> int:
    from edgeseg.runtime.capture import first_frame_timeout
    from edgeseg.runtime.predict import PredictConfig, comma_list, parse_save, run_predict
    from edgeseg.runtime.render import RenderOptions

    classes = comma_list("--classes", args.classes, "disc,box") if args.classes is not None else None
    config = PredictConfig(model=args.model, source=args.source, out=args.out, save=parse_save(args.save),
                           classes=classes, threads=args.threads, max_frames=args.max_frames,
                           video_frames=args.video_frames, progress=not args.no_progress, force=args.force,
                           first_frame_timeout_s=first_frame_timeout(args.first_frame_timeout),
                           render=RenderOptions(alpha=args.alpha, hud=False))
    summary = run_predict(config)
    print(summary.format(args.out))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from edgeseg.errors import SourceError
    from edgeseg.runtime.capture import source_options_from_args
    from edgeseg.runtime.demo import DemoConfig, run_demo
    from edgeseg.runtime.interrupts import HeldInterrupts
    from edgeseg.runtime.render import render_options_from_args

    config = DemoConfig(
        model=args.model, source=args.source, source_options=source_options_from_args(args),
        render=render_options_from_args(args), save=args.save, save_frames=args.save_frames,
        headless=args.headless, max_frames=args.max_frames, threads=args.threads,
        progress=args.headless or args.save is not None or args.save_frames is not None,
    )
    # `kill PID` takes the Ctrl-C path (video finished, summary printed) instead of dying mid-write, also
    # before the pipeline runs; the pipeline holds both signals while it writes and counts a frame.
    with HeldInterrupts().installed():
        summary = run_demo(config)
    print(summary.format())
    if summary.source_lost:
        raise SourceError(summary.end_reason)
    if summary.interrupted:
        print("edgeseg demo: interrupted", file=sys.stderr)
        return 130
    return 0
