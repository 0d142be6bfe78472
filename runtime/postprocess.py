"""From model output to a class mask at frame size, checked on the way.

Every caller (the demo, `predict`, the bench and verification) turns outputs into masks through
`MaskDecoder`, so a model that outputs NaN/Inf or class ids outside its labels stops all of them in
one line instead of becoming "background 100 %" or an id that wraps around in an 8-bit mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeseg.errors import ModelOutputError
from edgeseg.manifest import Manifest

MAX_CLASSES = 256  # masks are 8-bit class ids (palette PNGs, VOC's SegmentationClass format)


def output_to_mask(output: np.ndarray, kind: str, layout: str, num_classes: int | None = None, *,
                   source: str = "the model") -> np.ndarray:
    """A batch-of-one model output -> uint8 HxW class ids at the model's resolution.

    kind 'logits' with layout 'NCHW' or 'NHWC'; kind 'mask' is already argmaxed ('NHW'); kind
    'foreground' is one channel of foreground probability (MediaPipe's selfie segmenters): class 1
    where it exceeds 0.5, as MediaPipe's ImageSegmenter decides.

    Raises ModelOutputError (naming `source`) when the output holds NaN/Inf, or class ids that are
    negative, not below `num_classes` (when given), or too large for an 8-bit mask: those never wrap.
    """
    check_finite(output, source)
    if kind == "mask":
        return _class_ids(output.reshape(output.shape[-2:]), num_classes, source)
    if kind == "foreground":
        score = output[0, 0] if layout == "NCHW" else output[0, ..., 0]
        return (score > 0.5).astype(np.uint8)
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"unknown output layout {layout}")
    axis = 0 if layout == "NCHW" else -1
    classes = output.shape[1] if layout == "NCHW" else output.shape[-1]
    if num_classes is not None and classes != num_classes:
        raise ModelOutputError(f"{source}: outputs {classes} class scores per pixel ({layout}), but its manifest "
                               f"says {num_classes} classes; the manifest does not describe this model")
    ids = output[0].argmax(axis=axis)
    if classes > MAX_CLASSES:
        return _class_ids(ids, num_classes, source)
    return ids.astype(np.uint8)


def check_finite(output: np.ndarray, source: str) -> None:
    """Raise when a float output holds NaN or Inf. min and max propagate NaN and reach +-Inf, so two
    reductions (well under a millisecond for 21 planes at 520 px) decide; the count only on failure."""
    if output.dtype.kind != "f" or output.size == 0:
        return
    if np.isfinite(output.min()) and np.isfinite(output.max()):
        return
    bad = int(output.size - np.count_nonzero(np.isfinite(output)))
    raise ModelOutputError(f"{source}: the model output holds {bad} non-finite values (NaN/Inf) out of {output.size}; "
                           "no mask can be taken from it (diverged or corrupted weights, an FP16/INT8 overflow?)")


def _class_ids(ids: np.ndarray, num_classes: int | None, source: str) -> np.ndarray:
    """Integer class ids -> uint8, after checking every id is one of the model's classes (below 256 at most)."""
    limit = min(num_classes, MAX_CLASSES) if num_classes is not None else MAX_CLASSES
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= limit:
        wrong = low if low < 0 else high
        allowed = f"the model has {num_classes} classes (0..{num_classes - 1})" if num_classes is not None \
            else f"masks hold ids 0..{MAX_CLASSES - 1}"
        raise ModelOutputError(f"{source}: the model output holds class id {wrong}, but {allowed}")
    return ids.astype(np.uint8, copy=False)


@dataclass(frozen=True)
class MaskDecoder:
    """Output -> checked uint8 class ids for one model, configured once from its manifest.

    The one place the demo, `predict`, the bench and verification turn an engine's output into a mask.
    """

    kind: str
    layout: str
    num_classes: int
    source: str  # the artifact's name, for messages

    @classmethod
    def for_manifest(cls, manifest: Manifest) -> MaskDecoder:
        """Refuses a model with more classes than an 8-bit mask holds (its ids would wrap)."""
        name = manifest.artifact_path.name
        if manifest.num_classes > MAX_CLASSES:
            raise ModelOutputError(f"{name}: its manifest says {manifest.num_classes} classes, but masks are 8-bit "
                                   f"class ids (palette PNGs): at most {MAX_CLASSES} classes")
        spec = manifest.output_spec()
        return cls(kind=spec.kind, layout=spec.layout, num_classes=manifest.num_classes, source=name)

    def __call__(self, output: np.ndarray) -> np.ndarray:
        return output_to_mask(output, self.kind, self.layout, self.num_classes, source=self.source)


def scores_nchw(output: np.ndarray, layout: str) -> np.ndarray:
    """A score output (logits, or a foreground probability channel) as NCHW: a view, transposed from NHWC."""
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"a {layout} output holds no per-class scores")
    return output.transpose(0, 3, 1, 2) if layout == "NHWC" else output


def resize_mask(mask: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """Class ids back to frame size; nearest keeps them class ids.

    `out` (height x width, the mask's dtype) is filled and returned instead of a new array: a
    real-time loop passes the same buffer every frame and allocates nothing.
    """
    if mask.shape == (height, width):
        return mask
    if out is not None and (out.shape != (height, width) or out.dtype != mask.dtype):
        out = None  # the frame size changed: a new buffer, which the caller keeps for the next frame
    return cv2.resize(mask, (width, height), dst=out, interpolation=cv2.INTER_NEAREST)
