"""`edgeseg predict`: segment images, folders, videos and streams, and keep the results under the sources' names.

For every input it writes the class-id mask as a palette PNG (the PASCAL VOC palette, class ids as
pixel values, the source's own size and name), the renderings asked for, and at the end
`predictions.json` (per input: size, classes present, pixel shares, inference time) and a summary
of pixel shares per class. It segments through the runtime's own `Segmenter` (the frame path the
demo and the benchmark run), so a mask here is the mask a device computes.

An input that cannot be decoded is skipped with one line naming it and counted; the command fails
when nothing could be processed, when the model's output cannot be a mask (NaN/Inf, ids past its
labels), or when an output cannot be written: then nothing of the run is left under --out.

`--out` holds one run: a folder that already holds another run's results (or a killed run's
leftovers) is refused unless `--force`, which removes those (and only those) first; a folder another
predict is writing into is refused, naming its process, and a `masks/` (or the like) that no predict
run wrote is never replaced. The run holds `.edgeseg-predict.lock` there while it writes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.atomic import atomic_path, write_bytes_atomic, write_json_atomic
from edgeseg.conventions import VIDEO_SUFFIXES
from edgeseg.errors import ConfigError, EdgesegError, ModelOutputError, OutputError, SourceError
from edgeseg.manifest import Manifest
from edgeseg.palette import voc_palette_rgb
from edgeseg.palette_png import encode_class_ids_png
from edgeseg.runtime.backend import check_threads, load_model_manifest
from edgeseg.runtime.capture import SourceOptions, open_within, parse_source
from edgeseg.runtime.image_files import list_inputs, read_image
from edgeseg.runtime.predict_output import FOLDERS, RESULT_FILE, claim_out
from edgeseg.runtime.render import Renderer, RenderOptions
from edgeseg.runtime.segmenter import Segmenter, check_model
from edgeseg.runtime.sinks import VideoFileSink

SAVE_KINDS = ("mask", "overlay", "side-by-side", "probs")
RENDERED_KINDS = ("overlay", "side-by-side")


def _warn(message: str) -> None:
    print(f"edgeseg predict: {message}", file=sys.stderr, flush=True)


def comma_list(option: str, text: str, example: str) -> tuple[str, ...]:
    """'a, b' -> ('a', 'b'); an empty list or an empty name in it is one line, never silently dropped."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise ConfigError(f"{option} {text!r}: {'is empty' if not text.strip() else 'holds an empty name'}; give "
                          f"comma-separated names such as {example}")
    return names


def parse_save(text: str) -> tuple[str, ...]:
    """'mask,overlay' -> ('mask', 'overlay'); the mask is always written (it is the result)."""
    kinds = comma_list("--save", text, "mask,overlay")
    unknown = [k for k in kinds if k not in SAVE_KINDS]
    if unknown:
        raise ConfigError(f"--save {text}: unknown {', '.join(unknown)}; choose from {', '.join(SAVE_KINDS)}")
    return tuple(k for k in SAVE_KINDS if k in kinds or k == "mask")


@dataclass(frozen=True)
class PredictConfig:
    """One predict run: which model, which inputs, where and what to write."""

    model: Path | str
    source: str
    out: Path
    save: tuple[str, ...] = ("mask",)
    classes: tuple[str, ...] | None = None  # keep only these (names or ids); other pixels become background
    threads: int | None = None
    max_frames: int | None = None  # per video or stream
    video_frames: bool = False  # videos: renderings as one PNG per frame instead of one mp4 per kind
    progress: bool = True
    render: RenderOptions = RenderOptions(hud=False, legend=True)
    force: bool = False  # replace another run's results under --out
    first_frame_timeout_s: float | None = SourceOptions.first_frame_timeout_s  # videos, streams; None: forever

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames {self.max_frames}: must be 1 or more")
        check_threads(self.threads)


