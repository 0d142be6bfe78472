"""Values the tests share, each named once: where the repository is, and the sizes, targets and settings
that several test files convert or run with. The source's own constants (edgeseg.conventions, the
registries) come first; these are the tests' choices."""

from __future__ import annotations

from pathlib import Path

# The repository's root (this file is tests/constants.py); tests in any folder below read files from it.
REPO = Path(__file__).resolve().parents[1]
