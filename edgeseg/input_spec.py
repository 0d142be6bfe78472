"""What a model's input looks like (size, layout, dtype, colour order, normalization), as the manifest
records it; the runtime's preprocessing is a pure function of a frame and this spec."""

from __future__ import annotations

from dataclasses import dataclass

from edgeseg.conventions import IMAGENET_MEAN, IMAGENET_STD

# The values the preprocessing implements; a manifest naming another is refused when read (edgeseg/manifest.py).
INPUT_LAYOUTS = ("NCHW", "NHWC")
COLOR_ORDERS = ("RGB", "BGR")
RESIZE_MODES = ("stretch",)
PIXEL_SCALE = 1 / 255  # normalization.scale: 0..255 pixels to 0..1, before mean and std
QUANTIZED_DTYPES = ("int8", "uint8")


@dataclass(frozen=True)
class InputSpec:
    height: int
    width: int
    layout: str = "NCHW"  # or "NHWC"
    dtype: str = "float32"  # or "uint8" (normalization inside the model), "int8" (quantized input)
    color_order: str = "RGB"
    # None means the model normalizes internally (fused preprocessing) and takes raw 0..255 pixels.
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    resize: str = "stretch"
    # Quantized inputs: real = (q - zero_point) * scale.
    quant_scale: float | None = None
    quant_zero_point: int | None = None

    def to_dict(self) -> dict:
        return {
            "height": self.height, "width": self.width, "layout": self.layout, "dtype": self.dtype,
            "color_order": self.color_order, "resize": self.resize,
            "normalization": "in_model" if self.mean is None or self.std is None else {
                "mean": list(self.mean), "std": list(self.std), "scale": PIXEL_SCALE},
            **({"quantization": {"scale": self.quant_scale, "zero_point": self.quant_zero_point}}
               if self.quant_scale is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
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
