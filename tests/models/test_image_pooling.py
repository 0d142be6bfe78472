"""ASPP image pooling over a window (TensorFlow DeepLab's image_pooling_crop_size): the module, the checkpoint
setting that carries it, training that records it, and the exporters that must follow it."""

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPPPooling

from edgeseg.cli import main
from edgeseg.conventions import DEFAULT_ARCH
from edgeseg.convert.pipeline import convert
from edgeseg.convert.request import ConvertRequest
from edgeseg.errors import WeightsError
from edgeseg.manifest import MANIFEST_SUFFIX
from edgeseg.models.image_pooling import WindowedASPPPooling, set_image_pool_window
from edgeseg.models.weights import load_weights, save_checkpoint
from tests.constants import FP32_MIN_AGREEMENT


def _identity_pooling(channels: int) -> ASPPPooling:
    """An image-pooling branch whose 1x1 convolution, BatchNorm and ReLU pass the pooled means through."""
    pooling = ASPPPooling(channels, channels).eval()
    with torch.no_grad():
        pooling[1].weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    pooling[2].eps = 0.0  # BatchNorm at its initial statistics: exactly the identity
    return pooling


def test_windowed_pooling_is_the_sliding_window_mean_resized_back_half_pixel():
    # Left half 0, right half 1, 8 cells wide; a 4-cell window, stride 1, gives the means 0, .25, .5, .75, 1
    # over 5 positions, resized back to 8 cells as cv2.resize's bilinear (half-pixel) convention does.
    x = torch.zeros(1, 2, 4, 8)
    x[..., 4:] = 1.0
    windowed = WindowedASPPPooling(_identity_pooling(2), window_cells=4)
    out = windowed(x).detach()[0, 0].numpy()
    means = np.array([[0.0, 0.25, 0.5, 0.75, 1.0]], np.float32)
    expected = cv2.resize(means, (8, 1), interpolation=cv2.INTER_LINEAR)[0]
    np.testing.assert_allclose(out, np.broadcast_to(expected, (4, 8)), atol=1e-6)
    # Height 4 is no larger than the window: that axis pools globally (one row of means, constant over rows).
    assert np.ptp(out, axis=0).max() == 0


def test_a_window_covering_the_map_is_torchvision_global_pooling_exactly(sample_checkpoint):
    weights = load_weights("sample")
    plain = weights.build()
    windowed = set_image_pool_window(weights.build(), weights.arch, 512)  # 32 cells; 160 px is a 10x10 map
    x = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    # Back to global: the same module tree and the same output as a model never windowed.
    restored = set_image_pool_window(weights.build(), weights.arch, 64)
    set_image_pool_window(restored, weights.arch, None)
    assert type(restored.classifier[0].convs[4]) is ASPPPooling
    with torch.no_grad():
        reference = plain(x)["out"]
        assert torch.equal(reference, windowed(x)["out"])
        narrow = set_image_pool_window(weights.build(), weights.arch, 64)(x)["out"]  # 4 cells: it binds
        assert not torch.equal(reference, narrow)
        assert torch.equal(reference, restored(x)["out"])


def _windowed_checkpoint(tmp_path, window, arch=DEFAULT_ARCH):
    weights = load_weights("sample")
    path = tmp_path / f"win{window}.pt"
    save_checkpoint(path, weights.build(), arch=arch, labels=weights.labels, resolution=1024,
                    dtype=torch.float16, extra={"image_pool_window": window})
    return path


def test_the_checkpoint_carries_the_window_and_build_honours_it(tmp_path, sample_checkpoint):
    weights = load_weights(str(_windowed_checkpoint(tmp_path, 64)))
    assert weights.image_pool_window == 64
    branch = weights.build().classifier[0].convs[4]
    assert isinstance(branch, WindowedASPPPooling) and branch.window_cells == 4  # 64 px at output stride 16
    # The sample model pools globally: on scenes outside the held-out 200, every window measured lost at 1024
    # (docs/sample-world.md, "Image pooling over a window, chosen on fresh scenes").
    assert load_weights("sample").image_pool_window is None


@pytest.mark.parametrize("window, why", [
    (100, "image_pool_window 100: must be a multiple of deeplabv3_mobilenet_v3_large's output stride 16"),
    (8, "image_pool_window 8: must be a multiple of deeplabv3_mobilenet_v3_large's output stride 16"),
    ("512", "image_pool_window '512': must be a multiple"),
])
def test_a_window_the_model_cannot_honour_is_one_line_naming_the_file(tmp_path, sample_checkpoint, window, why):
    path = _windowed_checkpoint(tmp_path, window)
    with pytest.raises(WeightsError, match="^" + str(path).replace(".", r"\.") + ": ") as caught:
        load_weights(str(path))
    assert why in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_without_image_pooling_refuses_a_window(tmp_path):
    from edgeseg.models.zoo import build_model

    path = tmp_path / "lraspp.pt"
    model = build_model("lraspp_mobilenet_v3_large", num_classes=3)
    save_checkpoint(path, model, arch="lraspp_mobilenet_v3_large", labels=("a", "b", "c"), resolution=320,
                    extra={"image_pool_window": 512})
    with pytest.raises(WeightsError, match="lraspp_mobilenet_v3_large has no ASPP image pooling"):
        load_weights(str(path))