def class_filter(names: tuple[str, ...] | None, labels: tuple[str, ...]) -> np.ndarray | None:
    """A 256-entry look-up table: kept class ids map to themselves, all others to 0 (background)."""
    if not names:
        return None
    lut = np.zeros(256, np.uint8)
    for name in names:
        if name.isdigit() and int(name) < len(labels):
            lut[int(name)] = int(name)
        elif name in labels:
            lut[labels.index(name)] = labels.index(name)
        else:
            raise ConfigError(f"--classes {name}: the model has no such class; it has {', '.join(labels)}")
    return lut


@dataclass
class InputResult:
    """What one image or video frame gave."""

    name: str  # the source file's name (a video frame: '<video>#<frame>')
    path: str
    height: int
    width: int
    counts: np.ndarray  # pixels per class id (256)
    inference_ms: float
    outputs: dict[str, str] = field(default_factory=dict)  # kind -> file, relative to --out

    def to_json(self, labels: tuple[str, ...]) -> dict[str, Any]:
        total = float(self.height * self.width)
        present = [int(i) for i in np.flatnonzero(self.counts)]
        return {"name": self.name, "path": self.path, "height": self.height, "width": self.width,
                "classes_present": [_label(labels, i) for i in present],
                "pixel_share": {_label(labels, i): round(float(self.counts[i]) / total, 6) for i in present},
                "inference_ms": round(self.inference_ms, 3), "outputs": self.outputs}


def _label(labels: tuple[str, ...], class_id: int) -> str:
    return labels[class_id] if class_id < len(labels) else f"class_{class_id}"


