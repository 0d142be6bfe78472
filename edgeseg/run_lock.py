"""One run per output: a lock file held while a run writes an output, naming the run's process.

Two `demo --save`s, `train`s or `make-scenes` into one path used to both print "wrote" while the
second silently replaced (or, for a folder, mixed into) the first's output. A run takes its output's
lock before any work (`take`) and keeps it until its output is published; a second run into the same
output is refused in one line naming the first one's process id. The lock is an advisory `flock`,
which the kernel drops when its process dies (even by SIGKILL): a killed run's lock file blocks
nobody, and the next run takes it over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import ConfigError

LOCK_PREFIX = ".edgeseg-lock-"


def lock_path_for(output: Path) -> Path:
    """The lock file of an output file or folder: hidden, beside it (`.edgeseg-lock-NAME`; not `.NAME.*`, the
    names of an output's temporaries), so the output's own folder never shows it."""
    output = Path(output)
    return output.with_name(f"{LOCK_PREFIX}{output.name}")


def holder_pid(lock: Path) -> str | None:
    """The process id written in `lock` while a live run holds it, else None (no file, or a dead run's)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError:
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)


@dataclass
class RunLock:
    """A held lock; `release` removes its file and drops it (idempotent)."""

    path: Path
    fd: int | None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # while still held: a newcomer that opened it sees it replaced (take)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def take(lock: Path, busy: str) -> RunLock:
    """Hold `lock` for this run, writing this process's id in it; a ConfigError `busy.format(pid=...)` when a
    live run holds it. The folder must exist (an OSError otherwise, for the caller's own message)."""
    for _ in range(5):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(busy.format(pid=holder_pid(lock) or "?")) from None
        if not _same_file(fd, lock):  # its holder released (removed) it between our open and our lock
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return RunLock(Path(lock), fd)
    raise ConfigError(busy.format(pid="?"))
