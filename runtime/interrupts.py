"""Ctrl-C and SIGTERM that wait for the frame being written: a summary that counts what is on disk.

The demo ends on Ctrl-C (or SIGTERM, which the command turns into the same path) by a KeyboardInterrupt in the
main thread. Python raises it between any two bytecodes, so a frame could reach the video and the interrupt
arrive before the frame was counted: the summary said 6 frames of a 7-frame video. Inside `held()` a signal is
only noted; it is raised as soon as the held section ends, so a frame is written and counted, or neither.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNAL_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class HeldInterrupts:
    """While `installed()`, SIGINT and SIGTERM raise KeyboardInterrupt(name) in the main thread, except inside
    `held()`, where they are deferred to the end of the section. Elsewhere (not the main thread) it does nothing."""

    def __init__(self) -> None:
        self._holding = False
        self._pending: str | None = None

    def _handler(self, signum: int, frame: object) -> None:
        reason = SIGNAL_NAMES.get(signum, f"signal {signum}")
        if self._holding:
            self._pending = self._pending or reason
            return
        raise KeyboardInterrupt(reason)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._handler) for signum in SIGNAL_NAMES}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A section no signal interrupts; one that came during it is raised when it ends (after an error in
        it, the error goes instead)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            pending, self._pending = self._pending, None
        if pending is not None:
            raise KeyboardInterrupt(pending)
