"""The exact ASPP rewrite: only convolutions whose off-centre taps read nothing but padding are
rewritten, the rewritten model computes the same logits, and the conversion records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgeseg.convert.aspp_rewrite import (
    axis_reduces_to_centre,
    compare_models,
    reduced_conv,
    rewrite_dilated_convs,
    trace_convolutions,
)
from edgeseg.manifest import MANIFEST_SUFFIX
from edgeseg.models.weights import load_weights
from edgeseg.models.zoo import build_model
from tests.constants import FP32_MIN_AGREEMENT, HOST_CPU


def total_flops(model: nn.Module, height: int, width: int) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, height, width))
    return counter.get_total_flops()


# ---- the per-axis rule at its boundary -------------------------------------------------------

@pytest.mark.parametrize("size, kernel, dilation, stride, expected", [
    (12, 3, 12, 1, True),    # map == rate: taps at +-12 fall outside 0..11 for every output
    (13, 3, 12, 1, False),   # one larger: output 0 reads input 12, output 12 reads input 0
    (1, 3, 1, 1, True),      # a plain 3x3 on a 1-pixel axis
    (2, 3, 1, 1, False),
    (4, 5, 4, 1, True),      # 5-tap: +-4 and +-8 all outside 0..3
    (5, 5, 4, 1, False),
    (12, 3, 12, 2, True),    # stride 2: outputs 0..5 read 2o +- 12, all outside 0..11
    (13, 3, 12, 2, False),   # output 0 reads 0 + 12 = 12, inside 0..12
    (20, 1, 1, 1, False),    # kernel 1 already: nothing to do
])
def test_axis_rule_holds_exactly_up_to_the_boundary(size, kernel, dilation, stride, expected):
    assert axis_reduces_to_centre(size, kernel, dilation, dilation * (kernel - 1) // 2, stride) is expected


def test_axis_rule_refuses_padding_that_does_not_centre_the_kernel():
    # padding 0 (valid convolution) or even kernels: no single centre tap to keep
    assert not axis_reduces_to_centre(12, 3, 12, 0, 1)
    assert not axis_reduces_to_centre(12, 3, 12, 6, 1)
    assert not axis_reduces_to_centre(12, 4, 12, 18, 1)


@pytest.mark.parametrize("map_hw, dilation, groups", [((12, 12), 12, 1), ((12, 12), 13, 1), ((13, 13), 12, 1),
                                                       ((12, 12), 12, 8), ((12, 20), 16, 1), ((9, 30), 12, 8)])
def test_rule_matches_brute_force_tap_removal(map_hw, dilation, groups):
    """Brute force: a tap is removable iff zeroing its weights changes nothing on random input."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=dilation, dilation=dilation, groups=groups).eval()
    x = torch.randn(1, 8, *map_hw)
    with torch.no_grad():
        reference = conv(x)
        for axis in (0, 1):
            probe = nn.Conv2d(8, 16, 3, padding=dilation, dilation=dilation, groups=groups).eval()
            probe.load_state_dict(conv.state_dict())
            index = [slice(None)] * 4
            index[2 + axis] = [0, 2]  # the off-centre rows (axis 0) or columns (axis 1)
            probe.weight[tuple(index)] = 0
            removable = torch.equal(probe(x), reference)
            assert axis_reduces_to_centre(map_hw[axis], 3, dilation, dilation, 1) is removable


# ---- a planted model: both sides of the boundary at once -------------------------------------

