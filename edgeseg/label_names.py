"""Label-name files (`labels.txt`, `convert --labels`): one class name per line, background first, UTF-8.

Read here, once, for every command that takes one: a file that is missing, unreadable, not UTF-8 or
empty is one line naming it, in the caller's error type (a data set's labels.txt is a DatasetError, a
state dict's `--labels` a WeightsError), never a UnicodeDecodeError from deep inside.
"""

from __future__ import annotations

import stat
from pathlib import Path

from edgeseg.errors import EdgesegError

MAX_BYTES = 1 << 20  # 256 names of any sensible length fit many times over; /dev/zero does not


def read_label_names(path: Path, error: type[EdgesegError]) -> tuple[str, ...]:
    """The non-empty lines of `path`, stripped; `error` with one line when there are none or it cannot be read
    (a named pipe or a device is refused, not read: it could block or never end)."""
    path = Path(path)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path}: is a folder, not a file of label names")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: is not a regular file (a named pipe, a device or a socket); give a text file of "
                        "label names")
        if st.st_size > MAX_BYTES:
            raise error(f"{path}: {st.st_size} bytes is far too large for label names (at most {MAX_BYTES})")
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the label names ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM from a Windows editor is not part of the first name
    except UnicodeDecodeError as exc:
        raise error(f"{path}: label names are not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                    "save the file as UTF-8, one name per line") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise error(f"{path}: is empty; name the classes, one per line, background first")
    return names
