"""The digest every checkpoint edgeseg writes carries, and its check on every load.

torch.load does not check the zip's CRCs: a checkpoint with flipped bytes in a tensor loads, converts
and verifies against itself. So each checkpoint and training state edgeseg writes records the sha256
of its own payload (`DIGEST_KEY`), computed over the loaded objects (every tensor's dtype, shape and
bytes; every other value's type and value), and `convert`, `train --init` and `train --resume` recompute
it on load: a mismatch is one line naming the file.

A checkpoint without a digest (the shipped sample, one written by an earlier edgeseg, a torchvision or
other `.pth`) is accepted as it is: there is nothing to check it against, and its file's sha256 is
recorded in each manifest made from it, as before.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import torch

from edgeseg.atomic import atomic_path
from edgeseg.errors import OutputError, WeightsError, first_line

DIGEST_KEY = "payload_sha256"


def _feed(digest: Any, value: Any) -> None:
    """Every value a checkpoint holds, in a form that is the same for equal payloads and differs otherwise."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):  # state dicts keep their order; other dicts need not
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, float):
        digest.update(b"f" + struct.pack("<d", value))  # NaN's bits too, where repr would be ambiguous
    elif isinstance(value, bytes):
        digest.update(b"b%d:" % len(value) + value)
    else:  # str, int, bool, None, torch.dtype/torch.Size rendered by their repr
        text = repr(value).encode()
        digest.update(f"{type(value).__name__}{len(text)}:".encode() + text)


def payload_digest(payload: dict[str, Any]) -> str:
    """The sha256 of everything in `payload` except its own digest."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def sealed(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with its digest added, ready for torch.save."""
    return {**payload, DIGEST_KEY: payload_digest(payload)}


def write_sealed(path: Path, payload: dict[str, Any], what: str = "checkpoint") -> None:
    """Write `payload` sealed with its digest, atomically (complete at `path` or not there at all); a disk
    that fills up or goes away is one line (torch reports it as a RuntimeError from its zip writer)."""
    try:
        with atomic_path(Path(path)) as tmp:
            torch.save(sealed(payload), tmp)
    except (RuntimeError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or first_line(exc)[:160]
        raise OutputError(f"{path}: cannot write the {what} ({reason}; a full disk?); nothing was written") from None


def check_digest(payload: Any, path: Path, what: str = "checkpoint") -> None:
    """Refuse a payload whose recorded digest does not match its contents (one line naming `path`);
    accept one that records none (see the module's docstring)."""
    if not isinstance(payload, dict) or DIGEST_KEY not in payload:
        return
    recorded = payload[DIGEST_KEY]
    actual = payload_digest(payload)
    if recorded != actual:
        shown = recorded[:12] if isinstance(recorded, str) else repr(recorded)[:12]
        raise WeightsError(f"{path}: {what} is damaged: its contents hash to sha256 {actual[:12]}…, not the "
                           f"{shown}… it was written with (flipped or changed bytes); use another copy")
