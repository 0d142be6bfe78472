"""The layers of docs/developing.md are enforced by tools made for it, and these tests show that each catches
what it owns: import-linter's contracts (.importlinter) read the static imports of the installed layout; ruff
(pyproject.toml) bans what they cannot see, relative imports (TID252) and imports by name (TID251).

Each plant goes into a copy (import-linter: the installed layout, as .ci/lint-imports builds it; ruff: the
source tree, where pyproject.toml's per-file rules name the files), and the tool must fail naming it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.source_layout import REPO, copy_source_tree, installed_layout

TOOLS = Path(sys.executable).parent  # the venv's lint-imports and ruff, from the `dev` extra
UPWARD = "from edgeseg.convert.pipeline import convert\n"
RELATIVE = "from .backend import Backend\n"
BY_NAME = 'import importlib\n\npipeline = importlib.import_module("edgeseg.convert.pipeline")\n'


def run_tool(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # A wide terminal: lint-imports wraps its report at the terminal's width.
    return subprocess.run([str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def lint_imports(layout: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts, run where `layout/edgeseg` is the package it finds."""
    return run_tool([TOOLS / "lint-imports", "--no-cache", "--no-logo", REPO / ".importlinter"], layout)


def ruff_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """ruff's tidy-imports rules over a source tree, with the tree's own pyproject.toml."""
    return run_tool([TOOLS / "ruff", "check", "--no-cache", "--select", "TID", "--output-format", "concise", "."],
                    tree)


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """The installed layout (DEST/edgeseg/...), built once; plants go into copies of it."""
    dest = tmp_path_factory.mktemp("installed")
    installed_layout(dest)
    return dest


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    return copy_source_tree(tmp_path_factory.mktemp("source") / "tree")


def planted(tree: Path, relative: str, source: str, dest: Path) -> Path:
    """A copy of `tree` at `dest` with `source` written to `relative`."""
    shutil.copytree(tree, dest)
    (dest / relative).write_text(source, encoding="utf-8")
    return dest


def test_the_installed_layout_keeps_the_contracts(layout):
    result = lint_imports(layout)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_in_the_device_side_breaks_the_contracts(layout, tmp_path):
    copy = planted(layout, "edgeseg/runtime/planted.py", UPWARD, tmp_path / "copy")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "edgeseg.runtime.planted -> edgeseg.convert.pipeline (l.1)" in result.stdout


def test_the_source_tree_has_no_relative_import_and_no_import_by_name(source_tree):
    result = ruff_imports(source_tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("source", "rule"), [(RELATIVE, "TID252"), (BY_NAME, "TID251")],
                         ids=["relative-import", "import-by-name"])
def test_ruff_names_a_planted_import_its_contracts_cannot_see(source_tree, tmp_path, source, rule):
    copy = planted(source_tree, "runtime/planted.py", source, tmp_path / "copy")
    result = ruff_imports(copy)
    assert result.returncode != 0
    (finding,) = result.stdout.splitlines()[:1]
    assert finding.startswith("runtime/planted.py:") and f" {rule} " in finding, result.stdout
