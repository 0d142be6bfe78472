"""`edgeseg` command line: each concern owns its subcommand's options and its work.

Heavy frameworks are imported inside each command's run function, so `edgeseg --help` and the
device-side commands start without the conversion stack.
"""

from __future__ import annotations

import argparse
import sys

from edgeseg import __version__
from edgeseg.errors import EdgesegError
from edgeseg.optional import missing_package_message

# Modules that each define `register(subparsers)`; the order is the order in --help.
COMMAND_MODULES = (
    "edgeseg.convert.commands",
    "edgeseg.benchmarks.commands",
    "edgeseg.runtime.commands",
    "edgeseg.runtime.engine_commands",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="edgeseg",
        description="DeepLabV3 segmentation from a PyTorch checkpoint to TensorRT (Jetson) and LiteRT (Android).",
    )
    parser.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except EdgesegError as exc:
        print(f"edgeseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        # A package of another install profile (torch on a device install): name the extra, not a traceback.
        message = missing_package_message(exc.name or "", "this command")
        if message is None:
            raise
        print(f"edgeseg {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
