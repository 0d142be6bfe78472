"""Atomic writes: an artifact is either complete on disk or absent, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edgeseg.errors import ConfigError


def ensure_writable_dir(path: Path) -> None:
    """Create `path` (and parents) or raise a one-line ConfigError saying why it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create output folder ({exc.strerror})") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{path}: output folder is not writable")


@contextlib.contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """A scratch folder beside `out_dir` (same filesystem, so the final moves are renames).

    Files written into it are moved into `out_dir` by `publish`; on any error the scratch
    folder is removed and `out_dir` is left as it was.
    """
    ensure_writable_dir(out_dir)
    scratch = Path(tempfile.mkdtemp(prefix=".edgeseg-staging-", dir=out_dir))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def publish(staged: list[Path], out_dir: Path) -> list[Path]:
    """Move staged files into `out_dir` with atomic renames, in the given order (manifest last)."""
    published = []
    for src in staged:
        dst = out_dir / src.name
        os.replace(src, dst)
        published.append(dst)
    return published


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, payload: Any) -> None:
    write_bytes_atomic(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
