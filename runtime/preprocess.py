"""Preprocessing as pure functions of (frame, InputSpec): the demo, the benchmark and the
converter's verification all call these, so they can never preprocess differently."""

from __future__ import annotations

import cv2
import numpy as np

from edgeseg.input_spec import InputSpec


def resize_to_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Stretch the whole frame to the model's input size (bilinear), as the model was trained."""
    if image.shape[0] == spec.height and image.shape[1] == spec.width:
        return image
    return cv2.resize(image, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)


def preprocess_rgb(image_rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB uint8 HxWx3 -> a batch of one in the model's layout and dtype."""
    pixels = resize_to_input(image_rgb, spec)
    if spec.color_order == "BGR":
        pixels = pixels[..., ::-1]
    if spec.mean is None:
        x = pixels
    else:
        mean = np.asarray(spec.mean, np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
        x = (pixels.astype(np.float32) - mean) * inv_std
    if spec.quant_scale is not None:
        zero_point = spec.quant_zero_point or 0  # real = (q - zero_point) * scale
        q = np.round(x.astype(np.float32) / spec.quant_scale) + zero_point
        info = np.iinfo(np.dtype(spec.dtype))
        x = np.clip(q, info.min, info.max)
    x = x.astype(np.dtype(spec.dtype), copy=False)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def preprocess_bgr(frame_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A camera/OpenCV frame (BGR) -> model input; the colour swap happens after the resize (cheaper)."""
    small = resize_to_input(frame_bgr, spec)
    return preprocess_rgb(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), spec)
