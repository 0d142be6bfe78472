"""The capture thread: reads a source on its own thread and hands over frames as the model wants them.

Live sources (cameras, streams) keep only the newest frame: when the model is slower than the
camera, the frames it had no time for are dropped and counted, so the picture never lags further
and further behind. Files are read losslessly (every frame is processed, so a saved video has them
all), unless `realtime` paces them at their own frame rate, which then behaves like a camera.
A live source that stops delivering is reopened a bounded number of times, then the capture ends
with the reason, and whoever consumes it finishes cleanly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.runtime.capture import SourceOptions
from edgeseg.runtime.frame_sources import FrameSource, warn

END_OF_SOURCE = "end of source"
SOURCE_LOST = "source lost"
_DEFAULT_OPTIONS = SourceOptions()  # frozen: one shared default is safe


@dataclass
class CapturedFrame:
    """One frame as the capture thread hands it over."""

    index: int  # position in the source (counts dropped frames too)
    image: np.ndarray  # BGR uint8
    prepared: Any  # what `prepare(image)` returned (the model input), or None
    captured_at: float  # perf_counter() when the read started
    capture_ms: float
    prepare_ms: float


class FrameGrabber:
    """Reads a source on its own thread and hands over frames, optionally prepared there.

    Live sources (and files with `realtime`) keep only the newest frame: one the consumer did
    not take before the next arrived is dropped and counted. Files otherwise wait for the
    consumer, so no frame is lost. `prepare` (the model's preprocessing) runs on this thread so
    that it overlaps inference; `end_reason` says why frames stopped.
    """

    def __init__(self, source: FrameSource, options: SourceOptions = _DEFAULT_OPTIONS, *,
                 prepare: Callable[[np.ndarray], Any] | None = None,
                 on_message: Callable[[str], None] = warn) -> None:
        self.source = source
        self.options = options
        self.prepare = prepare
        self.on_message = on_message
        self.latest_only = source.live or options.realtime
        self.dropped = 0
        self.produced = 0
        self.end_reason: str | None = None
        self.error: BaseException | None = None
        self._slot: CapturedFrame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeseg-capture", daemon=True)

    def start(self) -> FrameGrabber:
        self._thread.start()
        return self

    def next(self, timeout: float | None = None) -> CapturedFrame | None:
        """The next frame (the newest, for live sources); None once the source has ended."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._slot is None and self.end_reason is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                # Short waits keep Ctrl-C responsive in the thread that calls this.
                self._cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            item, self._slot = self._slot, None
            self._cond.notify_all()
            return item

    def stop(self, timeout: float = 3.0) -> None:
        """Stop reading and release the source (unless a read is stuck in the driver)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.source.close()
        # else: a read blocked in the driver; the daemon thread dies with the process, and
        # releasing the capture under it could crash, so it is left alone.

    # -- the thread ----------------------------------------------------------------------

    def _finish(self, reason: str) -> None:
        with self._cond:
            if self.end_reason is None:
                self.end_reason = reason
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.error = exc
            self._finish(f"capture failed: {exc}")

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopped."""
        return not self._stop.wait(seconds)

    def _loop(self) -> None:
        pace_s = 1.0 / self.source.fps if (self.options.realtime and not self.source.live and self.source.fps) else 0.0
        next_due = time.perf_counter()
        while not self._stop.is_set():
            started = time.perf_counter()
            frame = self.source.read()
            if frame is None:
                frame = self._recover()
                if frame is None:
                    return
                started = time.perf_counter()
            capture_ms = (time.perf_counter() - started) * 1000
            prepared, prepare_ms = None, 0.0
            if self.prepare is not None:
                t = time.perf_counter()
                prepared = self.prepare(frame)
                prepare_ms = (time.perf_counter() - t) * 1000
            item = CapturedFrame(self.produced, frame, prepared, started, capture_ms, prepare_ms)
            self.produced += 1
            with self._cond:
                if self.latest_only:
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = item
                    self._cond.notify_all()
                else:
                    while self._slot is not None and not self._stop.is_set():
                        self._cond.wait(0.1)
                    self._slot = item
                    self._cond.notify_all()
            if pace_s:
                next_due += pace_s
                delay = next_due - time.perf_counter()
                if delay > 0 and not self._sleep(delay):
                    return
                if delay < -1.0:  # fell far behind (e.g. stopped in a debugger): do not burst
                    next_due = time.perf_counter()

    def _recover(self) -> np.ndarray | None:
        """After a failed read: loop a file, reconnect a live source, or end. Returns the next frame."""
        if not self.source.live:
            if self.options.loop and self.produced > 0 and self.source.rewind():
                frame = self.source.read()
                if frame is not None:
                    return frame
            self._finish(END_OF_SOURCE)
            return None
        attempts = self.options.reconnect_attempts
        for attempt in range(1, attempts + 1):
            self.on_message(f"{self.source.uri}: stopped delivering frames; reconnecting ({attempt}/{attempts})")
            if not self._sleep(self.options.reconnect_delay_s):
                return None
            if self.source.reopen():
                frame = self.source.read()
                if frame is not None:
                    self.on_message(f"{self.source.uri}: reconnected")
                    return frame
        self._finish(f"{SOURCE_LOST}: {self.source.uri} stopped delivering frames"
                     + (f" and did not come back after {attempts} reconnect attempts" if attempts else ""))
        return None
