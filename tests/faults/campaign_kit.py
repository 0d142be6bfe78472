"""What every case of the issue-30 campaign checks: the exit code, the one line on stderr (no traceback, no
`internal error`), and what is (and is not) left on disk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from edgeseg.cli import main
from tests.constants import REPO


def run_cli(capsys, *argv: object) -> tuple[int, str]:
    """Run edgeseg in this process: (exit code, stderr), stdout dropped."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def run_child(*argv: object, env: dict[str, str] | None = None, timeout: float = 300,
              cwd: Path | None = None) -> tuple[int, str]:
    """Run edgeseg in a child process (kill points, concurrent runs): (exit code, stderr)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    result = subprocess.run([sys.executable, "-m", "edgeseg", *[str(a) for a in argv]], env=full_env,
                            capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    return result.returncode, result.stderr


def one_line_error(err: str, command: str) -> str:
    """The message of the one `edgeseg COMMAND: error: ...` line on stderr (progress bars and notes aside),
    asserting it is the only edgeseg line and that no traceback or `internal error` came with it."""
    assert "Traceback" not in err and "internal error" not in err, err
    lines = re.findall(r"edgeseg [a-z-]+: .*", err.replace("\r", "\n"))  # a progress bar may precede it
    assert len(lines) == 1, err
    prefix = f"edgeseg {command}: error: "
    assert lines[0].startswith(prefix), err
    return lines[0][len(prefix):]


def tree(root: Path) -> list[str]:
    """Every path under `root`, relative, sorted (hidden ones included)."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
