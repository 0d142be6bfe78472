"""Fault injection, issue 30 family 1 (what was left): a manifest whose sha256 matches its artifact but whose
fields contradict it is refused when the model loads, in one line naming the manifest and the field; `info`
lists the disagreement instead of saying "agrees".

Each backend reads the tensors its engine says the model takes and gives (runtime.model_io.check_declared:
input layout, size, channel count and dtype; output kind, layout, class count and dtype) and the metadata the
artifact carries (ONNX metadata_props, OpenVINO rt_info, TFLite Model Metadata: colour order, normalization,
labels, precision). Planted: tiny ONNX models (a 1x1 convolution, with the metadata_props conversion writes),
their OpenVINO IR, a tiny TFLite model, each beside a manifest edited one field at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeseg.atomic import write_bytes_atomic, write_json_atomic
from edgeseg.manifest import manifest_path_for, sha256_file
from tests.fault_kit import CLASSES, SIZE, tiny_manifest, tiny_onnx_bytes
from tests.faults.campaign_kit import one_line_error, run_cli, tree


def with_props(model: bytes, manifest: dict) -> bytes:
    """The ONNX bytes with the metadata_props conversion writes for `manifest` (convert/onnx_export.py's keys)."""
    import onnx

    proto = onnx.load_from_string(model)
    inp, out = manifest["input"], manifest["output"]
    norm = inp["normalization"]
    props = {"architecture": manifest["model"]["architecture"], "precision": manifest["precision"],
             "labels": json.dumps(manifest["model"]["labels"]), "num_classes": str(manifest["model"]["num_classes"]),
             "resolution": f"{inp['height']}x{inp['width']}", "input_layout": inp["layout"],
             "input_dtype": inp["dtype"],
             "color_order": inp["color_order"], "output_kind": out["kind"], "output_layout": out["layout"],
             "normalization": json.dumps({"mean": norm["mean"], "std": norm["std"]})}
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


def four_channel_onnx() -> bytes:
    """A 1x1 convolution 4 -> CLASSES: an RGBA model a manifest calls RGB."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((CLASSES, 4, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["logits"])], "rgba",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES, SIZE, SIZE])],
                              [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def plant(folder: Path, edit, *, model: bytes | None = None, output: dict | None = None) -> Path:
    """A tiny ONNX (with honest metadata_props) and its manifest with `edit` applied after the props were
    written: the sha256 matches, the fields do not. Returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    artifact = folder / "tiny.onnx"
    write_bytes_atomic(artifact, model if model is not None else tiny_onnx_bytes())
    honest = tiny_manifest(artifact)
    if output is not None:
        honest["output"] = output
    write_bytes_atomic(artifact, with_props(artifact.read_bytes(), honest))
    manifest = tiny_manifest(artifact)
    if output is not None:
        manifest["output"] = output
    edit(manifest)
    write_json_atomic(manifest_path_for(artifact), manifest)
    return manifest_path_for(artifact)


def _set(section: str, **values):
    return lambda m: m[section].update(values) if section else m.update(values)


def _classes(count: int):
    def edit(m: dict) -> None:
        labels = [f"class_{i}" for i in range(count)]
        m["model"].update(num_classes=count, labels=labels)
    return edit


FIELD_EDITS = {
    "layout NHWC": (_set("input", layout="NHWC"), "input.layout", "the manifest says NHWC; tiny.onnx takes "
                    f"[1, 3, {SIZE}, {SIZE}] float32 (NCHW)"),
    "dtype uint8": (_set("input", dtype="uint8"), "input.dtype", "the manifest says uint8; tiny.onnx takes float32"),
    "dtype int8": (_set("input", dtype="int8"), "input.dtype", "the manifest says int8; tiny.onnx takes float32"),
    "size 32": (_set("input", height=32, width=32), "input.height/width",
                f"the manifest says 32x32; tiny.onnx takes [1, 3, {SIZE}, {SIZE}] float32"),
    "height only": (_set("input", height=SIZE * 2), "input.height/width",
                    f"the manifest says {SIZE * 2}x{SIZE}; tiny.onnx takes [1, 3, {SIZE}, {SIZE}] float32"),
    "output NHWC": (_set("output", layout="NHWC"), "output.layout",
                    f"the manifest says NHWC; tiny.onnx outputs [1, {CLASSES}, {SIZE}, {SIZE}] float32 (NCHW)"),
    "output mask": (_set("output", kind="mask", layout="NHW"), "output.kind",
                    f"the manifest says mask (NHW); tiny.onnx outputs [1, {CLASSES}, {SIZE}, {SIZE}] float32"),
    "8 classes": (_classes(CLASSES + 1), "model.num_classes",
                  f"the manifest says {CLASSES + 1} classes; tiny.onnx outputs {CLASSES} score planes"),
    "2 classes": (_classes(2), "model.num_classes", f"the manifest says 2 classes; tiny.onnx outputs {CLASSES} "
                                                   "score planes"),
    "output float16": (_set("output", dtype="float16"), "output.dtype",
                       "the manifest says float16; tiny.onnx outputs float32"),
    "output uint8": (_set("output", dtype="uint8"), "output.dtype",
                     "the manifest says uint8; tiny.onnx outputs float32"),
}

METADATA_EDITS = {
    "BGR": (_set("input", color_order="BGR"), "color_order"),
    "in-model normalization": (_set("input", normalization="in_model"), "normalization"),
    "other mean": (lambda m: m["input"]["normalization"].update(mean=[0.5, 0.5, 0.5]), "normalization mean/std"),
    "reversed labels": (lambda m: m["model"].update(labels=list(reversed(m["model"]["labels"]))), "labels"),
    "fp16": (_set("", precision="fp16"), "precision"),
    "other architecture": (lambda m: m["model"].update(architecture="deeplabv3_resnet50"), "architecture"),
}


def predict(capsys, manifest: Path, images: Path, out: Path) -> tuple[int, str]:
    return run_cli(capsys, "predict", "--model", manifest, "--source", images, "--out", out, "--no-progress",
                   "--threads", "1")


def test_an_honest_pair_runs_and_info_says_it_agrees(tmp_path, capsys, images):
    manifest = plant(tmp_path / "model", lambda m: None)
    code, err = predict(capsys, manifest, images, tmp_path / "out")
    assert code == 0, err
    out = _info_out(capsys, manifest)
    assert "(as the manifest says)" in out and "agrees with the manifest" in out and "DISAGREE" not in out


def _info_out(capsys, manifest: Path) -> str:
    from edgeseg.cli import main

    assert main(["info", str(manifest)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("case", list(FIELD_EDITS))
def test_a_field_the_tensors_contradict_is_refused_at_load(tmp_path, capsys, images, case):
    edit, field, detail = FIELD_EDITS[case]
    manifest = plant(tmp_path / "model", edit)
    out = tmp_path / "out"
    code, err = predict(capsys, manifest, images, out)
    assert code == 2
    assert one_line_error(err, "predict") == f"{manifest}: manifest field {field} contradicts the artifact: {detail}"
    assert not out.exists()
    assert tree(tmp_path / "model") == ["tiny.onnx", "tiny.onnx.json"]


@pytest.mark.parametrize("case", list(FIELD_EDITS))
def test_info_never_says_agrees_where_the_tensors_disagree(tmp_path, capsys, case):
    edit, field, detail = FIELD_EDITS[case]
    out = _info_out(capsys, plant(tmp_path / "model", edit))
    assert f"DISAGREE with the manifest on: {field} ({detail})" in out
    assert "agrees with the manifest" not in out and "(as the manifest says)" not in out


@pytest.mark.parametrize("case", list(METADATA_EDITS))
def test_a_field_the_metadata_contradicts_is_refused_at_load_and_shown_by_info(tmp_path, capsys, images, case):
    edit, field = METADATA_EDITS[case]
    manifest = plant(tmp_path / "model", edit)
    out = tmp_path / "out"
    code, err = predict(capsys, manifest, images, out)
    assert code == 2
    assert one_line_error(err, "predict") == (f"{manifest}: manifest disagrees with the ONNX metadata_props inside "
                                              f"tiny.onnx on: {field}")
    assert not out.exists()
    shown = _info_out(capsys, manifest)
    assert f"DISAGREES with the manifest on: {field}" in shown and "agrees with the manifest" not in shown


def test_a_four_channel_model_called_rgb_is_refused(tmp_path, capsys, images):
    manifest = plant(tmp_path / "model", lambda m: None, model=four_channel_onnx())
    code, err = predict(capsys, manifest, images, tmp_path / "out")
    assert code == 2
    assert one_line_error(err, "predict") == (f"{manifest}: manifest field input channels contradicts the artifact: "
                                              f"tiny.onnx takes 4 channels ([1, 4, {SIZE}, {SIZE}] float32); edgeseg "
                                              "feeds 3")


@pytest.mark.parametrize("output, field, detail", [
    ({"kind": "logits", "layout": "NCHW", "dtype": "int64"}, "output.kind",
     f"the manifest says logits; tiny.onnx outputs [1, {SIZE}, {SIZE}] int64 (a class mask)"),
    ({"kind": "mask", "layout": "NHW", "dtype": "uint8"}, "output.dtype",
     "the manifest says uint8; tiny.onnx outputs int64"),
])
def test_a_mask_model_described_wrongly_is_refused(tmp_path, capsys, images, output, field, detail):
    manifest = plant(tmp_path / "model", lambda m: m.update(output=output), model=tiny_onnx_bytes(mask_offset=0),
                     output={"kind": "mask", "layout": "NHW", "dtype": "int64"})
    code, err = predict(capsys, manifest, images, tmp_path / "out")
    assert code == 2
    assert one_line_error(err, "predict") == f"{manifest}: manifest field {field} contradicts the artifact: {detail}"


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_demo_and_the_bench_refuse_the_same_manifest(tmp_path, capsys, images, command):
    manifest = plant(tmp_path / "model", _set("input", layout="NHWC"))
    if command == "demo":
        code, err = run_cli(capsys, "demo", "--model", manifest, "--source", images, "--headless", "--threads", "1",
                            "--save", tmp_path / "demo.mp4")
        assert code == 2 and "manifest field input.layout contradicts the artifact" in one_line_error(err, "demo")
        assert not (tmp_path / "demo.mp4").exists()
    else:
        from edgeseg.errors import ManifestError
        from edgeseg.runtime.backend import open_backend

        with pytest.raises(ManifestError, match="manifest field input.layout contradicts the artifact"):
            open_backend(manifest)


@pytest.mark.parametrize("garbage", [b"", b"not an onnx model", bytes(range(256)) * 4])
def test_info_and_predict_on_a_corrupt_artifact_whose_manifest_matches_are_one_line(tmp_path, capsys, images,
                                                                                    garbage):
    folder = tmp_path / "model"
    folder.mkdir()
    artifact = folder / "tiny.onnx"
    artifact.write_bytes(garbage)
    manifest = tiny_manifest(artifact)  # its sha256 is the garbage's: the pair matches
    write_json_atomic(manifest_path_for(artifact), manifest)
    for command in (["info", artifact], ["predict", "--model", artifact, "--source", images, "--out", tmp_path / "o"]):
        code, err = run_cli(capsys, *command)
        assert code == 2
        assert one_line_error(err, command[0]).startswith(f"{artifact}: ONNX Runtime cannot ")
    assert not (tmp_path / "o").exists()


# -- the other formats: the same check through their own engines -------------------------------------------

@pytest.fixture
def openvino_pair(tmp_path) -> tuple[Path, dict]:
    """The tiny model as an OpenVINO IR with the rt_info conversion writes, and its honest manifest."""
    ov = pytest.importorskip("openvino")
    onnx_path = tmp_path / "src.onnx"
    onnx_path.write_bytes(tiny_onnx_bytes())
    folder = tmp_path / "ir"
    folder.mkdir()
    model = ov.convert_model(str(onnx_path))
    xml = folder / "tiny.xml"
    honest = tiny_manifest(onnx_path)
    for key, value in {"labels": json.dumps(honest["model"]["labels"]), "input_layout": "NCHW", "color_order": "RGB",
                       "output_kind": "logits", "inference_precision": "f32"}.items():
        model.set_rt_info(value, ["edgeseg", key])
    ov.save_model(model, str(xml), compress_to_fp16=False)
    honest.update(artifact=xml.name, artifact_sha256=sha256_file(xml), backend="openvino", target="intel-cpu",
                  runtime={"threads": 1, "device": "CPU", "inference_precision": "f32"},
                  conversion={"openvino": {"weights": {"file": "tiny.bin",
                                                       "sha256": sha256_file(folder / "tiny.bin")}}})
    return xml, honest


@pytest.mark.parametrize("edit, message", [
    (lambda m: None, None),
    (_set("output", layout="NHWC"), "manifest field output.layout contradicts the artifact"),
    (_classes(CLASSES + 1), "its labels differ from those in tiny.xml's rt_info"),  # its own check, first
    (_set("output", dtype="uint8"), "manifest field output.dtype contradicts the artifact"),
    (_set("input", color_order="BGR"), "manifest disagrees with the OpenVINO IR rt_info inside tiny.xml on: "
                                       "color_order"),
])
def test_openvino_refuses_a_manifest_its_ir_contradicts(tmp_path, capsys, images, openvino_pair, edit, message):
    xml, manifest = openvino_pair
    edit(manifest)
    write_json_atomic(manifest_path_for(xml), manifest)
    code, err = predict(capsys, manifest_path_for(xml), images, tmp_path / "out")
    if message is None:
        assert code == 0, err
        return
    assert code == 2 and message in one_line_error(err, "predict")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    """A 1x1 convolution as a .tflite, NHWC in and out (litert-torch, a few seconds)."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, CLASSES, 1)

        def forward(self, x):
            return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    litert_torch.convert(Tiny().eval(), (torch.zeros(1, SIZE, SIZE, 3),)).export(str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    (lambda m: None, None),
    (_set("output", layout="NCHW"), "manifest field output.layout contradicts the artifact"),
    (_classes(CLASSES - 1), "manifest field model.num_classes contradicts the artifact"),
    (_set("output", kind="mask", layout="NHW"), "manifest field output.kind contradicts the artifact"),
])
def test_litert_refuses_a_manifest_its_flatbuffer_contradicts(tmp_path, capsys, images, tiny_tflite, edit, message):
    folder = tmp_path / "model"
    folder.mkdir()
    artifact = folder / "tiny.tflite"
    artifact.write_bytes(tiny_tflite.read_bytes())
    manifest = tiny_manifest(artifact)
    manifest.update(backend="litert", target="android-cpu")
    manifest["input"]["layout"] = "NHWC"
    manifest["output"] = {"kind": "logits", "layout": "NHWC", "dtype": "float32"}
    edit(manifest)
    write_json_atomic(manifest_path_for(artifact), manifest)
    code, err = predict(capsys, manifest_path_for(artifact), images, tmp_path / "out")
    if message is None:
        assert code == 0, err
        return
    assert code == 2 and message in one_line_error(err, "predict")
    shown = _info_out(capsys, manifest_path_for(artifact))
    assert "DISAGREE with the manifest on: " in shown and "(as the manifest says)" not in shown
