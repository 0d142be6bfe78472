"""TFLite / LiteRT conversion for the android-* targets, verified against the PyTorch FP32 reference.

CI converts at 160 px to stay fast; docs/android.md holds the 320 and 640 figures measured with
`edgeseg convert`. Tracing with litert-torch is the slow step (tens of seconds), quantization takes
seconds, so the session traces each float graph once and every precision quantizes that one (the
`make` fixture in tests/formats/tflite/conftest.py over `traced_once` in tests/conftest.py, shared with
test_tflite_mediapipe.py and test_xnnpack.py).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litert_torch", reason="TFLite conversion needs litert-torch (pip install 'edgeseg[tflite]')")
pytest.importorskip("ai_edge_litert", reason="the LiteRT backend needs ai-edge-litert")

from edgeseg.cli import main  # noqa: E402
from edgeseg.convert.pipeline import ConvertRequest, convert  # noqa: E402
from edgeseg.errors import ConfigError, DatasetError, ManifestError, VerificationError  # noqa: E402
from edgeseg.formats.tflite.convert import export as tflite_export  # noqa: E402
from edgeseg.formats.tflite.convert import ops as tflite_ops  # noqa: E402
from edgeseg.formats.tflite.runtime.runner import embedded_labels  # noqa: E402
from edgeseg.manifest import MANIFEST_SUFFIX  # noqa: E402
from edgeseg.runtime.backend import open_backend  # noqa: E402
from edgeseg.runtime.postprocess import output_to_mask  # noqa: E402
from edgeseg.runtime.preprocess import preprocess_rgb  # noqa: E402
from edgeseg.scenes import SYNTHETIC_LABELS, generate_scene, scene_rng  # noqa: E402
from tests.constants import (  # noqa: E402
    ANDROID_CPU,
    FORMAT_RESOLUTION,
    FP32_MIN_AGREEMENT,
    INT8_CALIBRATION,
    INT8_CALIBRATION_IMAGES,
)

pytestmark = pytest.mark.slow


def artifact(manifest: dict) -> Path:
    return Path(manifest["manifest_path"][: -len(MANIFEST_SUFFIX)])


def synthetic_miou_delta(manifest: dict) -> float:
    (entry,) = [s for s in manifest["verification"]["sets"] if s["set"] == "synthetic-val"]
    return entry["miou_delta"]


def test_fp32_matches_pytorch_with_nhwc_input_and_output(make) -> None:
    m = make("fp32")
    v = m["verification"]
    assert v["argmax_agreement"] >= FP32_MIN_AGREEMENT and v["max_abs_logit_diff"] < 1e-3
    assert m["input"]["layout"] == "NHWC" and m["input"]["dtype"] == "float32"
    assert m["output"] == {**m["output"], "kind": "logits", "layout": "NHWC", "dtype": "float32"}
    # NHWC in and out: the converter left no layout transposes in the graph.
    assert "TRANSPOSE" not in m["conversion"]["ops"]
    assert m["backend"] == "litert" and m["tools"]["litert-torch"] == "0.10.0"


def test_fp16_stores_half_precision_weights_and_agrees(make) -> None:
    fp32, fp16 = make("fp32"), make("fp16")
    assert fp16["verification"]["argmax_agreement"] >= 0.995
    assert 0.45 < fp16["size_mb"] / fp32["size_mb"] < 0.6
    ops = tflite_ops.read_ops(artifact(fp16))
    assert any(op.name == "DEQUANTIZE" and op.input_types == ("FLOAT16",) for op in ops)
    assert all(op.input_types[0] == "FLOAT32" for op in ops if op.name == "CONV_2D")


def test_dynamic_int8_stays_within_one_miou_point(make) -> None:
    fp32, dynamic = make("fp32"), make("int8-dynamic")
    assert dynamic["size_mb"] / fp32["size_mb"] < 0.3
    assert synthetic_miou_delta(dynamic) >= -1.0
    assert dynamic["input"]["dtype"] == "float32" and "calibration" not in dynamic["conversion"]


def test_full_int8_computes_in_int8_within_one_miou_point(make) -> None:
    m = make("int8")
    ops = tflite_ops.read_ops(artifact(m))
    convs = [op for op in ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs and all(op.input_types[:2] == ("INT8", "INT8") and op.output_types == ("INT8",) for op in convs)
    assert synthetic_miou_delta(m) >= -1.0
    calibration = m["conversion"]["calibration"]
    assert calibration["source"] == INT8_CALIBRATION and calibration["images"] == INT8_CALIBRATION_IMAGES
    assert m["input"]["dtype"] == "float32" and m["conversion"]["int8_io"] == "float"


@pytest.mark.parametrize("io_type", ["int8", "uint8"])
def test_integer_io_uses_the_models_scale_and_zero_point(make, io_type: str) -> None:
    float_io, integer_io = make("int8"), make("int8", int8_io=io_type)
    assert integer_io["input"]["dtype"] == io_type and integer_io["output"]["dtype"] == io_type
    quant = integer_io["input"]["quantization"]
    assert quant["scale"] > 0 and integer_io["output"]["quantization"]["scale"] > 0
    image = generate_scene(scene_rng(7, "val", 0))[0]
    with open_backend(artifact(float_io), threads=1) as a, open_backend(artifact(integer_io), threads=1) as b:
        batch = preprocess_rgb(image, b.manifest.input_spec())
        assert batch.dtype == np.dtype(io_type)
        reference, logits = a.infer(preprocess_rgb(image, a.manifest.input_spec())), b.infer(batch)
    assert logits.dtype == np.float32  # dequantized by the backend
    agreement = np.mean(output_to_mask(reference, "logits", "NHWC") == output_to_mask(logits, "logits", "NHWC"))
    assert agreement >= 0.99
    assert integer_io["verification"]["passed"]
    assert integer_io["verification"]["argmax_agreement"] >= integer_io["verification"]["budget"]["min_agreement"]


def test_mask_output_with_fused_preprocessing_reports_gpu_fallbacks(make, capfd) -> None:
    m = make("fp32", target="android-gpu", output_kind="mask", fuse_preprocessing=True)
    assert m["input"]["dtype"] == "uint8" and m["input"]["normalization"] == "in_model"
    assert m["output"]["kind"] == "mask" and m["output"]["dtype"] == "uint8"
    assert m["verification"]["argmax_agreement"] >= FP32_MIN_AGREEMENT
    unsupported = {u["op"]: u["reason"] for u in m["conversion"]["gpu_delegate_unsupported_ops"]}
    # uint8 pixels are cast to float at the input and the argmax is cast to uint8 at the output.
    assert unsupported == {"CAST": unsupported["CAST"], "ARG_MAX": "not supported"}
    assert "uint8 -> float32" in unsupported["CAST"] or "int32 -> uint8" in unsupported["CAST"]
    assert "GPU delegate: these ops fall back to the CPU: " in capfd.readouterr().err
    assert "gpu_delegate_unsupported_ops" not in make("fp32")["conversion"]  # android-cpu: not asked


def test_every_precision_holds_builtin_ops_only(make) -> None:
    for precision in ("fp32", "fp16", "int8-dynamic", "int8"):
        ops = tflite_ops.read_ops(artifact(make(precision)))
        assert ops and not [op.name for op in ops if op.custom], precision


def test_labels_travel_inside_the_model(make, tmp_path: Path) -> None:
    path = artifact(make("fp32"))
    assert embedded_labels(path) == SYNTHETIC_LABELS
    assert zipfile.ZipFile(path).read("labels.txt").decode().split() == list(SYNTHETIC_LABELS)
    data = json.loads(Path(make("fp32")["manifest_path"]).read_text())
    data["artifact"], data["external_artifact"] = str(path), True
    data["model"]["labels"] = list(reversed(SYNTHETIC_LABELS))
    (tmp_path / "relabelled.tflite.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"labels differ from the labels.txt in .*TFLite metadata"):
        open_backend(tmp_path / "relabelled.tflite.json")


def _with_flex_op(model: bytes) -> bytes:
    """The same model with its first ADD turned into the Select-TF op FlexAddV2."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    tree.operatorCodes.append(schema.OperatorCodeT(deprecatedBuiltinCode=schema.BuiltinOperator.CUSTOM,
                                                   customCode="FlexAddV2", builtinCode=schema.BuiltinOperator.CUSTOM))
    add = next(op for op in tree.subgraphs[0].operators
               if tree.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.ADD)
    add.opcodeIndex = len(tree.operatorCodes) - 1
    add.builtinOptionsType, add.builtinOptions = 0, None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def test_a_model_with_flex_ops_is_refused_and_nothing_is_written(make, traced_once, sample_checkpoint,
                                                                 tmp_path) -> None:
    make("fp32")  # fills the trace cache for this graph
    key = next(k for k in traced_once if k[3] == "logits" and not k[4])
    clean = traced_once[key]
    with pytest.raises(VerificationError, match=r"Flex \(Select-TF\) ops FlexAddV2"):
        tflite_ops.require_builtin_only(tflite_ops.read_ops(_with_flex_op(clean)), "m.tflite")
    traced_once[key] = _with_flex_op(clean)
    try:
        with pytest.raises(VerificationError, match="FlexAddV2; they do not run in the plain LiteRT runtime"):
            convert(ConvertRequest(target="android-nnapi", precision="fp32", resolution=FORMAT_RESOLUTION,
                                   weights=str(sample_checkpoint), out=tmp_path, verify_images=2, progress=False))
    finally:
        traced_once[key] = clean
    assert list(tmp_path.iterdir()) == []  # the staging folder went away with the failure


