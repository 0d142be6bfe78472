"""A copy of the source tree as pip installs it on a device, and a clean environment for a venv's commands:
shared by the device-install fixture (conftest) and the system-OpenCV tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEVICE_SOURCE_PARTS = ("edgeseg", "runtime", "convert", "benchmarks", "targets", "setup.cfg", "pyproject.toml",
                       "README.md")


def copy_source_tree(dest: Path) -> Path:
    """The parts of this repository a wheel is built from, copied into `dest` (made here)."""
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for part in DEVICE_SOURCE_PARTS:
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, dest / part, ignore=ignore)
        else:
            shutil.copy2(REPO / part, dest / part)
    return dest


def venv_env(venv: Path) -> dict[str, str]:
    """This process's environment with the venv's bin/ first on PATH and no Python path of ours leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env
