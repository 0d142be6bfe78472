"""The command line starts light: `--help` and argument errors import nothing heavy.

Wall times are measured by benchmarks/scripts/cli_latency.py, not here (a shared machine's load
would make a timed test flaky); these tests check what is imported, which is what costs the time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from edgeseg import cli

HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "cv2", "numpy", "matplotlib", "PIL", "ai_edge_litert")


def _registered_by(module: str) -> dict[str, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(module).register(sub)
    return {action.dest: action.help for action in sub._choices_actions}


def test_the_command_table_is_what_the_modules_register():
    registered = {}
    for module in cli.COMMAND_MODULES:
        registered.update({name: (module, help_line) for name, help_line in _registered_by(module).items()})
    assert registered == cli.COMMANDS, "edgeseg/cli.py COMMANDS must list every command with its module and help"


def _modules_loaded_by(argv: list[str]) -> tuple[int, list[str]]:
    """Run `edgeseg ARGV` in a fresh interpreter; its exit status and which heavy modules it imported."""
    code = (f"import sys, json\nfrom edgeseg.cli import main\ntry:\n    status = main({argv!r})\n"
            f"except SystemExit as exc:\n    status = exc.code\n"
            f"print(json.dumps([status, [m for m in {HEAVY!r} if m in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return status, loaded


@pytest.mark.parametrize(("argv", "expected_status"), [(["--help"], 0), (["no-such-command"], 2), (["demo"], 2),
                                                      (["convert", "--no-such-flag"], 2),
                                                      (["bench", "--no-such-flag"], 2)])
def test_help_and_argument_errors_import_nothing_heavy(argv, expected_status):
    status, loaded = _modules_loaded_by(argv)
    assert status == expected_status
    assert loaded == [] or set(loaded) <= {"cv2", "numpy"} and argv[0] == "demo", loaded


@pytest.mark.parametrize("argv", [["convert", "--target", "no-such-board", "--out", "{tmp}"],
                                  ["convert", "--resolution", "333", "--out", "{tmp}"]])
def test_refused_conversions_never_load_the_conversion_stack(argv, tmp_path):
    status, loaded = _modules_loaded_by([a.format(tmp=tmp_path) for a in argv])
    assert status == 2
    assert not {"torch", "torchvision", "onnx"} & set(loaded), loaded


def test_a_commands_own_help_still_lists_its_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["doctor", "--help"])
    assert "--json" in capsys.readouterr().out
