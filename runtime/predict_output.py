"""predict's output folder: one run per `--out`.

A folder that already holds another run's results (or a killed run's leftovers) is refused unless
`--force`, which removes those (and only those) first; a folder another predict is writing into is
refused, naming its process; a `masks/` (or the like) that no predict run wrote is never replaced. The
run holds LOCK_FILE there while it writes, and a failed run removes what it wrote.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeseg.atomic import ensure_writable_dir
from edgeseg.errors import ConfigError, OutputError
from edgeseg.run_lock import RunLock, holder_pid, take

FOLDERS = {"mask": "masks", "overlay": "overlay", "side-by-side": "side-by-side", "probs": "probs"}
RESULT_FILE = "predictions.json"
RESULT_ENTRIES = (RESULT_FILE, *FOLDERS.values())  # what a run writes under --out
LOCK_FILE = ".edgeseg-predict.lock"


@dataclass
class OutClaim:
    """This run's hold on --out: the lock, and whether the run made the folder."""

    folder: Path
    created: bool
    lock: RunLock

    def release(self, *, keep: bool) -> None:
        """Unlock; unless `keep`, first remove what this run wrote (and the folder, if it made it and it is empty)."""
        try:
            if not keep:
                remove_entries(self.folder, RESULT_ENTRIES)
        finally:
            self.lock.release()
        if not keep and self.created:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only if empty: a user's file put there meanwhile stays


def remove_entries(folder: Path, names: tuple[str, ...] | list[str]) -> None:
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def claim_out(out: Path, *, force: bool) -> OutClaim:
    """Take --out for one run, before the model loads: refused while another predict writes there, or
    when it holds another run's results and not `force` (then they are removed); created, locked."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    busy = f"--out {out}: another predict (pid {{pid}}) is writing into it; wait for it to end or choose another folder"
    pid = holder_pid(out / LOCK_FILE)
    if pid is not None:
        raise ConfigError(busy.format(pid=pid))
    previous = [name for name in RESULT_ENTRIES if (out / name).exists() or (out / name).is_symlink()]
    shown = ", ".join(name if name == RESULT_FILE else f"{name}/" for name in previous)
    if previous and not ((out / RESULT_FILE).exists() or (out / LOCK_FILE).exists()):
        # Every run leaves one of the two (a killed run its lock): a masks/ without them is someone's data.
        raise ConfigError(f"--out {out}: already holds {shown}, which no predict run wrote (no {RESULT_FILE}); "
                          "choose another folder")
    if previous and not force:
        raise ConfigError(f"--out {out}: holds another run's results ({shown}); --force replaces them, "
                          "or choose an empty folder")
    created = not out.exists()
    ensure_writable_dir(out)
    claim = OutClaim(out, created, take(out / LOCK_FILE, busy))  # refused if another predict took it since
    try:
        remove_entries(out, previous)
    except OSError as exc:
        claim.release(keep=True)
        raise OutputError(f"--out {out}: cannot remove the previous run's results ({exc.strerror})") from None
    return claim
