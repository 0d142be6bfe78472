"""Label-name files (`labels.txt`, `convert --labels`): one class name per line, background first, UTF-8.

Read here, once, for every command that takes one: a file that is missing, unreadable, not UTF-8 or
empty is one line naming it, in the caller's error type (a data set's labels.txt is a DatasetError, a
state dict's `--labels` a WeightsError), never a UnicodeDecodeError from deep inside.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import EdgesegError


def read_label_names(path: Path, error: type[EdgesegError]) -> tuple[str, ...]:
    """The non-empty lines of `path`, stripped; `error` with one line when there are none or it cannot be read."""
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a file of label names") from None
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