@pytest.mark.slow
def test_zero_epochs_records_a_window_on_unchanged_weights_and_fine_tuning_inherits_it(synthetic_voc, tmp_path):
    windowed = tmp_path / "windowed.pt"
    common = ["--data", str(synthetic_voc), "--resolution", "128", "--batch-size", "4", "--workers", "0"]
    assert main(["train", *common, "--init", "sample", "--epochs", "0", "--image-pool-window", "64",
                 "--out", str(windowed)]) == 0
    sample, result = load_weights("sample"), load_weights(str(windowed))
    assert result.image_pool_window == 64 and result.metadata["history"] == []
    assert all(torch.equal(result.state_dict[k].float(), sample.state_dict[k].float()) for k in sample.state_dict)
    # The recorded validation is the windowed model's (128 px is an 8-cell map; the 4-cell window binds).
    from edgeseg.datasets import open_dataset
    from edgeseg.models.train import evaluate

    val = open_dataset(synthetic_voc, "val")
    assert result.metadata["val_miou"] == evaluate(result.build(), val, 128, 7, progress=False)["miou"]
    assert result.metadata["val_miou"] != evaluate(sample.build(), val, 128, 7, progress=False)["miou"]

    tuned, reset = tmp_path / "tuned.pt", tmp_path / "reset.pt"
    assert main(["train", *common, "--init", str(windowed), "--epochs", "1", "--max-steps-per-epoch", "1",
                 "--out", str(tuned)]) == 0
    assert load_weights(str(tuned)).image_pool_window == 64
    assert main(["train", *common, "--init", str(windowed), "--epochs", "0", "--image-pool-window", "global",
                 "--out", str(reset)]) == 0
    assert load_weights(str(reset)).image_pool_window is None


def test_a_bad_window_option_stops_training_before_any_work(synthetic_voc, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", "--data", str(synthetic_voc), "--init", "sample", "--image-pool-window", "100",
                 "--out", str(out)]) == 2
    assert "--image-pool-window: image_pool_window 100: must be a multiple" in capsys.readouterr().err
    assert main(["train", "--data", str(synthetic_voc), "--image-pool-window", "wide", "--out", str(out)]) == 2
    assert "--image-pool-window wide: give a window in pixels, 'global', or 'init'" in capsys.readouterr().err
    assert main(["train", "--data", str(synthetic_voc), "--epochs", "-1", "--out", str(out)]) == 2
    assert "--epochs -1: must be 0 or more" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("target, suffix", [("host-cpu", "onnx"), ("android-cpu", "tflite")])
def test_every_float_exporter_follows_the_window(tmp_path, sample_checkpoint, target, suffix):
    """At 160 px (a 10x10 map) a 64-pixel window binds: the ONNX graph pools with AveragePool, the LiteRT model
    with AVERAGE_POOL_2D, and each agrees with the windowed PyTorch model, which the manifest records."""
    ckpt = _windowed_checkpoint(tmp_path, 64)
    out = tmp_path / "models"
    assert main(["convert", "--weights", str(ckpt), "--target", target, "--resolution", "160",
                 "--verify-images", "2", "--out", str(out)]) == 0
    artifact = out / f"win64-{target}-fp32-160.{suffix}"
    manifest = json.loads(artifact.with_name(artifact.name + MANIFEST_SUFFIX).read_text())
    assert manifest["model"]["image_pool_window"] == 64
    assert manifest["verification"]["passed"] and manifest["verification"]["argmax_agreement"] >= FP32_MIN_AGREEMENT
    if suffix == "onnx":
        graph = onnx.load(str(artifact)).graph
        pools = [n for n in graph.node if n.op_type == "AveragePool"]
        kernel = {a.name: list(a.ints) for a in pools[0].attribute}["kernel_shape"] if len(pools) == 1 else None
        assert kernel == [4, 4], [n.op_type for n in graph.node]
        props = {p.key: p.value for p in onnx.load(str(artifact)).metadata_props}
        assert props["image_pool_window"] == "64"
    else:
        from edgeseg.formats.tflite.convert.ops import op_counts, read_ops

        assert op_counts(read_ops(artifact)).get("AVERAGE_POOL_2D") == 1


def test_the_windowed_module_keeps_the_state_dict_keys():
    pooling = _identity_pooling(3)
    parent = nn.Sequential(pooling)
    before = sorted(parent.state_dict())
    set_image_pool_window(nn.ModuleDict({"classifier": parent}), DEFAULT_ARCH, 32)
    assert isinstance(parent[0], WindowedASPPPooling) and sorted(parent.state_dict()) == before


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host-cpu", "jetson-orin-nano"])
def test_int8_forms_keep_the_windowed_pool_and_pass_verification(tmp_path, sample_checkpoint, target):
    """host-cpu's ORT form runs the window's AveragePool on uint8 (DequantizeLinear in, QuantizeLinear out: ORT
    fuses it into QLinearAveragePool); the TensorRT Q/DQ form leaves it in float between quantized convolutions,
    and its graph passes the bundle's parser check. Both verify against the windowed FP32 model."""
    m = convert(ConvertRequest(target=target, precision="int8", resolution="160", weights=str(
        _windowed_checkpoint(tmp_path, 64)), out=tmp_path / "out", calibration="synthetic:8", verify_images=4,
        progress=False, options={"calib_images": 8, "verify_images": 4}))
    assert m["model"]["image_pool_window"] == 64 and m["verification"]["passed"]
    graph = onnx.load(str(Path(m["manifest_path"]).with_name(m["artifact"]))).graph
    producer = {out: n for n in graph.node for out in n.output}
    (pool,) = [n for n in graph.node if n.op_type == "AveragePool"]
    consumers = [n.op_type for n in graph.node if pool.output[0] in n.input]
    if target == "host-cpu":
        assert producer[pool.input[0]].op_type == "DequantizeLinear" and consumers == ["QuantizeLinear"]
    else:
        assert m["conversion"]["tensorrt"]["parser_check"]["passed"]
