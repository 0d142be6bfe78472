"""Fault injection, issue 30 family 4 (class 5 of the first campaign):
whatever escapes a command is one line; a closed stdout ends quietly.

Exit codes: 2 for a problem with the input or the machine, 1 for an internal error (the traceback
with --debug), 130 for Ctrl-C, 141 when the reader of stdout went away (`edgeseg ... | head`).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from edgeseg.cli import main
from edgeseg.runtime import info as info_command


def raise_from_info(monkeypatch, exc: BaseException) -> None:
    def failing(args):
        raise exc
    monkeypatch.setattr(info_command, "_info", failing)


def test_stdout_closed_by_its_reader_exits_quietly():
    # The read end is closed before the child writes a byte: its first flush meets EPIPE, every time.
    proc = subprocess.Popen([sys.executable, "-m", "edgeseg", "targets"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read() == b""


def test_os_error_is_one_line_naming_the_file_and_exit_2(monkeypatch, capsys):
    raise_from_info(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/model.onnx"))
    assert main(["info", "x"]) == 2
    assert capsys.readouterr().err == "edgeseg info: error: /data/out/model.onnx: No space left on device\n"


def test_internal_error_is_one_line_and_exit_1(monkeypatch, capsys):
    raise_from_info(monkeypatch, ValueError("boom\nsecond line"))
    assert main(["info", "x"]) == 1
    assert capsys.readouterr().err == ("edgeseg info: internal error: ValueError: boom "
                                       "(run with --debug for the traceback)\n")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_prints_the_traceback_wherever_it_is_given(monkeypatch, capsys, where):
    raise_from_info(monkeypatch, ValueError("boom"))
    argv = ["--debug", "info", "x"] if where == "before" else ["info", "x", "--debug"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgeseg info: internal error: ValueError: boom\n")
    assert "Traceback (most recent call last)" in err and 'raise exc' in err


def test_ctrl_c_during_a_backend_import_is_reported_as_an_interrupt(monkeypatch, capsys):
    import importlib

    from edgeseg.runtime.backend import require

    def interrupted_import(name):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:  # what a library's broad import guard turns it into
            raise ImportError(f"cannot import {name}") from interrupt

    monkeypatch.setattr(importlib, "import_module", interrupted_import)
    with pytest.raises(KeyboardInterrupt):
        require("onnxruntime", "the ONNX Runtime backend")
    monkeypatch.undo()
    raise_from_info(monkeypatch, KeyboardInterrupt())
    assert main(["info", "x"]) == 130
    assert capsys.readouterr().err == "edgeseg info: interrupted\n"


def test_out_of_memory_is_one_line(monkeypatch, capsys):
    raise_from_info(monkeypatch, MemoryError())
    assert main(["info", "x"]) == 2
    assert capsys.readouterr().err == ("edgeseg info: error: out of memory "
                                       "(a smaller --resolution or fewer images may fit)\n")
