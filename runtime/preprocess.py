"""Preprocessing as pure functions of (frame, InputSpec): the demo, the benchmark and the
converter's verification all call these, so they can never preprocess differently."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InputSpec:
    height: int
    width: int
    layout: str = "NCHW"  # or "NHWC"
    dtype: str = "float32"  # or "uint8" (normalization inside the model), "int8" (quantized input)
    color_order: str = "RGB"
    # None means the model normalizes internally (fused preprocessing) and takes raw 0..255 pixels.
    mean: tuple[float, float, float] | None = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] | None = (0.229, 0.224, 0.225)
    resize: str = "stretch"
    # Quantized inputs: real = (q - zero_point) * scale.
    quant_scale: float | None = None
    quant_zero_point: int | None = None

    @property
    def normalization_in_model(self) -> bool:
        return self.mean is None

    def to_dict(self) -> dict:
        return {
            "height": self.height, "width": self.width, "layout": self.layout, "dtype": self.dtype,
            "color_order": self.color_order, "resize": self.resize,
            "normalization": "in_model" if self.mean is None else {"mean": list(self.mean), "std": list(self.std), "scale": 1 / 255},
            **({"quantization": {"scale": self.quant_scale, "zero_point": self.quant_zero_point}}
               if self.quant_scale is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        norm = d.get("normalization", "in_model")
        quant = d.get("quantization") or {}
        return cls(
            height=int(d["height"]), width=int(d["width"]), layout=d.get("layout", "NCHW"),
            dtype=d.get("dtype", "float32"), color_order=d.get("color_order", "RGB"),
            mean=None if norm == "in_model" else tuple(norm["mean"]),
            std=None if norm == "in_model" else tuple(norm["std"]),
            resize=d.get("resize", "stretch"),
            quant_scale=quant.get("scale"), quant_zero_point=quant.get("zero_point"),
        )


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
        q = np.round(x.astype(np.float32) / spec.quant_scale) + spec.quant_zero_point
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
