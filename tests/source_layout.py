"""The source tree as pip sees it: the folders setup.cfg maps onto `edgeseg.*`, a copy a wheel is built
from (the device installs), and the installed layout (`edgeseg/` with every subpackage inside) that pyright
and import-linter read. One reading of setup.cfg for the tests, CI and the arm64 scripts.

    python tests/source_layout.py --parts            # the files and folders a wheel is built from
    python tests/source_layout.py --installed DEST   # DEST/edgeseg/... as pip would install it
    pyright ... | python tests/source_layout.py --source-paths DEST   # DEST/edgeseg/runtime/x.py -> runtime/x.py
"""

from __future__ import annotations

import argparse
import configparser
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("setup.cfg", "pyproject.toml", "README.md")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")


def package_dirs(repo: Path = REPO) -> dict[str, str]:
    """setup.cfg's package_dir: {'edgeseg': 'edgeseg', 'edgeseg.formats': 'formats', ...}."""
    cfg = configparser.ConfigParser()
    cfg.read(repo / "setup.cfg")
    pairs = (line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines())
    return {package.strip(): folder.strip() for package, folder in pairs}


def source_parts(repo: Path = REPO) -> tuple[str, ...]:
    """The repository's folders and files a wheel is built from."""
    return (*dict.fromkeys(package_dirs(repo).values()), *PROJECT_FILES)


def copy_source_tree(dest: Path, repo: Path = REPO) -> Path:
    """The parts of the repository a wheel is built from, copied into `dest` (made here)."""
    dest.mkdir(parents=True)
    for part in source_parts(repo):
        if (repo / part).is_dir():
            shutil.copytree(repo / part, dest / part, ignore=_IGNORE)
        else:
            shutil.copy2(repo / part, dest / part)
    return dest


def installed_layout(dest: Path, repo: Path = REPO) -> Path:
    """`dest/edgeseg/...`: each mapped folder copied where pip installs it (edgeseg.formats -> edgeseg/formats).
    Returns `dest/edgeseg`."""
    shutil.rmtree(dest / "edgeseg", ignore_errors=True)
    for package, folder in sorted(package_dirs(repo).items(), key=lambda item: item[0].count(".")):
        target = dest.joinpath(*package.split("."))
        shutil.copytree(repo / folder, target, ignore=_IGNORE, dirs_exist_ok=True)
    return dest / "edgeseg"


def source_paths(text: str, dest: Path, repo: Path = REPO) -> str:
    """`text` with each path into the installed layout under `dest` replaced by the source file's path relative
    to the repository (DEST/edgeseg/formats/onnx/runtime.py -> formats/onnx/runtime.py)."""
    # The deepest package first: edgeseg.formats before edgeseg.
    for package, folder in sorted(package_dirs(repo).items(), key=lambda item: -item[0].count(".")):
        installed = dest.resolve().joinpath(*package.split("."))
        text = text.replace(f"{installed}/", f"{folder}/")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--parts", action="store_true", help="print the parts a wheel is built from")
    group.add_argument("--installed", type=Path, metavar="DEST", help="write the installed layout under DEST")
    group.add_argument("--source-paths", type=Path, metavar="DEST",
                       help="copy stdin to stdout with paths into DEST's installed layout made the source files'")
    args = parser.parse_args()
    if args.parts:
        print(" ".join(source_parts()))
    elif args.installed:
        print(installed_layout(args.installed))
    else:
        for line in sys.stdin:
            sys.stdout.write(source_paths(line, args.source_paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