def test_int8_without_calibration_images_is_refused_in_one_line(sample_checkpoint: Path, tmp_path: Path,
                                                                capsys) -> None:
    code = main(["convert", "--target", ANDROID_CPU, "--precision", "int8", "--resolution", FORMAT_RESOLUTION,
                 "--weights", str(sample_checkpoint), "--verify-images", "1", "--json", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == ("edgeseg convert: error: int8 needs calibration images: pass --calib DIR (or --calib "
                       "synthetic:N); "
                       "edgeseg never calibrates on random data")
    assert list(tmp_path.iterdir()) == []


def test_calibration_folder_without_readable_images_is_refused(tmp_path: Path) -> None:
    from edgeseg.convert.export import ExportJob
    from edgeseg.targets import get_target

    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    job = ExportJob(weights=None, model=None, target=get_target(ANDROID_CPU),
                    precision="int8", height=64, width=64, output_kind="logits", fuse_preprocessing=False,
                    basename="m", calibration=str(folder), options={"calib_images": 8}, progress=False)
    with pytest.raises(DatasetError, match="calib: no readable calibration images"):
        tflite_export.export(job, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib"]


@pytest.mark.parametrize(("precision", "options", "message"), [
    ("fp16", {"int8_io": "int8"}, "only a full-INT8 model"),
    ("int8", {"int8_io": "int16"}, "choose one of float, int8, uint8"),
    ("int8", {"calib_method": "entropy"}, "applies to Q/DQ ONNX"),
])
def test_options_that_do_not_apply_are_refused(precision: str, options: dict, message: str) -> None:
    from edgeseg.convert.export import ExportJob
    from edgeseg.targets import get_target

    job = ExportJob(weights=None, model=None, target=get_target(ANDROID_CPU), precision=precision, height=64,
                    width=64, output_kind="logits", fuse_preprocessing=False, basename="m",
                    calibration=INT8_CALIBRATION, options=options, progress=False)
    with pytest.raises(ConfigError, match=message):
        tflite_export.export(job, Path("/nonexistent"))


def test_gpu_table_flags_the_usual_suspects() -> None:
    op = tflite_ops.OpUse
    ops = [
        op("CONV_2D", False, ("FLOAT32",) * 3, ("FLOAT32",)),
        op("HARD_SWISH", False, ("FLOAT32",), ("FLOAT32",)),
        op("CAST", False, ("FLOAT32",), ("INT32",)),
        op("CAST", False, ("UINT8",), ("FLOAT32",)),
        op("RESIZE_BILINEAR", False, ("FLOAT32", "INT32"), ("FLOAT32",),
           (("align_corners", False), ("half_pixel_centers", True))),
        op("RESIZE_BILINEAR", False, ("FLOAT32", "INT32"), ("FLOAT32",),
           (("align_corners", True), ("half_pixel_centers", True))),
        op("ARG_MAX", False, ("FLOAT32", "INT32"), ("INT32",)),
        op("ARG_MAX", False, ("FLOAT32", "INT32"), ("INT32",)),
        op("FlexAddV2", True, ("FLOAT32",), ("FLOAT32",)),
    ]
    assert tflite_ops.gpu_unsupported(ops) == [
        {"op": "CAST", "count": 1, "reason": "cast uint8 -> float32"},
        {"op": "RESIZE_BILINEAR", "count": 1, "reason": "align_corners with half_pixel_centers"},
        {"op": "ARG_MAX", "count": 2, "reason": "not supported"},
        {"op": "FlexAddV2", "count": 1, "reason": "custom op"},
    ]
    assert tflite_ops.describe_gpu_unsupported([]) == "GPU delegate: every op is supported"
