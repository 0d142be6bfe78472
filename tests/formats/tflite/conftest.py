"""The LiteRT tests' conversions: the sample model through the whole pipeline at FORMAT_RESOLUTION, once per
precision and options for the session, every precision quantizing the one trace of its graph (`traced_once`,
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.constants import ANDROID_CPU, FORMAT_RESOLUTION, INT8_CALIBRATION, INT8_CALIBRATION_IMAGES


@pytest.fixture(scope="session")
def make(sample_checkpoint: Path, traced_once, tmp_path_factory):
    """`make(precision, target=..., **request)`: the sample model converted through the whole pipeline at
    160 px (or `resolution`), once per key for the session; returns the published manifest."""
    from edgeseg.convert.pipeline import ConvertRequest, convert

    made: dict[tuple, dict] = {}

    def build(precision: str, *, target: str = ANDROID_CPU, int8_io: str = "float", region_split: bool = True,
              resolution: int = FORMAT_RESOLUTION, **request) -> dict:
        key = (precision, target, int8_io, region_split, resolution, tuple(sorted(request.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"{target}-{precision}")
            made[key] = convert(ConvertRequest(
                target=target, precision=precision, resolution=resolution, weights=str(sample_checkpoint),
                out=out, calibration=INT8_CALIBRATION if precision == "int8" else None, verify_images=4,
                progress=False, options={"calib_images": INT8_CALIBRATION_IMAGES, "int8_io": int8_io,
                                            "region_split": region_split}, **request))
        return made[key]

    return build
