"""Reading a file that torch.save wrote (a checkpoint, a training state) as data only, with one line for every
way a file given by the user is not one: torch's unpicklers raise whatever a stray byte leads them to
(IndexError, KeyError, TypeError, ...), so the file's first bytes are checked before torch sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgeseg.errors import WeightsError, first_line

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
PICKLE_PROTO = b"\x80"  # the legacy format: a pickle, protocol 2 or later


def load_torch_file(path: Path, what: str = "checkpoint", advice: str = "") -> Any:
    """torch.load(path, weights_only=True), or a WeightsError naming `path` and `what` it is not
    (`advice` appended to the message)."""
    try:
        with path.open("rb") as stream:
            head = stream.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the {what} ({exc.strerror}){advice}") from None
    if not head:
        raise WeightsError(f"{path}: not a PyTorch {what} (an empty file){advice}")
    if not (head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO)):
        raise WeightsError(f"{path}: not a PyTorch {what} (neither a zip archive nor a pickle; a text file?){advice}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt stream: any exception type (see above); only torch.load is inside
        reason = first_line(exc)[:160] or type(exc).__name__
        raise WeightsError(f"{path}: not a readable PyTorch {what} (truncated or corrupt: {reason}){advice}") from None
