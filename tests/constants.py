"""Values the tests share, each named once: where the repository is, and the targets, sizes, calibration and
files that several test files convert, run or read. Facts the source owns are imported from it
(edgeseg.conventions.DEFAULT_ARCH, edgeseg.manifest.MANIFEST_SUFFIX, ...); these are the tests' own choices."""

from __future__ import annotations

from pathlib import Path

# The repository's root (this file is tests/constants.py); tests in any folder below read files from it.
REPO = Path(__file__).resolve().parents[1]

# The targets most tests convert for (targets/*.yaml): this machine's ONNX Runtime CPU, and a phone's LiteRT CPU.
HOST_CPU = "host-cpu"
ANDROID_CPU = "android-cpu"

# Input sizes the sample model is converted at here, as `--resolution` takes them.
TINY_RESOLUTION = "64"  # an artifact to run, not to score: the quickest conversion there is
SMALL_RESOLUTION = "128"
# The size the format tests (LiteRT, OpenVINO, TensorRT) convert every precision at, so that one trace serves them
# all. 160, not 128: the sample model never trained below a 288-pixel scene. At 128 the INT8 forms of its large-scale
# fine-tunes sit at the 0.9 agreement floor (0.89-0.94 measured), at 160 clear of it (0.94-0.96), and at 320-1024,
# where it deploys, within 0.3 mIoU of FP32 (docs/benchmarks.md, the full sweep).
FORMAT_RESOLUTION = "160"

# INT8 calibration for the conversions at FORMAT_RESOLUTION: generated scenes, and how many of them.
INT8_CALIBRATION_IMAGES = 16
INT8_CALIBRATION = f"synthetic:{INT8_CALIBRATION_IMAGES}"

# What an FP32 artifact must agree with PyTorch on (argmax), restated from convert/verify.py's budget so that a
# test does not loosen with the source.
FP32_MIN_AGREEMENT = 0.999

# The files a bench run writes into its folder (benchmarks/report.py's REPORT_FILES).
BENCH_RESULTS = "results.json"
BENCH_REPORT = "report.md"
