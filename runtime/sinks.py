"""Where rendered frames go: a window, a video file, an image sequence, or nowhere (headless).

A video file is written under a temporary name beside the target and renamed when it is closed,
so `out.mp4` is either a finished, playable file or absent; `close()` runs on every way out of
the demo (end of source, --max-frames, a vanished camera, Ctrl-C), so what was written is kept.
OpenCV's writers report no write errors, so a finished video is read back before it is published
(its frame count, and its last frame decoded): a full disk or a vanished folder fails the command
with one line instead of publishing a file that does not play. The temporary is held under a lock,
so a later run removes the one a killed run left behind. Frames are staged and published when the sink
closes, and each output is held by its run (runtime.output_claim): two demos never write one output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeseg.atomic import (
    OWNER_FILE,
    clean_stale_staging,
    crash_point,
    locked_temp_file,
    make_folder,
    owned_staging,
    unmake,
)
from edgeseg.errors import ConfigError, OutputError
from edgeseg.run_lock import RunLock
from edgeseg.runtime.output_claim import claim_output

# Container -> codec that the OpenCV wheels can write everywhere (they ship FFmpeg without H.264
# encoders): MPEG-4 Part 2 in .mp4, Motion-JPEG in .avi. Both play in VLC, browsers' ffmpeg-based
# players and every OpenCV/FFmpeg reader.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
DEFAULT_VIDEO_FPS = 30.0


def add_sink_arguments(parser: argparse.ArgumentParser) -> None:
    """The options the sinks own."""
    g = parser.add_argument_group("output", "where rendered frames go")
    g.add_argument("--save", type=Path, default=None, metavar="VIDEO",
                   help=f"write the rendered video ({', '.join(sorted(VIDEO_CODECS))}); finished and playable on every "
                        "exit")
    g.add_argument("--save-frames", type=Path, default=None, metavar="DIR",
                   help="write every rendered frame as DIR/frame_000000.png (images: DIR/<image name>.png, each at its "
                        "own size), moved into DIR when the demo ends; a DIR already holding PNG files is refused")
    g.add_argument("--headless", action="store_true", help="no window (the default where no display exists)")


class Sink:
    """Takes rendered BGR frames; `close()` finishes whatever it writes and may be called twice."""

    def write(self, canvas: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def wants_stop(self) -> bool:
        """True when the user asked to stop through this sink (a closed window, 'q')."""
        return False

    def describe(self) -> str:
        return ""


class VideoFileSink(Sink):
    """A video file, opened on the first frame (its size) and published on close."""

    def __init__(self, path: Path, fps: float | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise ConfigError(f"--save {self.path}: unsupported video type '{suffix or '(none)'}'; use one of "
                              f"{', '.join(sorted(VIDEO_CODECS))}")
        if self.path.is_dir():
            raise ConfigError(f"--save {self.path}: is a folder; give a file name such as out.mp4")
        self.made = make_folder(self.path.parent if str(self.path.parent) else Path("."))
        # One run per file: a second demo saving here now is refused, naming this one (edgeseg.run_lock).
        self.claim = claim_output(self.path, f"--save {self.path}", "the video file", "file")
        self.fourcc = VIDEO_CODECS[suffix]
        self.fps = float(fps) if fps and fps > 0 else None  # None: DEFAULT_VIDEO_FPS when the file opens
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None  # (width, height)
        self.resized: np.ndarray | None = None
        self.frames = 0
        self.tmp_path: Path | None = None
        self.tmp_lock: int | None = None  # fd holding the temporary's lock while this run owns it
        self.published = False
        umask = os.umask(0)  # read once here, before any other thread runs: os.umask can only be read by setting it
        os.umask(umask)
        self.file_mode = 0o666 & ~umask

    def _open(self, width: int, height: int) -> tuple[cv2.VideoWriter, tuple[int, int]]:
        try:
            self.tmp_path, self.tmp_lock = locked_temp_file(self.path, suffix=self.path.suffix)
            os.chmod(self.tmp_path, self.file_mode)  # a video is an ordinary file
        except OSError as exc:
            raise OutputError(f"--save {self.path}: cannot create the video file there "
                              f"({exc.strerror or exc})") from None
        self.fps = self.fps if self.fps and self.fps > 0 else DEFAULT_VIDEO_FPS
        writer = cv2.VideoWriter(str(self.tmp_path), cv2.VideoWriter.fourcc(*self.fourcc), self.fps, (width, height))
        if not writer.isOpened():
            self._discard()
            raise ConfigError(f"--save {self.path}: OpenCV cannot write {self.fourcc} video here (an OpenCV built "
                              "without FFmpeg?)")
        return writer, (width, height)

    def write(self, canvas: np.ndarray) -> None:
        height, width = canvas.shape[:2]
        if self.writer is None or self.size is None:
            self.writer, self.size = self._open(width, height)
        if (width, height) != self.size:
            # A video has one size: later frames of another size (a folder of mixed images) are fitted to it.
            if self.resized is None:
                self.resized = np.empty((self.size[1], self.size[0], 3), np.uint8)
            cv2.resize(canvas, self.size, dst=self.resized, interpolation=cv2.INTER_AREA)
            canvas = self.resized
        self.writer.write(canvas)
        self.frames += 1

    def close(self) -> None:
        try:
            self._finish()
        finally:
            self.claim.release()
            if not self.published:
                unmake(self.made)

    def _finish(self) -> None:
        if self.writer is None or self.published:
            return
        self.writer.release()  # writes the container index: from here the file plays
        self.writer = None
        if not self.frames:
            self._discard()
            return
        assert self.tmp_path is not None  # made with the writer
        readable = readable_frames(self.tmp_path, self.frames)
        if readable < self.frames:
            self._discard()
            raise OutputError(f"--save {self.path}: only {readable} of {self.frames} frames could be read back from "
                              f"the written video (disk full, or the folder went away?); nothing was kept")
        try:
            os.replace(self.tmp_path, self.path)
        except OSError as exc:
            self._discard()
            raise OutputError(f"--save {self.path}: cannot move the finished video into place "
                              f"({exc.strerror})") from None
        self.published = True
        self._unlock()

    def _discard(self) -> None:
        if self.tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_path)
        self._unlock()

    def _unlock(self) -> None:
        if self.tmp_lock is not None:
            os.close(self.tmp_lock)
            self.tmp_lock = None

    def describe(self) -> str:
        if not self.published or self.size is None:
            return f"{self.path}: not written (no frames)"
        return f"{self.path} ({self.frames} frames, {self.size[0]}x{self.size[1]}, {self.fps:g} fps, {self.fourcc})"


def readable_frames(path: Path, expected: int) -> int:
    """How many of `expected` frames a reader finds in a finished video: the container's count, and 0
    unless its last frame decodes (a file cut short by a full disk has an index but not the data)."""
    with quiet_stderr():  # FFmpeg logs a damaged file's details itself; the caller says it in one line
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                return 0
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if count < expected:
                return max(count, 0)
            capture.set(cv2.CAP_PROP_POS_FRAMES, expected - 1)
            ok, _ = capture.read()
            return expected if ok else 0
        finally:
            capture.release()


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (native libraries write there directly) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class ImageSequenceSink(Sink):
    """Every rendered frame as a lossless PNG: DIR/frame_000000.png, frame_000001.png, …

    The frames are written into a staging folder beside DIR and moved into DIR when the sink closes (on
    every way out of the demo, a failed one included), so DIR never holds frames of two runs: a DIR that
    already holds PNG files is refused before the model loads, and so is a second demo into it while one
    writes (edgeseg.run_lock). A killed run leaves only its staging folder, which the next run removes.
    """

    def __init__(self, folder: Path, claim: tuple[RunLock, list[Path]] | None = None) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"--save-frames {self.folder}: exists and is not a folder")
        earlier = sorted(self.folder.glob("*.png")) if self.folder.is_dir() else []
        if earlier:
            raise ConfigError(f"--save-frames {self.folder}: already holds {len(earlier)} PNG files (another run's "
                              "frames?); choose a new or empty folder")
        self.frames = 0
        self.staging: Path | None = None  # made with the first frame, not for a run that fails to start
        self.staging_lock: int | None = None
        if claim is None:
            self.made = make_folder(self.folder.parent)
            self.claim = claim_output(self.folder, f"--save-frames {self.folder}", "the frames folder", "folder")
        else:
            self.claim, self.made = claim

    def hand_over(self) -> tuple[RunLock, list[Path]]:
        """This sink's hold on DIR (and the folders it made), for the sink that replaces it (a folder source
        names its frames)."""
        claim, self.claim = self.claim, RunLock(self.claim.path, None)
        made, self.made = self.made, []
        return claim, made

    def write(self, canvas: np.ndarray) -> None:
        if self.staging is None:
            self.staging, self.staging_lock = owned_staging(self.folder.parent)
        name = self.next_name()
        # Encoded in memory and written by Python, whose writes report a full disk (cv2.imwrite may not).
        ok, encoded = cv2.imencode(".png", canvas)
        if not ok:
            raise OutputError(f"--save-frames {self.folder}: OpenCV cannot encode {name} as PNG")
        path = self.staging / name
        try:
            with open(path, "wb") as fh:
                fh.write(encoded.tobytes())
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)  # never a half-written frame
            raise OutputError(f"--save-frames {self.folder}: cannot write {name} ({exc.strerror or exc}); "
                              f"{self.frames} frames were written before it") from None
        self.frames += 1
        crash_point("demo:frame-written")

    def close(self) -> None:
        """Publish the frames written (the whole folder by one rename when DIR is new), then let DIR go."""
        try:
            if self.staging is not None:
                self._publish(self.staging)
        finally:
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
                self.staging = None
            if self.staging_lock is not None:
                os.close(self.staging_lock)
                self.staging_lock = None
            if self.claim.fd is not None:  # (a sink that handed DIR over leaves the cleaning to its heir)
                clean_stale_staging(self.folder.parent)  # what killed runs into DIR left
            self.claim.release()
            if not self.frames:
                unmake(self.made)  # made for this run's lock only: gone with it (if still empty)

    def _publish(self, staging: Path) -> None:
        frames = sorted(p for p in staging.iterdir() if p.name != OWNER_FILE)
        if not frames:
            return
        try:
            os.unlink(staging / OWNER_FILE)
            if not self.folder.exists() or (self.folder.is_dir() and not any(self.folder.iterdir())):
                os.rename(staging, self.folder)  # the run's frames appear at once
                return
            for path in frames:  # a folder holding the user's other files: the frames join them
                os.replace(path, self.folder / path.name)
        except OSError as exc:
            raise OutputError(f"--save-frames {self.folder}: cannot move the {len(frames)} frames into place "
                              f"({exc.strerror or exc})") from None

    def next_name(self) -> str:
        """The file name of the frame about to be written."""
        return f"frame_{self.frames:06d}.png"

    def describe(self) -> str:
        return f"{self.folder}/ ({self.frames} PNG frames)"


def display_available() -> bool:
    """Whether a window can be shown: a display server on Linux; assumed elsewhere."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class WindowSink(Sink):
    """An OpenCV window; 'q' or Esc in it, or closing it, ends the demo."""

    def __init__(self, title: str = "edgeseg demo") -> None:
        self.title = title
        self.sized = False
        self._stop = False
        self.opened = True
        cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)  # cv2.error without GUI support

    def write(self, canvas: np.ndarray) -> None:
        if not self.sized:
            cv2.resizeWindow(self.title, canvas.shape[1], canvas.shape[0])
            self.sized = True
        cv2.imshow(self.title, canvas)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._stop = True

    @property
    def wants_stop(self) -> bool:
        return self._stop

    def close(self) -> None:
        if self.opened:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            self.opened = False


def window_sink_or_none(headless: bool, on_message=None) -> WindowSink | None:
    """A window unless headless or no display exists (then a note, and no window)."""
    if headless:
        return None
    if not display_available():
        if on_message:
            on_message("no display (DISPLAY/WAYLAND_DISPLAY unset): running headless")
        return None
    try:
        return WindowSink()
    except cv2.error:
        if on_message:
            on_message("this OpenCV has no GUI support (opencv-python-headless?): running headless")
        return None


class SinkSet(Sink):
    """All the sinks of one run (None entries ignored): write to each, close each even when another fails."""

    def __init__(self, sinks: list[Sink | None]) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def write(self, canvas: np.ndarray) -> None:
        for sink in self.sinks:
            sink.write(canvas)

    @property
    def wants_stop(self) -> bool:
        return any(s.wants_stop for s in self.sinks)

    def close(self) -> None:
        first_error: BaseException | None = None
        for sink in reversed(self.sinks):  # in reverse order of opening: the last made lets its outputs go first
            try:
                sink.close()
            except BaseException as exc:  # close the others first, then report
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def describe(self) -> str:
        return "\n".join(d for d in (s.describe() for s in self.sinks) if d)
