"""From model output to a class mask at frame size."""

from __future__ import annotations

import cv2
import numpy as np


def output_to_mask(output: np.ndarray, kind: str, layout: str) -> np.ndarray:
    """A batch-of-one model output -> uint8 HxW class ids at the model's resolution.

    kind 'logits' with layout 'NCHW' or 'NHWC'; kind 'mask' is already argmaxed ('NHW'); kind
    'foreground' is one channel of foreground probability (MediaPipe's selfie segmenters): class 1
    where it exceeds 0.5, as MediaPipe's ImageSegmenter decides.
    """
    if kind == "mask":
        return output.reshape(output.shape[-2:]).astype(np.uint8, copy=False)
    if kind == "foreground":
        score = output[0, 0] if layout == "NCHW" else output[0, ..., 0]
        return (score > 0.5).astype(np.uint8)
    if layout == "NCHW":
        return output[0].argmax(axis=0).astype(np.uint8)
    if layout == "NHWC":
        return output[0].argmax(axis=-1).astype(np.uint8)
    raise ValueError(f"unknown output layout {layout}")


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
