"""LiteRT full INT8 runs as one XNNPACK partition: counted from the written artifact by the LiteRT
interpreter itself, recorded in the manifest and shown by `edgeseg info`."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("litert_torch", reason="TFLite conversion needs litert-torch (pip install 'edgeseg[tflite]')")
pytest.importorskip("ai_edge_quantizer", reason="INT8 needs ai-edge-quantizer")

from edgeseg.cli import main  # noqa: E402
from edgeseg.formats.tflite.convert import export as tflite_export  # noqa: E402
from edgeseg.formats.tflite.convert import xnnpack  # noqa: E402
from edgeseg.manifest import MANIFEST_SUFFIX, sha256_file  # noqa: E402
from tests.constants import FORMAT_RESOLUTION  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_and_float(make, traced_once, sample_checkpoint: Path) -> tuple[dict, bytes]:
    """The android-cpu INT8 artifact at 160 px (tests/constants.py says why not 128), the one the other LiteRT
    tests run (tests/formats/tflite/conftest.py), and the FP32 flatbuffer it was quantized from: the session's
    trace of its graph."""
    m = make("int8")
    size = int(FORMAT_RESOLUTION)
    return m, traced_once[(sha256_file(sample_checkpoint), size, size, "logits", False)]


def test_full_int8_is_one_xnnpack_partition_counted_from_the_artifact(int8_and_float):
    m, _ = int8_and_float
    path = Path(m["manifest_path"][: -len(MANIFEST_SUFFIX)])
    assert xnnpack.partitions(path) == 1
    assert not xnnpack.outside_ops(path)
    assert m["conversion"]["xnnpack_partitions"] == 1
    assert m["verification"]["passed"]


def test_plain_static_recipe_leaves_int8_hard_swish_outside_xnnpack(int8_and_float):
    """Why the recipe keeps HARD_SWISH in float: quantized, every one of them splits the graph."""
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe

    _, float_model = int8_and_float
    q = quantizer.Quantizer(bytearray(float_model))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    for boundary in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        q.update_quantization_recipe(".*", boundary, algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    key, input_name = tflite_export._signature_input_name(float_model)
    import numpy as np

    # Pixels 0..255, what the float model takes (all zeros would give its input normalization a zero range).
    size = int(FORMAT_RESOLUTION)
    pixels = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    calibration = q.calibrate({key: [{input_name: pixels}]})
    plain = bytes(q.quantize(calibration).quantized_model)
    outside = xnnpack.outside_ops(plain)
    assert set(outside) == {"HARD_SWISH"} and outside["HARD_SWISH"] == 20
    assert xnnpack.partitions(plain) == 21
    assert xnnpack.partitions(float_model) == 1


def test_info_shows_the_partition_count(int8_and_float, capsys):
    m, _ = int8_and_float
    assert main(["info", m["manifest_path"]]) == 0
    assert "xnnpack      1 partition (the whole graph delegated)" in capsys.readouterr().out