class Planted(nn.Module):
    """A stem to a 12x20 map, then branches planted on either side of the rate boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=4, padding=1)  # 48x80 -> 12x20
        self.branches = nn.ModuleList([
            nn.Conv2d(16, 8, 3, padding=12, dilation=12),                # H 12 <= 12, W 20 > 12: -> 1x3
            nn.Conv2d(16, 8, 3, padding=20, dilation=20),                # 12 <= 20 and 20 <= 20: -> 1x1
            nn.Conv2d(16, 8, 3, padding=11, dilation=11),                # 12 > 11: kept
            nn.Conv2d(16, 16, 5, padding=24, dilation=12, groups=16),    # depthwise 5x5: H reduces -> 1x5
            nn.Conv2d(16, 8, 3, padding=12, dilation=12, padding_mode="circular"),  # reads real pixels: kept
            nn.Conv2d(16, 8, 3, padding=(12, 0), dilation=(12, 2)),     # W unpadded (valid): only H -> 1x3
        ])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        return {"out": torch.cat([branch(x).flatten(1) for branch in self.branches], 1)}


@pytest.fixture(scope="module")
def planted() -> nn.Module:
    torch.manual_seed(0)
    return Planted().eval()


def test_planted_model_rewrites_only_the_exact_cases(planted):
    rewritten, report = rewrite_dilated_convs(planted, 48, 80)
    kernels = {layer.name: layer.kernel_after for layer in report.layers}
    assert kernels == {"branches.0": (1, 3), "branches.1": (1, 1), "branches.3": (1, 5), "branches.5": (1, 3)}
    assert all(layer.map_hw == (12, 20) for layer in report.layers)
    # the kept axis keeps its dilation and padding
    assert rewritten.branches[0].dilation == (1, 12) and rewritten.branches[0].padding == (0, 12)
    assert rewritten.branches[3].groups == 16 and rewritten.branches[3].padding == (0, 24)
    assert rewritten.branches[5].padding == (0, 0) and rewritten.branches[5].dilation == (1, 2)
    # the original is left as it was
    assert planted.branches[0].kernel_size == (3, 3)
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x)["out"], planted(x)["out"], rtol=0, atol=1e-5)


def test_rewriting_just_past_the_boundary_would_change_the_output(planted):
    """The rule is not conservative for nothing: on the kept rate-11 branch, cutting to the
    centre tap changes the result, while on the rate-12 branch it does not."""
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        kept = planted.branches[2]
        assert (reduced_conv(kept, True, True)(x) - kept(x)).abs().max() > 1e-2
        exact = nn.Conv2d(16, 8, 3, padding=12, dilation=12).eval()
        torch.testing.assert_close(reduced_conv(exact, True, True)(x), exact(x), rtol=0, atol=1e-5)
        circular = planted.branches[4]  # same rate, but its padding wraps real pixels in
        assert (reduced_conv(circular, True, True)(x) - circular(x)).abs().max() > 1e-2


def test_reported_flops_match_torch_flop_counter(planted):
    rewritten, report = rewrite_dilated_convs(planted, 48, 80)
    assert report.flops_before == total_flops(planted, 48, 80)
    assert report.flops_after == total_flops(rewritten, 48, 80)
    assert report.flops_after < report.flops_before


def test_nothing_qualifies_returns_the_same_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, dilation=2)).eval()
    same, report = rewrite_dilated_convs(model, 64, 64)
    assert same is model and report.layers == [] and report.flops_before == report.flops_after


# ---- the zoo ----------------------------------------------------------------------------------

ASPP = ("classifier.0.convs.1.0", "classifier.0.convs.2.0", "classifier.0.convs.3.0")  # rates 12, 24, 36


@pytest.mark.parametrize("arch, size, expected", [
    # MobileNetV3 DeepLabV3: output stride 16, so a 20x20 map at 320, 33x33 at 520, 40x40 at 640;
    # its backbone's dilation-2 depthwise convolutions see at least 4x4 and never qualify.
    ("deeplabv3_mobilenet_v3_large", 64, ASPP),
    ("deeplabv3_mobilenet_v3_large", 320, ASPP[1:]),
    ("deeplabv3_mobilenet_v3_large", 520, ASPP[2:]),
    ("deeplabv3_mobilenet_v3_large", 576, ASPP[2:]),  # 36x36: rate 36 still exact
    ("deeplabv3_mobilenet_v3_large", 584, ()),        # 37x37
    ("deeplabv3_mobilenet_v3_large", 640, ()),
    # ResNet DeepLabV3: output stride 8 (40x40 at 320); backbone dilations 2 and 4 see at least 8x8.
    ("deeplabv3_resnet50", 96, ASPP),
    ("deeplabv3_resnet50", 104, ASPP[1:]),            # 13x13: rate 12 kept
    ("deeplabv3_resnet101", 288, ASPP[2:]),
    ("deeplabv3_resnet101", 296, ()),
    ("deeplabv3_resnet50", 320, ()),
    ("lraspp_mobilenet_v3_large", 64, ()),
    ("fcn_resnet50", 64, ()),
])
def test_zoo_architectures_rewrite_their_exact_layers_only(arch, size, expected):
    with torch.device("meta"):  # shapes only: the rule needs no weights
        model = build_model(arch, num_classes=5).eval()
    _, report = rewrite_dilated_convs(model, size, size)
    assert tuple(layer.name for layer in report.layers) == expected
    calls = trace_convolutions(model, size, size)
    modules = dict(model.named_modules())
    for name, per_call in calls.items():  # independent restatement: rewritten iff map <= rate
        conv = modules[name]
        qualifies = conv.kernel_size[0] > 1 and per_call[0].in_hw[0] <= conv.dilation[0]
        assert qualifies is (name in expected), name


@pytest.mark.parametrize("arch, size", [("deeplabv3_resnet50", 104), ("deeplabv3_mobilenet_v3_large", 64)])
def test_zoo_rewrite_keeps_the_logits_and_counts_flops_like_torch(arch, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5).eval()
    rewritten, report = rewrite_dilated_convs(model, size, size)
    assert report.layers
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ref, out = model(x)["out"], rewritten(x)["out"]
    assert (out - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())
    assert report.flops_before == total_flops(model, size, size)
    assert report.flops_after == total_flops(rewritten, size, size)


# ---- the sample model on real images ---------------------------------------------------------

@pytest.fixture(scope="module")
def sample_model(sample_checkpoint: Path) -> nn.Module:
    return load_weights(str(sample_checkpoint)).build()


@pytest.fixture(scope="module")
def real_images(voc_sample: Path) -> list[np.ndarray]:
    from edgeseg.datasets import open_dataset

    dataset = open_dataset(voc_sample, None).subset(3)
    return [dataset.image(i) for i in range(len(dataset))]


@pytest.mark.parametrize("size, layers", [
    (320, {"classifier.0.convs.2.0": 24, "classifier.0.convs.3.0": 36}),  # 20x20 map
    (520, {"classifier.0.convs.3.0": 36}),  # 33x33 map
])
def test_sample_model_rewrite_matches_the_original_on_real_images(sample_model, real_images, size, layers):
    rewritten, report = rewrite_dilated_convs(sample_model, size, size)
    assert {layer.name: layer.dilation[0] for layer in report.layers} == layers
    check = compare_models(sample_model, rewritten, real_images, size, size, progress=False)
    assert check["max_abs_logit_diff"] < 1e-4
    assert check["argmax_agreement"] == 1.0
    assert report.flops_after < report.flops_before


# ---- the conversion records it ---------------------------------------------------------------

def _dilated_3x3_convs(onnx_path: Path) -> list[int]:
    rates = []
    for node in onnx.load(str(onnx_path)).graph.node:
        if node.op_type == "Conv":
            attrs = {a.name: list(a.ints) for a in node.attribute}
            if attrs.get("kernel_shape") == [3, 3] and attrs.get("dilations", [1, 1])[0] >= 12:
                rates.append(attrs["dilations"][0])
    return sorted(rates)


@pytest.fixture(scope="module")
def conversions(sample_checkpoint: Path, tmp_path_factory) -> dict[bool, dict]:
    from edgeseg.convert.pipeline import ConvertRequest, convert

    out = {}
    for enabled in (True, False):
        folder = tmp_path_factory.mktemp(f"aspp-{enabled}")
        out[enabled] = convert(ConvertRequest(
            target=HOST_CPU, precision="fp32", resolution="320", weights=str(sample_checkpoint), out=folder,
            verify_images=2, progress=False, options={"aspp_rewrite": enabled}))
    return out


@pytest.mark.slow
def test_conversion_exports_the_rewritten_model_and_records_it(conversions):
    manifest = conversions[True]
    record = manifest["conversion"]["aspp_rewrite"]
    assert record["applied"] is True
    assert [layer["name"] for layer in record["layers"]] == ["classifier.0.convs.2.0", "classifier.0.convs.3.0"]
    assert record["flops_after"] < record["flops_before"]
    assert record["check"]["argmax_agreement"] == 1.0 and record["check"]["max_abs_logit_diff"] < 1e-4
    artifact = Path(manifest["manifest_path"][: -len(MANIFEST_SUFFIX)])
    assert _dilated_3x3_convs(artifact) == [12]  # rates 24 and 36 left the graph
    # the artifact is verified against the original model
    assert manifest["verification"]["argmax_agreement"] >= FP32_MIN_AGREEMENT and manifest["verification"]["passed"]
    assert json.loads(Path(manifest["manifest_path"]).read_text())["conversion"]["aspp_rewrite"] == record


@pytest.mark.slow
def test_conversion_without_rewrite_keeps_every_dilated_branch(conversions):
    manifest = conversions[False]
    assert manifest["conversion"]["aspp_rewrite"] == {"applied": False, "reason": "disabled (--no-aspp-rewrite)"}
    assert _dilated_3x3_convs(Path(manifest["manifest_path"][: -len(MANIFEST_SUFFIX)])) == [12, 24, 36]


def test_cli_flag_turns_the_rewrite_off():
    from edgeseg.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["convert", "--out", "x"]).no_aspp_rewrite is False
    assert parser.parse_args(["convert", "--out", "x", "--no-aspp-rewrite"]).no_aspp_rewrite is True
