"""`edgeseg` command line: each concern owns its subcommand's options and its work.

Heavy frameworks are imported inside each command's run function, so `edgeseg --help` and the
device-side commands start without the conversion stack.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

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
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever escapes it is one line on stderr: exit 2 for a problem with the input
    or the machine (a file, a full disk), 1 for an internal error (`--debug`: with the traceback), 130
    for Ctrl-C; a closed stdout (`edgeseg ... | head`) ends quietly."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a reader that went away is found here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except EdgesegError as exc:
        _error(args.command, str(exc))
        return 2
    except ModuleNotFoundError as exc:
        # A package of another install profile (torch on a device install): name the extra, not a traceback.
        message = missing_package_message(exc.name or "", "this command")
        if message is None:
            raise
        print(f"edgeseg {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _error(args.command, "interrupted", prefix="")
        return 130
    except OSError as exc:  # the machine, not edgeseg: a full disk, a missing or unwritable file
        where = f"{exc.filename}: " if exc.filename else ""
        _error(args.command, f"{where}{exc.strerror or exc}")
        if debug:
            traceback.print_exc()
        return 2
    except MemoryError:
        _error(args.command, "out of memory (a smaller --resolution or fewer images may fit)")
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, the traceback on request
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        hint = "" if debug else " (run with --debug for the traceback)"
        _error(args.command, f"{type(exc).__name__}: {first}{hint}", prefix="internal error: ")
        if debug:
            traceback.print_exc()
        return 1


def _error(command: str, message: str, *, prefix: str = "error: ") -> None:
    try:
        print(f"edgeseg {command}: {prefix}{message}", file=sys.stderr)
    except (BrokenPipeError, OSError):
        pass


def _stdout_gone() -> int:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail noisily.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
