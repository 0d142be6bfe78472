"""Atomic writes: an artifact is either complete on disk or absent, never half-written.

Crash- and concurrency-safety, without relying on timing:
- every temporary name (a staging folder, a `.name.XXXX` file) is held under an advisory lock
  (`fcntl.flock`) for as long as its writer lives; the kernel drops the lock when the process dies,
  even by SIGKILL, so the next writer removes exactly the leftovers of dead runs and never a live
  run's files (and may replace a file a dead run half-published: `interrupted_publish`);
- `publish` moves a staged artifact and its manifest into place under a lock on the output folder,
  the old manifest removed first and the new one last: a reader sees the new pair, the old pair, or
  an artifact without a manifest (absent), never a manifest describing another artifact (and the
  manifest's sha256 is checked on every load besides);
- `crash_point(name)` ends the process abruptly at a named moment when `$EDGESEG_CRASH_AT` names it,
  so tests simulate `kill -9` at exactly that moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgeseg.errors import ConfigError
from edgeseg.manifest import manifest_path_for

STAGING_PREFIX = ".edgeseg-staging-"
OWNER_FILE = ".owner"
CRASH_ENV = "EDGESEG_CRASH_AT"
CRASH_EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL
# A staging folder whose owner lock is not taken yet may be a run's first milliseconds: leave young ones alone.
_UNLOCKED_GRACE_S = 60.0


def crash_point(name: str) -> None:
    """End the process at once, as `kill -9` would (no cleanup, no finally), when `$EDGESEG_CRASH_AT` is `name`."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(CRASH_EXIT_CODE)


