"""The XNNPACK export's region split of dilated convolutions: each region holds exactly the taps that read
the map, the split computes the same values (batch norm folded in), the sample model splits its ASPP
branches at 640 and 320, and LiteRT takes the split graph as one XNNPACK partition without TRANSPOSE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgeseg.convert.aspp_rewrite import rewrite_dilated_convs
from edgeseg.formats.tflite.convert.region_split import (
    RegionSplitConv2d,
    axis_regions,
    kept_fraction,
    split_dilated_convs,
)
from edgeseg.models.weights import load_weights


@pytest.mark.parametrize("size, kernel, dilation", [
    (40, 3, 12), (40, 3, 24), (40, 3, 36), (20, 3, 12), (13, 3, 4), (16, 5, 3), (7, 3, 6), (12, 3, 12)])
def test_each_region_holds_exactly_the_taps_that_read_the_map(size, kernel, dilation):
    regions = axis_regions(size, kernel, dilation, dilation * (kernel - 1) // 2, 1)
    assert regions is not None and regions[0].start == 0 and regions[-1].stop == size
    assert all(a.stop == b.start for a, b in zip(regions, regions[1:]))
    centre = kernel // 2
    for region in regions:
        for o in range(region.start, region.stop):
            live = [t for t in range(kernel) if 0 <= o + (t - centre) * dilation < size]
            assert live == list(range(region.first_tap, region.last_tap + 1))


def test_strided_or_uncentred_convolutions_are_not_split():
    assert axis_regions(40, 3, 12, 12, 2) is None
    assert axis_regions(40, 3, 12, 6, 1) is None
    assert axis_regions(40, 4, 12, 18, 1) is None


@pytest.mark.parametrize("hw, kernel, dilation", [((40, 40), 3, 36), ((20, 20), 3, 12), ((9, 13), 3, 4),
                                                  ((16, 16), 5, 3)])
def test_split_with_batch_norm_folded_equals_the_original(hw, kernel, dilation):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 5, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False)
    bn = nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)  # pyright: ignore[reportOptionalMemberAccess]
        bn.running_var.uniform_(0.5, 2)  # pyright: ignore[reportOptionalMemberAccess]
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    padding = dilation * (kernel - 1) // 2
    rows, cols = axis_regions(hw[0], kernel, dilation, padding, 1), axis_regions(hw[1], kernel, dilation, padding, 1)
    assert rows and cols
    split = RegionSplitConv2d(conv, hw, rows, cols, bn=bn)
    x = torch.randn(1, 8, *hw)
    with torch.no_grad():
        expected, got = bn(conv(x)), split(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.fixture(scope="module")
def sample_model(sample_checkpoint: Path) -> nn.Module:
    return load_weights(str(sample_checkpoint)).build().eval()


@pytest.mark.parametrize("size, kept", [
    (640, {"classifier.0.convs.1.0": 0.64, "classifier.0.convs.2.0": 0.36, "classifier.0.convs.3.0": 0.16}),
    (320, {"classifier.0.convs.1.0": 0.36}),  # rates 24 and 36 are 1x1 after the ASPP rewrite at 320
    (160, {}),  # a 10x10 map: the ASPP rewrite leaves no dilated branch
])
def test_sample_model_splits_its_dilated_aspp_branches_only(sample_model, size, kept):
    rewritten, _ = rewrite_dilated_convs(sample_model, size, size)
    split, layers = split_dilated_convs(rewritten, size, size)
    assert {layer.name: round(layer.flops_after / layer.flops_before, 2) for layer in layers} == kept
    assert all(layer.regions == 9 and layer.batch_norm_folded and layer.relu_per_region for layer in layers)
    # The dilated depthwise convolutions of the backbone stay whole.
    assert not any(isinstance(m, RegionSplitConv2d) for name, m in split.named_modules() if name.startswith("backbone"))
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(split(x)["out"], rewritten(x)["out"], atol=1e-4)


def test_kept_fraction_counts_the_live_taps():
    rows = axis_regions(40, 3, 36, 36, 1)
    assert rows is not None
    assert kept_fraction(rows, rows, (3, 3)) == pytest.approx((4 * 2 + 32 + 4 * 2) ** 2 / (40 * 3) ** 2)


@pytest.mark.slow
def test_litert_runs_the_split_as_one_xnnpack_partition_without_transpose():
    """The graph structure the speed comes from: NHWC SLICE and CONCATENATION around the region convolutions,
    no TRANSPOSE (litert-torch inserts them around NCHW-only ops such as PAD), and XNNPACK takes every op."""
    litert_torch = pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_quantizer")
    import numpy as np
    from ai_edge_quantizer import quantizer

    from edgeseg.formats.tflite.convert import export as tflite_export
    from edgeseg.formats.tflite.convert import ops as tflite_ops
    from edgeseg.formats.tflite.convert import xnnpack

    class Branch(nn.Module):  # a 1x1 stem, then an ASPP branch on a 16x16 map (NCHW, as split_dilated_convs traces)
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 1)
            self.branch = nn.Sequential(nn.Conv2d(16, 8, 3, padding=6, dilation=6, bias=False), nn.BatchNorm2d(8),
                                        nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.branch(self.stem(x))

    torch.manual_seed(0)
    model = Branch().eval()
    split, layers = split_dilated_convs(model, 16, 16)
    assert [layer.name for layer in layers] == ["branch.0"]

    class ChannelsLast(nn.Module):  # NHWC in and out, as the android export traces it
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    float_model = bytes(litert_torch.convert(ChannelsLast(split).eval(), (torch.rand(1, 16, 16, 3),)).model_content())
    ops = tflite_ops.op_counts(tflite_ops.read_ops(float_model))
    assert "TRANSPOSE" not in ops and "PAD" not in ops
    assert ops["CONV_2D"] == 1 + 9 and ops["SLICE"] >= 1 and ops["CONCATENATION"] == 3 + 1
    assert xnnpack.partitions(float_model) == 1 and not xnnpack.outside_ops(float_model)
    # Full INT8 with the android-cpu recipe: the ReLU inside each region, so no int8 RELU is left outside XNNPACK.
    q = quantizer.Quantizer(bytearray(float_model))
    xnnpack.int8_recipe(q)
    key, input_name = tflite_export._signature_input_name(float_model)
    pixels = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    int8_model = bytes(q.quantize(q.calibrate({key: [{input_name: pixels}]})).quantized_model)
    assert xnnpack.partitions(int8_model) == 1 and not xnnpack.outside_ops(int8_model)


@pytest.mark.slow
def test_no_region_split_keeps_the_convolutions_whole_and_the_manifest_says_so(make):
    """At 224 px the rate-12 ASPP branch reads a 14 x 14 map: android-cpu splits it unless --no-region-split."""
    split, whole = make("fp32", resolution=224), make("fp32", resolution=224, region_split=False)
    record = split["conversion"]["region_split"]
    assert record["applied"] is True and [layer["name"] for layer in record["layers"]] == ["classifier.0.convs.1.0"]
    assert whole["conversion"]["region_split"] == {"applied": False, "reason": "disabled (--no-region-split)"}
    assert whole["conversion"]["ops"]["CONV_2D"] < split["conversion"]["ops"]["CONV_2D"]
    assert whole["conversion"]["xnnpack_partitions"] == split["conversion"]["xnnpack_partitions"] == 1
    sizes = [(Path(m["manifest_path"]).parent / m["artifact"]).stat().st_size for m in (whole, split)]
    assert sizes[0] < sizes[1]  # the split repeats the branch's weights per region
