"""The choices and defaults of `edgeseg convert`'s options that several modules read, each written once:
`--help` reads them without importing numpy, torch or onnx (so they live here, not beside the quantizer),
the request check refuses what they exclude, and the exporters fall back to them."""

from __future__ import annotations

# How a tensor's INT8 range is estimated from the calibration images (ONNX Runtime's calibrators, for the
# Q/DQ ONNX of host-cpu and the Jetson targets):
#   minmax-mean  the mean over the images of each image's min and max (default: one unusual image
#                cannot stretch a range and cost every other image its resolution)
#   minmax       the extremes over all images
#   entropy      the range minimizing the KL divergence between the float and the INT8 histogram
#                (TensorRT's entropy calibrator: 2048 histogram bins onto 128 levels)
#   percentile   the given percentile of |x| (`--calib-percentile`, default DEFAULT_PERCENTILE)
CALIBRATION_METHODS = ("minmax-mean", "minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_METHOD = "minmax-mean"
DEFAULT_PERCENTILE = 99.99
# --calib-percentile's range: above the median (lower clips most tensors to nothing) up to 100 (the maximum).
PERCENTILE_ABOVE, PERCENTILE_MAX = 50.0, 100.0
DEFAULT_CALIBRATION_IMAGES = 64  # --calib-images
DEFAULT_VERIFY_IMAGES = 8  # --verify-images: images per verification set