@dataclass
class PredictSummary:
    """Everything a run did; `format()` is what the command prints, `to_json()` is predictions.json."""

    model: str
    source: str
    labels: tuple[str, ...]
    results: list[InputResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    videos: list[str] = field(default_factory=list)  # rendered video files, relative to --out

    def pixel_share(self) -> dict[str, float]:
        counts = sum((r.counts for r in self.results), np.zeros(256, np.int64))
        total = float(counts.sum()) or 1.0
        return {_label(self.labels, int(i)): float(counts[i]) / total for i in np.flatnonzero(counts)}

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "source": self.source, "labels": list(self.labels),
                "processed": len(self.results), "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "pixel_share": {k: round(v, 6) for k, v in self.pixel_share().items()},
                "videos": self.videos, "inputs": [r.to_json(self.labels) for r in self.results]}

    def format(self, out: Path) -> str:
        lines = [f"predict: {len(self.results)} inputs from {self.source} with {Path(self.model).name}; "
                 f"{len(self.skipped)} skipped"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        present = {name: sum(1 for r in self.results if r.counts[i]) for i, name in enumerate(self.labels)}
        lines.append(f"  {'class':<16}{'pixels':>9}{'inputs':>8}")
        for name, share in sorted(self.pixel_share().items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<16}{100 * share:8.2f}%{present.get(name, 0):>8}")
        kinds = sorted({kind for r in self.results for kind in r.outputs})
        lines.append(f"  wrote {out}/ (predictions.json, {', '.join(kinds)})")
        return "\n".join(lines)


class _Predictor:
    """The model and the writers of one run; `image()` and `video()` process one input each."""

    def __init__(self, config: PredictConfig, manifest: Manifest, summary: PredictSummary) -> None:
        self.config = config
        self.summary = summary
        self.manifest = manifest
        self.keep = class_filter(config.classes, manifest.labels)
        self.renderers = {kind: Renderer(manifest.labels, RenderOptions(
            mode=kind, alpha=config.render.alpha, outlines=config.render.outlines, legend=config.render.legend,
            hud=False)) for kind in config.save if kind in RENDERED_KINDS}
        self.palette = voc_palette_rgb()
        self.used_names: set[str] = set()
        self.segmenter = Segmenter.open(manifest, threads=config.threads)

    def close(self) -> None:
        self.segmenter.close()

    def segment(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
        """(class ids at the frame's size, softmax probabilities at the model's size or None, inference ms).

        The mask is the segmenter's buffer (or the class filter's result): written out before the next frame."""
        segmenter = self.segmenter
        mask = segmenter.segment(frame)
        if self.keep is not None:
            mask = cv2.LUT(mask, self.keep)
        # The raw output of the same engine call, not a second run.
        probs = _softmax(segmenter.scores(segmenter.last_output)) if "probs" in self.config.save else None
        return mask, probs, segmenter.times.inference_ms

    def unique_stem(self, stem: str) -> str:
        """Two sources with one stem (a.jpg, a.png) must not overwrite each other's outputs."""
        name, n = stem, 1
        while name in self.used_names:
            n += 1
            name = f"{stem}_{n}"
        self.used_names.add(name)
        return name

    def write_outputs(self, stem: str, frame: np.ndarray, mask: np.ndarray, probs: np.ndarray | None,
                      rendered: bool = True) -> dict[str, str]:
        out = self.config.out
        written = {"mask": f"{FOLDERS['mask']}/{stem}.png"}
        try:
            write_palette_png(out / written["mask"], mask, self.palette)
            if probs is not None:
                written["probs"] = f"{FOLDERS['probs']}/{stem}.npy"
                with atomic_path(out / written["probs"]) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, probs.astype(np.float16))
            for kind, renderer in self.renderers.items() if rendered else ():
                written[kind] = f"{FOLDERS[kind]}/{stem}.png"
                _write_png(out / written[kind], renderer.render(frame, mask))
        except OSError as exc:  # a full disk, a folder that went away: the run's outputs are incomplete
            raise OutputError(f"{exc.filename or out}: cannot be written ({exc.strerror})") from None
        return written

    def record(self, name: str, path: str, mask: np.ndarray, inference_ms: float, outputs: dict[str, str]) -> None:
        counts = cv2.calcHist([mask], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        self.summary.results.append(InputResult(name=name, path=path, height=mask.shape[0], width=mask.shape[1],
                                                counts=counts, inference_ms=inference_ms, outputs=outputs))

    def image(self, path: Path) -> None:
        frame = read_image(path)
        mask, probs, ms = self.segment(frame)
        stem = self.unique_stem(path.stem)
        self.record(path.name, str(path), mask, ms, self.write_outputs(stem, frame, mask, probs))

    def video(self, uri: str, tick: Callable[[], None]) -> None:
        """Every frame of a video or stream (up to --max-frames): masks as PNGs, renderings as one
        video file per kind (or PNGs with --video-frames)."""
        source = parse_source(uri)
        open_within(source, self.config.first_frame_timeout_s)  # a pipe with no writer must not block forever
        stem = self.unique_stem(Path(uri.rstrip("/")).stem or "stream")
        sinks = {} if self.config.video_frames else {
            kind: VideoFileSink(self.config.out / FOLDERS[kind] / f"{stem}.mp4", fps=source.fps)
            for kind in self.renderers}
        try:
            index = 0
            while self.config.max_frames is None or index < self.config.max_frames:
                frame = source.read()
                if frame is None:
                    break
                mask, probs, ms = self.segment(frame)
                outputs = self.write_outputs(f"{stem}_{index:06d}", frame, mask, probs, rendered=not sinks)
                for kind, sink in sinks.items():
                    sink.write(self.renderers[kind].render(frame, mask))
                    outputs[kind] = f"{FOLDERS[kind]}/{stem}.mp4#{index}"
                self.record(f"{Path(uri).name}#{index}", uri, mask, ms, outputs)
                index += 1
                tick()
        finally:
            source.close()
            for kind, sink in sinks.items():
                sink.close()
                if sink.published:
                    self.summary.videos.append(f"{FOLDERS[kind]}/{stem}.mp4")
        if index == 0:
            raise SourceError(f"{uri}: delivered no frame")


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Logits of a batch of one (NCHW, `Segmenter.scores`) -> class probabilities, classes first (C x H x W)."""
    logits = scores[0].astype(np.float32)
    logits = logits - logits.max(axis=0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    return logits


def write_palette_png(path: Path, mask: np.ndarray, palette: np.ndarray) -> None:
    """Class ids as the pixel values of a palette PNG (what VOC's SegmentationClass holds), atomically."""
    write_bytes_atomic(path, encode_class_ids_png(mask, palette))


def _write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OutputError(f"{path}: cannot be written")


def _check_request(config: PredictConfig, manifest: Manifest) -> None:
    """What can be refused before the model loads."""
    if "probs" in config.save and manifest.output_spec().kind == "mask":
        raise ConfigError(f"--save probs: {manifest.artifact_path.name} outputs the argmax mask, not class scores; "
                          "use an artifact converted with --output logits")
    class_filter(config.classes, manifest.labels)
    check_model(manifest)


def run_predict(config: PredictConfig, *, on_message: Callable[[str], None] = _warn) -> PredictSummary:
    """Segment every input of `config.source`; write masks, renderings and predictions.json into `config.out`.

    Raises SourceError when no input could be processed (the skipped ones named in the message).
    """
    manifest = load_model_manifest(config.model)  # a bare .tflite: from its own metadata
    _check_request(config, manifest)
    files, is_stream = list_inputs(config.source)
    claim = claim_out(config.out, force=config.force)
    try:
        return _predict_into(config, manifest, files, is_stream, on_message)
    finally:
        # predictions.json is written last, atomically, once every other output is: a run that got there
        # (finished, or interrupted with results) keeps its results; any other leaves nothing.
        claim.release(keep=(config.out / RESULT_FILE).is_file())


def _predict_into(config: PredictConfig, manifest: Manifest, files: list[Path], is_stream: bool,
                  on_message: Callable[[str], None]) -> PredictSummary:
    summary = PredictSummary(model=str(manifest.artifact_path), source=config.source, labels=manifest.labels)
    predictor = _Predictor(config, manifest, summary)
    # One stream or video: the bar counts frames; a folder: it counts files.
    by_frame = is_stream or (len(files) == 1 and files[0].suffix.lower() in VIDEO_SUFFIXES)
    progress = _progress_bar(config, config.max_frames if by_frame else len(files), "frame" if by_frame else "input")
    tick = progress.update if progress is not None and by_frame else (lambda: None)
    interrupted = False
    try:
        for item in ([Path(config.source)] if is_stream else files):
            try:
                if is_stream or item.suffix.lower() in VIDEO_SUFFIXES:
                    predictor.video(config.source if is_stream else str(item), tick)
                else:
                    predictor.image(item)
            except (ModelOutputError, OutputError) as exc:  # the model or the disk, not this input: stop
                raise type(exc)(f"{exc}; stopped at {item}") from None
            except EdgesegError as exc:  # one bad input: named, counted, and the run goes on
                summary.skipped.append((str(item), str(exc).removeprefix(f"{item}: ")))
                if progress is not None:
                    progress.clear()  # the line above the bar, not through it
                on_message(f"skipped {exc}")
            if progress is not None and not by_frame:
                progress.update(1)
    except KeyboardInterrupt:  # Ctrl-C on a stream: keep what was done (the videos are closed below)
        interrupted = True
    finally:
        if progress is not None:
            progress.close()
        predictor.close()
    if not summary.results:
        if interrupted:
            raise KeyboardInterrupt
        names = "; ".join(f"{p}: {r}" for p, r in summary.skipped[:3])
        raise SourceError(f"{config.source}: nothing could be processed ({len(summary.skipped)} skipped: {names})")
    try:
        write_json_atomic(config.out / RESULT_FILE, summary.to_json())
    except OSError as exc:
        raise OutputError(f"{config.out / RESULT_FILE}: cannot be written ({exc.strerror})") from None
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _progress_bar(config: PredictConfig, total: int | None, unit: str) -> Any:
    if not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="predict", unit=unit, file=sys.stderr, mininterval=0.5, leave=False)
