"""One model's frame path: preprocess -> infer -> class mask -> frame size, the one every caller runs.

The demo, `predict`, the bench and verification all segment through a `Segmenter`, so they preprocess,
decode and resize identically, and a check on the way (finite outputs, ids within the labels:
`runtime.postprocess.MaskDecoder`) stops every one of them. The steps are public because the demo runs
them on three threads (preprocessing on the capture thread, the engine on its own, the mask on the
main thread) and verification scores the raw output before it becomes a mask; `segment` runs them in
a row and times each stage for the bench and `predict`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.manifest import Manifest
from edgeseg.runtime.backend import Backend, load_model_manifest, open_backend
from edgeseg.runtime.postprocess import MaskDecoder, resize_mask, scores_nchw
from edgeseg.runtime.preprocess import preprocess_bgr, preprocess_rgb


@dataclass
class StageTimes:
    """The last `segment` call's time per stage, in milliseconds (updated in place, frame after frame)."""

    preprocess_ms: float = math.nan
    inference_ms: float = math.nan  # the engine call alone (Backend.last_inference_ms)
    postprocess_ms: float = math.nan  # output -> checked class ids -> frame size
    total_ms: float = math.nan  # frame in to mask out, the gaps between the stages included


def check_model(manifest: Manifest) -> MaskDecoder:
    """What can be refused before a model loads: its output spec (kind, layout) and a class count that
    an 8-bit mask cannot hold. Returns the model's decoder."""
    return MaskDecoder.for_manifest(manifest)


class Segmenter:
    """A loaded model and its frame path, configured once from its manifest.

    `Segmenter.open(model)` loads the model (and closes it with the segmenter: use it as a context
    manager); `Segmenter(backend)` runs an engine its caller opened and closes (verification, the
    bench). Masks are uint8 class ids. The frame-sized mask lives in a buffer reused frame after frame:
    copy it to keep it past the next call.
    """

    def __init__(self, backend: Backend, *, owns_backend: bool = False) -> None:
        self.backend = backend
        self.manifest: Manifest = backend.manifest
        self.input_spec = self.manifest.input_spec()
        self.output_spec = self.manifest.output_spec()
        self.decoder = check_model(self.manifest)
        self.times = StageTimes()
        # The last `segment` call's raw model output and its class ids at the model's resolution (empty before).
        self.last_output: np.ndarray = np.empty(0, np.float32)
        self.last_model_mask: np.ndarray = np.empty((0, 0), np.uint8)
        self._owns_backend = owns_backend
        self._mask_buffer: np.ndarray | None = None  # frame-sized class ids, reused while the frame size holds

    @classmethod
    def open(cls, model: Path | str | Manifest, *, threads: int | None = None) -> Segmenter:
        """Load the model an artifact (or its manifest, or a Manifest) names, after the checks that need
        no engine (`check_model`); `threads` as `open_backend` takes them."""
        manifest = model if isinstance(model, Manifest) else load_model_manifest(model)
        check_model(manifest)
        backend = open_backend(manifest, threads=threads)
        try:
            return cls(backend, owns_backend=True)
        except BaseException:
            backend.close()
            raise

    # -- the steps -----------------------------------------------------------------------

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """A camera/OpenCV frame (BGR uint8 HxWx3) -> the model's input batch."""
        return preprocess_bgr(frame_bgr, self.input_spec)

    def preprocess_rgb(self, image_rgb: np.ndarray) -> np.ndarray:
        """An RGB image (data sets, verification) -> the model's input batch."""
        return preprocess_rgb(image_rgb, self.input_spec)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The engine on one batch: the raw output, unchecked (`decode` checks it)."""
        return self.backend.infer(batch)

    @property
    def last_inference_ms(self) -> float:
        """The last engine call's time (`Backend.last_inference_ms`)."""
        return self.backend.last_inference_ms

    def decode(self, output: np.ndarray) -> np.ndarray:
        """Raw output -> checked class ids at the model's resolution (ModelOutputError for NaN/Inf, bad ids)."""
        return self.decoder(output)

    def to_frame(self, mask: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Model-resolution class ids -> (height, width), nearest, into the reused buffer."""
        height, width = frame_size
        if mask.shape == (height, width):  # nothing to resize; keep the buffer for the frames that need it
            return mask
        self._mask_buffer = resize_mask(mask, height, width, out=self._mask_buffer)
        return self._mask_buffer

    def to_mask(self, output: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Raw output -> checked class ids at (height, width): `decode`, then `to_frame`."""
        return self.to_frame(self.decode(output), frame_size)

    def scores(self, output: np.ndarray) -> np.ndarray:
        """A score output (logits; a foreground model's channel) as NCHW, a view: what verification compares
        with PyTorch and `predict --save probs` turns into probabilities. ValueError for a mask output."""
        return scores_nchw(output, self.output_spec.layout)

    # -- the whole path ------------------------------------------------------------------

    def segment(self, frame_bgr: np.ndarray, frame_size: tuple[int, int] | None = None) -> np.ndarray:
        """A BGR frame -> checked class ids at `frame_size` (default: the frame's own), each stage timed
        into `times`; `last_output` and `last_model_mask` keep the raw output and the model-size mask."""
        return self._segment(self.preprocess, frame_bgr, frame_size)

    def segment_rgb(self, image_rgb: np.ndarray, frame_size: tuple[int, int] | None = None) -> np.ndarray:
        """`segment` for an RGB image (evaluation sets)."""
        return self._segment(self.preprocess_rgb, image_rgb, frame_size)

    def _segment(self, prepare: Callable[[np.ndarray], np.ndarray], frame: np.ndarray,
                 frame_size: tuple[int, int] | None) -> np.ndarray:
        t0 = time.perf_counter()
        batch = prepare(frame)
        t1 = time.perf_counter()
        output = self.last_output = self.infer(batch)
        t2 = time.perf_counter()
        model_mask = self.last_model_mask = self.decode(output)
        mask = self.to_frame(model_mask, frame.shape[:2] if frame_size is None else frame_size)
        t3 = time.perf_counter()
        times = self.times
        times.preprocess_ms = (t1 - t0) * 1000
        times.inference_ms = self.backend.last_inference_ms
        times.postprocess_ms = (t3 - t2) * 1000
        times.total_ms = (t3 - t0) * 1000
        return mask

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the engine when this segmenter opened it; one its caller handed in stays open."""
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
