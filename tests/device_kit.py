"""A copy of the source tree as pip installs it on a device, and a clean environment for a venv's commands:
shared by the device-install fixture (conftest) and the system-OpenCV tests."""

from __future__ import annotations

import os
from pathlib import Path

from tests.source_layout import copy_source_tree

__all__ = ["copy_source_tree", "venv_env"]


def venv_env(venv: Path) -> dict[str, str]:
    """This process's environment with the venv's bin/ first on PATH and no Python path of ours leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env
