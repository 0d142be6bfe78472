"""The real-time demo: frames in, masks drawn, frames out, with inference as the only bottleneck.

Three threads, each a stage of the pipeline, handing frames along:

    capture thread     read the newest frame, preprocess it (Segmenter.preprocess)
    inference thread   Segmenter.infer (the engine the manifest names)
    main thread        Segmenter.to_mask (checked class ids at frame size), render, write to the sinks

While the engine runs on frame k, the main thread draws frame k-1 and the capture thread prepares
frame k+1, so when the engine leaves the CPU a core (a GPU on a Jetson, or `--threads 1` here) the
demo runs at the engine's speed. The summary shows both numbers from the same run: end-to-end FPS
(frames out / wall time from the first frame read to the last frame written) and inference-only
FPS (1000 / mean engine time over the same frames).

These are the steps of the same `runtime.segmenter.Segmenter` the benchmark measures with, so the
demo shows exactly what the benchmark measures.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError
from edgeseg.run_lock import RunLock
from edgeseg.runtime.backend import check_threads, load_model_manifest
from edgeseg.runtime.capture import SourceOptions, open_source
from edgeseg.runtime.frame_grabber import SOURCE_LOST, CapturedFrame, FrameGrabber
from edgeseg.runtime.frame_sources import FrameSource, ImageFilesSource
from edgeseg.runtime.interrupts import HeldInterrupts
from edgeseg.runtime.render import Renderer, RenderOptions, hud_line
from edgeseg.runtime.segmenter import Segmenter, check_model
from edgeseg.runtime.sinks import (
    ImageSequenceSink,
    Sink,
    SinkSet,
    VideoFileSink,
    window_sink_or_none,
)

STAGES = ("capture", "preprocess", "inference", "postprocess", "render", "write")
_END = object()  # end marker on the inference -> main queue


def _warn(message: str) -> None:
    print(f"edgeseg demo: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DemoConfig:
    """One demo run. The library default is headless; the command opens a window where it can."""

    model: Path | str
    source: str
    source_options: SourceOptions = SourceOptions()
    render: RenderOptions = RenderOptions()
    save: Path | None = None
    save_frames: Path | None = None
    headless: bool = True
    max_frames: int | None = None
    threads: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames {self.max_frames}: must be 1 or more")
        check_threads(self.threads)


@dataclass
class DemoSummary:
    """What one run did and how fast; `format()` is what the command prints."""

    source: str
    model: str
    backend: str
    frames: int = 0  # rendered and written
    source_frames: int = 0  # read from the source (includes dropped ones)
    dropped: int = 0  # read but skipped because the model was busy (live sources)
    wall_s: float = 0.0  # first frame read -> last frame written
    end_to_end_fps: float = 0.0
    inference_fps: float = 0.0
    stage_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage -> (p50, p90)
    end_reason: str = ""
    source_lost: bool = False
    interrupted: bool = False
    outputs: str = ""

    @property
    def fps_ratio(self) -> float:
        return self.end_to_end_fps / self.inference_fps if self.inference_fps else float("nan")

    def format(self) -> str:
        lines = [
            f"demo: {self.frames} frames from {self.source} with {Path(self.model).name} ({self.backend}); "
            f"ended: {self.end_reason}",
            f"  source frames {self.source_frames}, dropped by capture {self.dropped}",
            f"  end-to-end {self.end_to_end_fps:7.2f} FPS   frames written / wall time, first frame read to last "
            f"frame written ({self.wall_s:.2f} s)",
            f"  inference  {self.inference_fps:7.2f} FPS   1000 / mean engine time over the same frames"
            + (f"   (end-to-end = {100 * self.fps_ratio:.1f} % of inference)" if self.frames else ""),
            "  stage ms        p50      p90",
        ]
        for stage, (p50, p90) in self.stage_ms.items():
            lines.append(f"    {stage:<12}{p50:7.2f}  {p90:7.2f}")
        if self.outputs:
            lines += [f"  wrote {line}" for line in self.outputs.splitlines()]
        return "\n".join(lines)


class RollingFps:
    """Frames per second over the last `window` frames, for the heads-up line.

    Starts at the first frame's read time, so the very first frame already shows a rate (1 / its
    own latency) and the rate never reads 0.0 while frames flow: `rate(now)` counts the frame being
    drawn plus those written since the oldest time kept.
    """

    def __init__(self, started_at: float, window: int = 30) -> None:
        self.times: collections.deque[float] = collections.deque([started_at], maxlen=window)

    def rate(self, now: float) -> float:
        elapsed = now - self.times[0]
        return len(self.times) / elapsed if elapsed > 0 else 0.0

    def add(self, written_at: float) -> None:
        self.times.append(written_at)


class _NamedImageFiles(FrameSource):
    """An image-file source that remembers which file each delivered frame came from."""

    def __init__(self, inner: ImageFilesSource) -> None:
        self.inner = inner
        self.uri, self.live, self.fps = inner.uri, inner.live, inner.fps
        self.names: list[str] = []  # names[i]: the file of the i-th frame delivered

    def open(self) -> None:
        self.inner.open()

    def read(self) -> np.ndarray | None:
        frame = self.inner.read()
        if frame is not None:  # read() moved past the file it returned
            self.names.append(self.inner.paths[self.inner.position - 1].stem)
        return frame

    def rewind(self) -> bool:
        return self.inner.rewind()

    def close(self) -> None:
        self.inner.close()


class _NamedImageSink(ImageSequenceSink):
    """--save-frames for an image folder: each rendered image as DIR/<source name>.png, at its own size."""

    def __init__(self, folder: Path, source: _NamedImageFiles, claim: tuple[RunLock, list[Path]]) -> None:
        super().__init__(folder, claim)
        self.source = source
        self.index = 0

    def name_next(self, index: int) -> None:
        self.index = index

    def next_name(self) -> str:
        return f"{self.source.names[self.index]}.png"


class _Pipeline:
    """The running state of one demo; `run()` returns the summary and always cleans up."""

    def __init__(self, config: DemoConfig, source: FrameSource | None, on_message) -> None:
        self.config = config
        self.on_message = on_message
        self.manifest = load_model_manifest(config.model)
        check_model(self.manifest)  # a model whose output cannot be a mask fails before the camera opens
        self.renderer = Renderer(self.manifest.labels, config.render)
        self.summary = DemoSummary(source=config.source, model=str(self.manifest.artifact_path),
                                   backend=self.manifest.backend)
        self.timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.results: queue.Queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.interrupts = HeldInterrupts()
        self.infer_error: BaseException | None = None
        self.max_frames_reached = False
        self.segmenter: Segmenter  # opened last in the try below: a pipeline that exists has one
        self.first_read_at: float | None = None
        self.last_written_at: float | None = None
        self.fps: RollingFps | None = None  # from the first frame shown
        self.frame_names: _NamedImageSink | None = None
        # Sinks are checked before the camera opens and the model loads: a bad --save fails fast.
        sinks: list[Sink | None] = []
        opened: FrameSource | None = None
        try:
            video = VideoFileSink(config.save) if config.save is not None else None
            sinks.append(video)  # each one closed (its output let go) if a later step fails
            frames = ImageSequenceSink(config.save_frames) if config.save_frames is not None else None
            sinks.append(frames)
            opened = source if source is not None else open_source(config.source, config.source_options)
            if frames is not None and isinstance(opened, ImageFilesSource):
                # A folder of images: each saved frame keeps its image's name (and, as always, its size).
                opened = _NamedImageFiles(opened)
                frames = self.frame_names = _NamedImageSink(frames.folder, opened, frames.hand_over())
                sinks[-1] = frames
            if video is not None:
                video.fps = video.fps or opened.fps  # a file's own rate; a camera's requested one
            sinks = [window_sink_or_none(config.headless, on_message), video, frames]
            self.sinks = SinkSet(sinks)
            self.segmenter = Segmenter.open(self.manifest, threads=config.threads)
        except BaseException:
            SinkSet(sinks).close()
            if opened is not None:
                opened.close()
            raise
        self.source = opened
        # Started by run(); stopping it closes the source, started or not.
        self.grabber = FrameGrabber(opened, config.source_options, prepare=self.segmenter.preprocess,
                                    on_message=on_message)

    # -- the inference thread ------------------------------------------------------------

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.results.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _infer_loop(self) -> None:
        inferred = 0
        try:
            while not self.stop.is_set():
                captured = self.grabber.next(timeout=0.5)
                if captured is None:
                    if self.grabber.end_reason is not None:
                        break
                    continue
                output = self.segmenter.infer(captured.prepared)
                if not self._put((captured, output, self.segmenter.last_inference_ms)):
                    break
                inferred += 1
                if self.config.max_frames is not None and inferred >= self.config.max_frames:
                    self.max_frames_reached = True
                    break
        except BaseException as exc:  # re-raised by the main thread after cleanup
            self.infer_error = exc
        finally:
            self._put(_END)

    # -- the main thread -----------------------------------------------------------------

    def run(self) -> DemoSummary:
        summary = self.summary
        progress = None
        infer_thread = threading.Thread(target=self._infer_loop, name="edgeseg-inference", daemon=True)
        try:
            with self.interrupts.installed():
                self.grabber.start()
                infer_thread.start()
                progress = self._progress_bar()
                while True:
                    message = self.results.get()
                    if message is _END:
                        break
                    self._show(*message)
                    if progress is not None:
                        progress.update(1)
                    if self.sinks.wants_stop:
                        summary.end_reason = "stopped from the window"
                        break
        except KeyboardInterrupt as exc:
            summary.interrupted = True
            # SIGTERM comes as KeyboardInterrupt("SIGTERM") (runtime/interrupts.py): same clean path, named.
            summary.end_reason = f"interrupted ({exc.args[0] if exc.args else 'Ctrl-C'})"
        finally:
            if progress is not None:
                progress.close()
            self._shutdown(infer_thread)
        if self.infer_error is not None:
            raise self.infer_error
        if self.grabber.error is not None:
            raise self.grabber.error
        self._summarize(self.first_read_at, self.last_written_at)
        return summary

    def _progress_bar(self):
        if not self.config.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.config.max_frames, unit="frame", desc="demo", mininterval=0.5, file=sys.stderr,
                    leave=False)

    def _show(self, captured: CapturedFrame, output: np.ndarray, inference_ms: float) -> None:
        """Postprocess, render and write one frame (the main thread's per-frame work)."""
        fps = self.fps
        if fps is None:  # the first frame
            self.first_read_at = captured.captured_at
            fps = self.fps = RollingFps(captured.captured_at)
        height, width = captured.image.shape[:2]
        t0 = time.perf_counter()
        mask = self.segmenter.to_mask(output, (height, width))  # the segmenter's buffer, reused every frame
        t1 = time.perf_counter()
        hud = hud_line(fps.rate(t1), {"pre": captured.prepare_ms, "infer": inference_ms, "post": (t1 - t0) * 1000,
                                           "render": self.timings["render"][-1] if self.timings["render"] else 0.0})
        canvas = self.renderer.render(captured.image, mask, hud)
        t2 = time.perf_counter()
        with self.interrupts.held():  # a frame is written and counted, or neither
            if self.frame_names is not None:
                self.frame_names.name_next(captured.index)
            self.sinks.write(canvas)
            t3 = time.perf_counter()
            self.last_written_at = t3
            fps.add(t3)
            self._record(captured, inference_ms, (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
            self.summary.frames += 1

    def _record(self, captured: CapturedFrame, inference_ms: float, post_ms: float, render_ms: float,
                write_ms: float) -> None:
        stage_ms = (captured.capture_ms, captured.prepare_ms, inference_ms, post_ms, render_ms, write_ms)
        for stage, ms in zip(STAGES, stage_ms):
            self.timings[stage].append(ms)

    def _shutdown(self, infer_thread: threading.Thread) -> None:
        """Stop the threads and close everything, sinks last-but-surely: the video must be finished."""
        self.stop.set()
        try:
            self.grabber.stop()
            if infer_thread.is_alive():
                infer_thread.join(timeout=60)  # one engine call at most
        finally:
            try:
                if not infer_thread.is_alive():
                    self.segmenter.close()
            finally:
                self.sinks.close()

    def _summarize(self, first_read_at: float | None, last_written_at: float | None) -> None:
        s = self.summary
        grabber = self.grabber
        s.source_frames = grabber.produced
        s.dropped = grabber.dropped
        if not s.end_reason:
            if self.max_frames_reached:
                s.end_reason = f"reached --max-frames {self.config.max_frames}"
            else:
                s.end_reason = grabber.end_reason or "stopped"
        s.source_lost = (grabber.end_reason or "").startswith(SOURCE_LOST) and not self.max_frames_reached \
            and not s.interrupted
        if s.frames and first_read_at is not None and last_written_at is not None and last_written_at > first_read_at:
            s.wall_s = last_written_at - first_read_at
            s.end_to_end_fps = s.frames / s.wall_s
            s.inference_fps = 1000.0 / float(np.mean(self.timings["inference"]))
        s.stage_ms = {stage: (float(np.percentile(v, 50)), float(np.percentile(v, 90)))
                      for stage, v in self.timings.items() if v}
        s.outputs = self.sinks.describe()


def run_demo(config: DemoConfig, *, source: FrameSource | None = None, on_message=_warn) -> DemoSummary:
    """Run the demo until the source ends, --max-frames, the window is closed, the source is lost
    or Ctrl-C; the sinks are closed (the video finished and playable) on every one of those paths.

    `source` replaces the one `config.source` names (an already opened FrameSource: tests, or an
    application with its own camera code).
    """
    return _Pipeline(config, source, on_message).run()
