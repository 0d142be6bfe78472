"""A demo's hold on the files and folders it writes (`--save`, `--save-frames`).

Taken before the camera opens and the model loads: a second demo writing the same output is refused in one
line naming the first (edgeseg.run_lock), and the folders made for an output that was never written go
with it, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from edgeseg.atomic import ensure_writable_dir
from edgeseg.errors import OutputError
from edgeseg.run_lock import RunLock, lock_path_for, take


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


def claim_output(output: Path, option: str, what: str, kind: str) -> RunLock:
    """This demo's hold on an output (edgeseg.run_lock), taken before the model loads: a second demo writing
    the same file or folder is refused in one line naming the first."""
    try:
        return take(lock_path_for(output), f"{option}: another demo (pid {{pid}}) is writing it; wait for it to end "
                                           f"or choose another {kind}")
    except OSError as exc:
        raise OutputError(f"{option}: cannot create {what} there ({exc.strerror or exc})") from None
