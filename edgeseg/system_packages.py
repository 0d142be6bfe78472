"""OpenCV and numpy as a device has them: the system's (JetPack's, the distribution's) seen through a
`--system-site-packages` venv, where a pip numpy in the venv shadows the one the system's OpenCV was
built against and `import cv2` then fails inside numpy with two tracebacks.

`import_opencv()` is how every command imports OpenCV first: quietly, and when it fails, with one line
naming which package shadows which and what to do (docs/jetson.md). `doctor` reports the same line.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from edgeseg.errors import MissingPackageError, PackageConflictError, first_line
from edgeseg.optional import install_hint, try_import
from edgeseg.packages import OPENCV

DOCS = "docs/jetson.md#install-on-the-jetson"


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Collect what is written to file descriptor 2 (numpy's C-level complaint goes there, not through
    sys.stderr) while the block runs; the text is in the yielded list afterwards."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def numpy_copies() -> list[tuple[str, Path]]:
    """(version, folder) of every numpy on sys.path, in import order: the first is the one imported."""
    copies = []
    for entry in sys.path:
        if not entry or not Path(entry).is_dir():
            continue
        for dist in importlib.metadata.distributions(name="numpy", path=[entry]):
            copies.append((dist.version, Path(entry)))
    return list(dict.fromkeys(copies))


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else -1


def shadowing_line(opencv_file: str | None, error: str) -> str | None:
    """One line naming the numpy that shadows the one OpenCV needs, or None when that is not the cause."""
    copies = numpy_copies()
    if len(copies) < 2:
        return None
    (used_version, used_at), *others = copies
    opencv_dir = Path(opencv_file).parent if opencv_file else None
    # The copy beside OpenCV (the system's) is the one it was built against; else any of another major.
    beside = [c for c in others if opencv_dir is not None and c[1] == opencv_dir]
    wanted = beside or [c for c in others if _major(c[0]) != _major(used_version)]
    if not wanted or _major(wanted[0][0]) == _major(used_version):
        return None
    want_version, want_at = wanted[0]
    where = f" ({opencv_file})" if opencv_file else ""
    return (f"OpenCV{where} was built for numpy {_major(want_version)}.x, but numpy {used_version} in {used_at} "
            f"shadows the system's numpy {want_version} ({want_at}), so cv2 cannot import ({error}); "
            f"pip uninstall numpy here, then reinstall edgeseg with the system numpy as a constraint ({DOCS})")


def import_opencv() -> ModuleType:
    """`cv2`, or one line saying why not: not installed (which extra), or shadowed (which numpy by which)."""
    if "cv2" in sys.modules:
        return sys.modules["cv2"]
    spec = importlib.util.find_spec("cv2")
    if spec is None:
        raise MissingPackageError(f"this command needs OpenCV ('{OPENCV.distribution}'), which is not installed here: "
                                  f"{install_hint(OPENCV.extra)}, or use the system's OpenCV (JetPack's on a Jetson)")
    with _stderr_captured() as noise:
        imported = try_import(OPENCV.module)
    if imported.module is not None:
        return imported.module
    failure = imported.error or ImportError(OPENCV.module)  # (set whenever the import failed)
    error = f"{type(failure).__name__}: {first_line(failure)}"
    explained = shadowing_line(spec.origin, error)
    if explained is None:
        detail = " ".join(line.strip() for line in "".join(noise).splitlines() if line.strip())[:200]
        explained = (f"OpenCV ({spec.origin}) is installed but does not import ({error})"
                     + (f"; it said: {detail}" if detail else ""))
    raise PackageConflictError(explained)
