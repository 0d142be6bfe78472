"""Exact split of dilated convolutions by output region, for LiteRT's CPU runtime (XNNPACK).

The ASPP rewrite (convert/aspp_rewrite.py) drops the off-centre taps of a dilated convolution when they
read zero padding at *every* output position. At 640 px the ASPP sees a 40 x 40 map, larger than its
dilations (12, 24, 36), so nothing qualifies, yet most taps still read padding at most positions: a tap
at +36 rows reads a real pixel only for the first 4 of 40 output rows. XNNPACK computes every tap at every
position, so the three dilated 3 x 3 branches (960 -> 256) were about half of the INT8 graph's time at 640.

Along one axis, the taps that read real pixels are the same for every output index between two
breakpoints (where a tap enters or leaves the map), and always a contiguous run of the kernel. So the
output splits into a grid of regions, each computed by a convolution without padding that holds only
its live taps, over the input slice those taps read; the regions are concatenated back (NHWC
CONCATENATION, and SLICE on the NHWC input: no TRANSPOSE, one XNNPACK partition). Each output value is
still one accumulation of the same products, so the split is exact (float rounding aside). The batch
norm and ReLU that follow the convolution move into the regions (the norm folded into their weights, the
ReLU applied to each), as the converter fuses them into a plain convolution: a ReLU left after the
concatenation is an int8 RELU op, which XNNPACK does not take (two partitions).

At 640 the three ASPP branches keep 64 %, 36 % and 16 % of their multiply-adds; at 320 the rate-12
branch (the other two are already 1 x 1 there) keeps 36 %. Only dense convolutions (groups 1) that keep
at most `MAX_KEPT_FRACTION` of their work are split: the dilated depthwise convolutions of the backbone
would be cut into 25 small pieces to save a few percent of little work.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edgeseg.convert.aspp_rewrite import REWRITE_RELATIVE_TOLERANCE, compare_models, conv_flops, trace_convolutions

# Split a convolution only when its regions keep at most this share of its multiply-adds.
MAX_KEPT_FRACTION = 0.75
CHECK_IMAGES = 4  # images the split model is compared on with the unsplit one (PyTorch, FP32)


@dataclass(frozen=True)
class AxisRegion:
    """Output indices [start, stop) of one axis whose live taps are taps [first_tap, last_tap]."""

    start: int
    stop: int
    first_tap: int
    last_tap: int


def axis_regions(size: int, kernel: int, dilation: int, padding: int, stride: int) -> list[AxisRegion] | None:
    """The regions of one axis of a map `size` long, or None where the split does not apply (stride
    other than 1, an even kernel, or padding that does not centre it: then output o is not centred on
    input o)."""
    if stride != 1 or kernel % 2 == 0 or padding != dilation * (kernel - 1) // 2:
        return None
    centre = kernel // 2
    offsets = [(tap - centre) * dilation for tap in range(kernel)]
    # Tap t reads input o + offsets[t]: real for -offsets[t] <= o < size - offsets[t].
    cuts = sorted({0, size, *(min(max(-s, 0), size) for s in offsets), *(min(max(size - s, 0), size) for s in offsets)})
    regions = []
    for start, stop in zip(cuts, cuts[1:]):
        live = [t for t, s in enumerate(offsets) if -s <= start < size - s]
        regions.append(AxisRegion(start, stop, live[0], live[-1]))  # contiguous: offsets increase with t
    return regions


def kept_fraction(rows: list[AxisRegion], cols: list[AxisRegion], kernel: tuple[int, int]) -> float:
    """Multiply-adds of the split over those of the whole convolution (same channels)."""
    def axis(regions: list[AxisRegion]) -> int:
        return sum((r.stop - r.start) * (r.last_tap - r.first_tap + 1) for r in regions)

    total_h, total_w = rows[-1].stop, cols[-1].stop
    return axis(rows) * axis(cols) / (total_h * kernel[0] * total_w * kernel[1])


class RegionSplitConv2d(nn.Module):
    """`conv` (then `bn`, folded in, then a ReLU where `relu`) on an `in_hw` map, computed region by region
    (module docstring)."""

    def __init__(self, conv: nn.Conv2d, in_hw: tuple[int, int], rows: list[AxisRegion], cols: list[AxisRegion],
                 bn: nn.BatchNorm2d | None = None, relu: bool = False) -> None:
        super().__init__()
        self.relu = relu
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=weight.dtype)
        if bn is not None:  # eval-mode batch norm: y * scale + shift, per output channel
            assert bn.running_mean is not None and bn.running_var is not None
            scale = (bn.weight.detach() if bn.weight is not None else 1) / torch.sqrt(bn.running_var + bn.eps)
            shift = (bn.bias.detach() if bn.bias is not None else 0) - bn.running_mean * scale
            weight, bias = weight * scale.view(-1, 1, 1, 1), bias * scale + shift
        self.in_hw = in_hw
        dh, dw = conv.dilation[0], conv.dilation[1]
        ch, cw = conv.kernel_size[0] // 2, conv.kernel_size[1] // 2
        # Per region: the input rows/cols its live taps read, and its convolution.
        self.row_slices = [(r.start + (r.first_tap - ch) * dh, r.stop + (r.last_tap - ch) * dh) for r in rows]
        self.col_slices = [(c.start + (c.first_tap - cw) * dw, c.stop + (c.last_tap - cw) * dw) for c in cols]
        self.parts = nn.ModuleList()
        for r in rows:
            for c in cols:
                part = nn.Conv2d(conv.in_channels, conv.out_channels,
                                 (r.last_tap - r.first_tap + 1, c.last_tap - c.first_tap + 1), dilation=(dh, dw),
                                 groups=conv.groups, bias=True, device=weight.device, dtype=weight.dtype)
                assert part.bias is not None  # bias=True: where the folded batch norm's shift goes
                with torch.no_grad():
                    part.weight.copy_(weight[:, :, r.first_tap:r.last_tap + 1, c.first_tap:c.last_tap + 1])
                    part.bias.copy_(bias)
                self.parts.append(part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = iter(self.parts)
        bands = []
        for r0, r1 in self.row_slices:
            rows = x[:, :, r0:r1]
            bands.append(torch.cat([self._region(next(parts), rows[:, :, :, c0:c1]) for c0, c1 in self.col_slices],
                                   dim=3))
        return torch.cat(bands, dim=2)

    def _region(self, part: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = part(x)
        return torch.relu(y) if self.relu else y


@dataclass(frozen=True)
class SplitLayer:
    name: str
    map_hw: tuple[int, int]
    dilation: tuple[int, int]
    regions: int
    batch_norm_folded: bool
    relu_per_region: bool
    flops_before: int
    flops_after: int


def _epilogues(model: nn.Module) -> dict[str, tuple[nn.Sequential, str | None, str | None]]:
    """Conv name -> (its nn.Sequential, the key of the BatchNorm2d right after it, the key of the ReLU right after
    that or after the conv), for the convolutions inside an nn.Sequential; None where there is none."""
    found = {}
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        keys = list(parent._modules)  # noqa: SLF001 - the Sequential's order, with its keys
        for i, key in enumerate(keys):
            if not isinstance(parent[i], nn.Conv2d):
                continue
            bn = keys[i + 1] if i + 1 < len(keys) and type(parent[i + 1]) is nn.BatchNorm2d else None
            after = i + 1 + (bn is not None)
            relu = keys[after] if after < len(keys) and type(parent[after]) is nn.ReLU else None
            found[f"{parent_name}.{key}" if parent_name else key] = (parent, bn, relu)
    return found


def split_dilated_convs(model: nn.Module, height: int, width: int) -> tuple[nn.Module, list[SplitLayer]]:
    """A copy of `model` (eval mode) with every dense dilated convolution that keeps at most
    `MAX_KEPT_FRACTION` of its work split by region at `height` x `width`; the model itself when none
    qualifies. Valid at this input resolution only."""
    calls = trace_convolutions(model, height, width)
    plan = []
    for name, module in model.named_modules():
        per_call = calls.get(name, [])
        if (type(module) is not nn.Conv2d or len(per_call) != 1 or module.groups != 1 or module.padding_mode != "zeros"
                or isinstance(module.padding, str) or max(module.dilation) == 1):
            continue
        (h, w), = [c.in_hw for c in per_call]
        rows = axis_regions(h, module.kernel_size[0], module.dilation[0], module.padding[0], module.stride[0])
        cols = axis_regions(w, module.kernel_size[1], module.dilation[1], module.padding[1], module.stride[1])
        if rows and cols and kept_fraction(rows, cols, (module.kernel_size[0], module.kernel_size[1])) \
                <= MAX_KEPT_FRACTION:
            plan.append((name, (h, w), rows, cols))
    if not plan:
        return model, []
    model = copy.deepcopy(model).eval()
    epilogues = _epilogues(model)
    layers = []
    for name, in_hw, rows, cols in plan:
        conv = model.get_submodule(name)
        assert isinstance(conv, nn.Conv2d)
        parent, bn_key, relu_key = epilogues.get(name, (None, None, None))
        bn = parent._modules[bn_key] if parent is not None and bn_key else None  # noqa: SLF001
        assert bn is None or isinstance(bn, nn.BatchNorm2d)
        split = RegionSplitConv2d(conv, in_hw, rows, cols, bn=bn, relu=relu_key is not None)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, split)
        for key in (bn_key, relu_key):  # now inside the regions
            if parent is not None and key:
                setattr(parent, key, nn.Identity())
        folded = bn is not None
        call = calls[name][0]
        before = call.flops
        after = sum(conv_flops(conv, (1, conv.out_channels, r.stop - r.start, c.stop - c.start),
                               kernel=(r.last_tap - r.first_tap + 1, c.last_tap - c.first_tap + 1))
                    for r in rows for c in cols)
        layers.append(SplitLayer(name, in_hw, (conv.dilation[0], conv.dilation[1]), len(split.parts), folded,
                                 relu_key is not None, before, after))
    return model, layers


def apply_for_export(model: nn.Module, height: int, width: int, images: list[np.ndarray]) -> tuple[nn.Module, dict]:
    """The model LiteRT's CPU export traces and the manifest record of the split; the split model is
    checked against `model` on `images` (PyTorch, FP32) with the ASPP rewrite's tolerance."""
    from edgeseg.errors import VerificationError

    split, layers = split_dilated_convs(model, height, width)
    record: dict = {"applied": bool(layers), "layers": [asdict(layer) for layer in layers]}
    if not layers:
        return model, record
    record["flops_before"] = sum(layer.flops_before for layer in layers)
    record["flops_after"] = sum(layer.flops_after for layer in layers)
    check = compare_models(model, split, images, height, width, progress=False)
    record["check"] = check
    allowed = REWRITE_RELATIVE_TOLERANCE * max(1.0, check["max_abs_logit"])
    if check["max_abs_logit_diff"] > allowed:
        raise VerificationError(
            f"region split of {', '.join(layer.name for layer in layers)} at {height}x{width}: logits differ from "
            f"the unsplit model by {check['max_abs_logit_diff']:.3g} (allowed {allowed:.3g})")
    return split, record
