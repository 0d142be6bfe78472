"""A demo's hold on the files and folders it writes (`--save`, `--save-frames`).

Taken before the camera opens and the model loads: a second demo writing the same output is refused in one
line naming the first (edgeseg.run_lock), and the folders made for an output that was never written go
with it, so a failed run leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import OutputError
from edgeseg.run_lock import RunLock, lock_path_for, take


def claim_output(output: Path, option: str, what: str, kind: str) -> RunLock:
    """This demo's hold on an output (edgeseg.run_lock), taken before the model loads: a second demo writing
    the same file or folder is refused in one line naming the first."""
    try:
        return take(lock_path_for(output), f"{option}: another demo (pid {{pid}}) is writing it; wait for it to end "
                                           f"or choose another {kind}")
    except OSError as exc:
        raise OutputError(f"{option}: cannot create {what} there ({exc.strerror or exc})") from None
