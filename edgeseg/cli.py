"""`edgeseg` command line: each concern owns its subcommand's options and its work.

Heavy frameworks are imported inside each command's run function, so `edgeseg --help` and the
device-side commands start without the conversion stack.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback

from edgeseg import __version__
from edgeseg.errors import EdgesegError, first_line
from edgeseg.optional import missing_package_message

# Modules that each define `register(subparsers)`; the order is the order in --help.
COMMAND_MODULES = (
    "edgeseg.convert.commands",
    "edgeseg.models.commands",
    "edgeseg.runtime.info",
    "edgeseg.targets.commands",
    "edgeseg.scenes_command",
    "edgeseg.benchmarks.commands",
    "edgeseg.runtime.commands",
    "edgeseg.runtime.doctor",
    "edgeseg.formats.tensorrt.runtime.commands",
)
# Commands that run without OpenCV; every other one imports it first, so a system OpenCV that a pip numpy
# shadows is one line naming both (edgeseg.system_packages), and doctor reports it among the rest.
WITHOUT_OPENCV = frozenset({"doctor", "targets"})
# Each command, the module that registers it and its one-line help. The parser registers only the
# command being run (its module may import OpenCV and numpy to build its options); the others are
# names and help lines, so `edgeseg --help` and a mistyped command import nothing heavy.
# tests/project/test_cli_startup.py keeps this table equal to what the modules register.
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("edgeseg.convert.commands",
                "convert weights for a target; verify against PyTorch; write artifact + manifest"),
    "train": ("edgeseg.models.commands", "fine-tune a zoo model on a labelled folder and write an edgeseg checkpoint"),
    "info": ("edgeseg.runtime.info", "print an artifact's manifest and its embedded metadata readably"),
    "targets": ("edgeseg.targets.commands", "list the target profiles"),
    "make-scenes": ("edgeseg.scenes_command", "write seeded synthetic scenes with masks in the PASCAL VOC layout"),
    "bench": ("edgeseg.benchmarks.commands",
              "latency, mIoU and cost per model x target x resolution x precision, in one report"),
    "report": ("edgeseg.benchmarks.commands",
               "one report from several bench runs (devices, days): a device column, a panel per device"),
    "demo": ("edgeseg.runtime.commands",
             "real-time segmentation of a camera, stream, video or images with a converted model"),
    "predict": ("edgeseg.runtime.commands", "segment images, folders, videos or streams and keep the class-id masks"),
    "doctor": ("edgeseg.runtime.doctor", "what this machine can convert and run, and why not"),
    "build-engine": ("edgeseg.formats.tensorrt.runtime.commands",
                     "build (or reuse) the TensorRT engine of a Jetson bundle on this machine's GPU"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line, only the module of the command it names registers its options."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="edgeseg",
        description="DeepLabV3 segmentation from a PyTorch checkpoint to TensorRT (Jetson) and LiteRT (Android).",
    )
    parser.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an internal error (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if argv is None:
        modules = COMMAND_MODULES
    else:  # the top-level options take no values, so the first word that is not an option is the command
        command = next((a for a in argv if not a.startswith("-")), None)
        module = COMMANDS[command][0] if command in COMMANDS else None
        modules = () if module is None else (module,)
        if module == "edgeseg.runtime.commands" and command not in WITHOUT_OPENCV:
            from edgeseg.system_packages import import_opencv

            import_opencv()  # its options come from capture and rendering, which import OpenCV
    for name in modules:
        importlib.import_module(name).register(sub)
    for name, (_, help_line) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_line)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever escapes it is one line on stderr: exit 2 for a problem with the input
    or the machine (a file, a full disk), 1 for an internal error (`--debug`: with the traceback), 130
    for Ctrl-C; a closed stdout (`edgeseg ... | head`) ends quietly."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [a for a in argv if a != "--debug"]
    try:
        parser = build_parser(argv)
    except EdgesegError as exc:
        _error(next((a for a in argv if not a.startswith("-")), "edgeseg"), str(exc))
        return 2
    args = parser.parse_args(argv)
    try:
        if args.command not in WITHOUT_OPENCV:
            from edgeseg.system_packages import import_opencv

            import_opencv()
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
        _error(args.command, message)
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
        first = first_line(exc)[:300]
        hint = "" if debug else " (run with --debug for the traceback)"
        _error(args.command, f"{type(exc).__name__}: {first}{hint}", prefix="internal error: ")
        if debug:
            traceback.print_exc()
        return 1


def _error(command: str, message: str, *, prefix: str = "error: ") -> None:
    with contextlib.suppress(BrokenPipeError, OSError):  # stderr gone too: nothing left to tell
        print(f"edgeseg {command}: {prefix}{message}", file=sys.stderr)


def _stdout_gone() -> int:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail noisily.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