def _try_lock(path: Path, *, shared: bool = False) -> int | None:
    """An fd holding a flock on `path` (exclusive, or `shared` for a look that others may take at the same
    time), or None when another live process holds it exclusively."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _create_locked(path: Path) -> int:
    """Create `path` already locked by this process (the fd is the lock): made under another name and
    renamed, so no cleaner can ever see `path` unlocked while its owner lives."""
    pending = path.with_name(path.name + ".new")
    fd = os.open(pending, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(pending, path)
    return fd


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def clean_stale_staging(out_dir: Path) -> list[Path]:
    """Remove staging folders in `out_dir` left by conversions that died; return what was removed."""
    removed = []
    for folder in sorted(Path(out_dir).glob(f"{STAGING_PREFIX}*")):
        owner = folder / OWNER_FILE
        if not owner.exists():
            if folder.is_dir() and _age_s(folder) > _UNLOCKED_GRACE_S:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            continue
        fd = _try_lock(owner)
        if fd is None:
            continue  # its conversion is still running
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def interrupted_publish(published_name: Path) -> bool:
    """True when a dead run's staging beside `published_name` still holds the file it was publishing under
    that name's manifest: what sits at `published_name` is that run's leftover (its manifest was never
    published), so the next run may replace it."""
    path = Path(published_name)
    manifest_name = manifest_path_for(path).name
    for folder in Path(path.parent).glob(f"{STAGING_PREFIX}*"):
        if not (folder / manifest_name).is_file():
            continue
        # A shared look: two reruns looking at once must not take each other for the live owner.
        fd = _try_lock(folder / OWNER_FILE, shared=True)
        if fd is not None:  # its owner is gone
            os.close(fd)
            return True
    return False


def clean_stale_temps(path: Path) -> list[Path]:
    """Remove `.NAME.*` temporaries of `path` left by writers that died (a live writer holds its lock)."""
    path = Path(path)
    # Exactly the names locked_temp_file makes (mkstemp's 8 random characters), so no user file is touched.
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}(" + re.escape(path.suffix) + r")?")
    removed = []
    for tmp in sorted(path.parent.glob(f".{glob_escape(path.name)}.*")):
        if not pattern.fullmatch(tmp.name) or not tmp.is_file():
            continue
        fd = _try_lock(tmp)
        if fd is None:
            continue
        try:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def locked_temp_file(path: Path, suffix: str = "") -> tuple[Path, int]:
    """A new temporary file beside `path` (`.NAME.XXXX`), mode as a plain file, and the fd holding its
    lock: close the fd once the file is renamed or removed. Stale temporaries of dead writers go first."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        # Renaming the temporary onto it would replace a device node (as root, /dev/full) or a pipe with a file.
        raise ConfigError(f"{path}: exists and is not a regular file (a device, a pipe or a socket); edgeseg "
                          "replaces only files it can rewrite whole")
    clean_stale_temps(path)
    # Made as `..NAME.XXXX` (which no cleaner matches), locked, then renamed to `.NAME.XXXX`: a cleaner
    # never meets it unlocked.
    fd, pending = tempfile.mkstemp(prefix=f"..{path.name}.", suffix=suffix, dir=path.parent)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    tmp = Path(pending).with_name(Path(pending).name[1:])
    os.rename(pending, tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    return tmp, fd


def ensure_writable_dir(path: Path) -> None:
    """Create `path` (and parents) or raise a one-line ConfigError saying why it cannot be written."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create output folder ({exc.strerror})") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{path}: output folder is not writable")


def make_folder(folder: Path) -> list[Path]:
    """Create `folder` (one line when it cannot be): the folders this made, deepest first, for `unmake`."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    ensure_writable_dir(folder)
    return missing


def unmake(folders: list[Path]) -> None:
    """Remove the folders `make_folder` made, where still empty: a run that wrote nothing leaves none behind."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def owned_staging(parent: Path) -> tuple[Path, int]:
    """A new staging folder in `parent` and the fd that holds its owner lock (close it once the folder is
    published or removed): a run killed meanwhile leaves it to the next `clean_stale_staging` there."""
    scratch = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))
    return scratch, _create_locked(scratch / OWNER_FILE)


@contextlib.contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """A scratch folder inside `out_dir` (same filesystem, so the final moves are renames).

    Files written into it are moved into `out_dir` by `publish`; on any error the scratch
    folder is removed and `out_dir` is left as it was. Staging left by killed runs is removed when
    this one ends (not before: until then it shows that what a killed run left under a name is a
    leftover, see `interrupted_publish`).
    """
    ensure_writable_dir(out_dir)
    scratch, lock = owned_staging(out_dir)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        os.close(lock)
        clean_stale_staging(out_dir)


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A staging folder beside `final` (same filesystem) that becomes `final` by one rename when the block
    succeeds: a reader sees the whole new folder, the previous one, or none, never a half-written one. A
    previous `final` is replaced (the caller decides beforehand that it may be); on any error the staging
    is removed and `final` left as it was. A killed run leaves only its staging folder, which the next run
    beside it removes."""
    final = Path(final)
    ensure_writable_dir(final.parent)
    scratch, lock = owned_staging(final.parent)
    locks = [lock]
    retired: Path | None = None
    try:
        yield scratch
        crash_point("staged-folder:publish")
        if final.is_dir() and any(final.iterdir()):
            retired, lock = owned_staging(final.parent)
            locks.append(lock)  # a crash from here on: the next run removes it
            os.rename(final, retired / final.name)  # out of the way (a crash now leaves no `final` at all)
            crash_point("staged-folder:retired")
        # Not published with it; unlinking moves the folder's mtime on, so no cleaner takes it for a dead run's.
        os.unlink(scratch / OWNER_FILE)
        try:
            os.rename(scratch, final)  # onto `final` when absent or an empty folder
        except OSError:
            if retired is not None:
                os.rename(retired / final.name, final)
            raise
        _fsync(final.parent)
    finally:
        for folder in (scratch, retired):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        for lock in locks:
            os.close(lock)
        clean_stale_staging(final.parent)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` itself (no lock file to leave behind); waits for the holder."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staged: list[Path], out_dir: Path, *, check: Callable[[], None] | None = None) -> list[Path]:
    """Move staged files into `out_dir` with atomic renames, in the given order, the last one being the
    manifest that describes the others.

    Under a lock on `out_dir`, so two conversions into one folder publish one after the other; `check`
    runs under that lock first (it sees another run's pair whole, never half-published) and may refuse. The old
    manifest goes first: a crash at any moment leaves the old pair, the new pair, or new files without a
    manifest (which no reader uses), never a manifest beside files it does not describe.
    """
    *files, manifest = staged
    for src in staged:
        _fsync(src)  # the bytes reach the disk before the names do
    published = []
    with folder_lock(out_dir):
        if check is not None:
            check()
        (out_dir / manifest.name).unlink(missing_ok=True)
        crash_point("publish:old-manifest-removed")
        for src in files:
            os.replace(src, out_dir / src.name)
            published.append(out_dir / src.name)
        crash_point("publish:artifact-visible")
        os.replace(manifest, out_dir / manifest.name)
        published.append(out_dir / manifest.name)
        _fsync(out_dir)
    return published


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    ensure_writable_dir(path.parent)
    tmp, fd = locked_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from None
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
    tmp, lock = locked_temp_file(path, suffix=path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(lock)
