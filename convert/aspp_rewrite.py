"""Exact rewrite of dilated convolutions whose off-centre taps only ever read zero padding.

DeepLabV3's ASPP has 3x3 convolutions with dilation 12, 24 and 36 (padding equal to the
dilation). At edge resolutions the feature map they see is small (20x20 at a 320 input with
output stride 16): when the map is no larger than the dilation along an axis, every off-centre
tap on that axis falls in the zero padding for every output position, so the convolution is
exactly one with kernel size 1 on that axis, holding the centre weights. Replacing it removes
8/9 of that layer's multiply-adds on runtimes that compute padded taps (XNNPACK's float kernels,
measured: 0.59x the CPU time at 320; see docs/aspp-rewrite.md).

The rule is checked per convolution, per axis, on the map size the convolution actually sees at
the export resolution (traced with a dummy input), and only exact cases are rewritten: a
zero-padded `nn.Conv2d` with an odd kernel whose padding centres it, and whose off-centre taps
on that axis read padding at every output position. It applies to every convolution of every zoo
model; in practice only the ASPP branches qualify (the dilated backbone convolutions see maps
larger than their dilation at every supported resolution).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgeseg.metrics import Agreement


@dataclass(frozen=True)
class ConvCall:
    """One convolution as traced at the export resolution."""

    name: str
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    flops: int  # 2 * multiply-adds (bias adds not counted, as torch.utils.flop_counter does)


@dataclass(frozen=True)
class RewrittenLayer:
    name: str
    map_hw: tuple[int, int]  # the input feature map the convolution sees
    dilation: tuple[int, int]
    kernel_before: tuple[int, int]
    kernel_after: tuple[int, int]
    flops_before: int
    flops_after: int


@dataclass
class RewriteReport:
    """What the rewrite did at one input resolution."""

    height: int
    width: int
    layers: list[RewrittenLayer] = field(default_factory=list)
    flops_before: int = 0  # convolution FLOPs of the whole model (2 * multiply-adds)
    flops_after: int = 0

    def to_dict(self) -> dict:
        return {
            "input_hw": [self.height, self.width],
            "layers": [{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(layer).items()}
                       for layer in self.layers],
            "flops_before": self.flops_before,
            "flops_after": self.flops_after,
            "gflops_before": round(self.flops_before / 1e9, 3),
            "gflops_after": round(self.flops_after / 1e9, 3),
            "flops_ratio": round(self.flops_after / self.flops_before, 4) if self.flops_before else None,
        }


def conv_flops(conv: nn.Conv2d, out_shape: tuple[int, ...], kernel: tuple[int, int] | None = None) -> int:
    """FLOPs (2 * multiply-adds) of `conv` producing `out_shape`; grouped/depthwise aware."""
    kh, kw = kernel or conv.kernel_size
    batch, c_out, h_out, w_out = out_shape
    return 2 * batch * c_out * h_out * w_out * (conv.in_channels // conv.groups) * kh * kw


@torch.no_grad()
def trace_convolutions(model: nn.Module, height: int, width: int) -> dict[str, list[ConvCall]]:
    """Every `nn.Conv2d` call of one forward pass at `height` x `width`, by module name.

    A module called more than once (shared weights) has one entry per call; a module not on the
    forward path (e.g. a dropped auxiliary head) has none.
    """
    calls: dict[str, list[ConvCall]] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            calls.setdefault(name, []).append(ConvCall(
                name, (int(x.shape[-2]), int(x.shape[-1])), (int(output.shape[-2]), int(output.shape[-1])),
                conv_flops(module, tuple(output.shape))))
        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    # Eval mode: batch norm after the ASPP's 1x1 global pooling cannot run in training mode on one image.
    model.eval()
    try:
        first = next(model.parameters())
        model(torch.zeros(1, 3, height, width, dtype=first.dtype, device=first.device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return calls


def axis_reduces_to_centre(size: int, kernel: int, dilation: int, padding: int, stride: int) -> bool:
    """Whether, on a map of `size` along one axis, every off-centre tap reads zero padding at every
    output position, so the axis is exactly a kernel-1 axis holding the centre weights.

    Requires an odd kernel centred by its padding (padding = dilation * (kernel - 1) / 2): then the
    centre tap of output o reads input o * stride, and the output length equals a kernel-1,
    padding-0 convolution's.
    """
    if kernel == 1 or kernel % 2 == 0 or padding != dilation * (kernel - 1) // 2:
        return False
    outputs = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    origins = np.arange(outputs) * stride - padding  # input index read by tap 0 for each output
    centre = kernel // 2
    for tap in range(kernel):
        if tap == centre:
            continue
        reads = origins + tap * dilation
        if ((reads >= 0) & (reads < size)).any():
            return False
    return True


def exact_axes(conv: nn.Conv2d, in_hw: tuple[int, int]) -> tuple[bool, bool]:
    """(height, width): which axes of `conv` reduce to their centre tap on an `in_hw` map."""
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False, False  # subclasses may override forward; other padding modes read real pixels
    height, width = (
        axis_reduces_to_centre(in_hw[a], conv.kernel_size[a], conv.dilation[a], conv.padding[a], conv.stride[a])
        for a in (0, 1)
    )
    return height, width


def _pair(values: Sequence[int]) -> tuple[int, int]:
    """(height, width) of a Conv2d's per-axis setting."""
    return values[0], values[1]


def reduced_conv(conv: nn.Conv2d, reduce_h: bool, reduce_w: bool) -> nn.Conv2d:
    """The convolution equal to `conv` with the reduced axes cut to their centre tap (kernel 1,
    dilation 1, padding 0 there; the other axis kept as it was)."""
    assert not isinstance(conv.padding, str), "exact_axes() keeps string padding ('same', 'valid') as it is"
    kernel, dilation, padding = list(conv.kernel_size), list(conv.dilation), list(conv.padding)
    rows, cols = slice(None), slice(None)
    if reduce_h:
        c = conv.kernel_size[0] // 2
        rows, kernel[0], dilation[0], padding[0] = slice(c, c + 1), 1, 1, 0
    if reduce_w:
        c = conv.kernel_size[1] // 2
        cols, kernel[1], dilation[1], padding[1] = slice(c, c + 1), 1, 1, 0
    weight = conv.weight
    new = nn.Conv2d(conv.in_channels, conv.out_channels, _pair(kernel), stride=_pair(conv.stride),
                    padding=_pair(padding), dilation=_pair(dilation), groups=conv.groups, bias=conv.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight[:, :, rows, cols])
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    new.weight.requires_grad_(weight.requires_grad)
    new.train(conv.training)
    return new


def _convolutions(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}


def rewrite_dilated_convs(model: nn.Module, height: int, width: int, *, inplace: bool = False,
                         ) -> tuple[nn.Module, RewriteReport]:
    """Replace every convolution whose off-centre taps only read padding at `height` x `width`.

    Returns the rewritten model (a copy unless `inplace`; the original itself when nothing
    qualifies) and a report of the layers rewritten and the model's convolution FLOPs before and
    after. The rewritten model is only valid at this input resolution (a larger input would let
    the dropped taps read real pixels).
    """
    calls = trace_convolutions(model, height, width)
    flops_before = sum(c.flops for per in calls.values() for c in per)
    report = RewriteReport(height, width, flops_before=flops_before, flops_after=flops_before)
    convs = _convolutions(model)
    plan = []
    for name, per_call in calls.items():
        conv = convs[name]
        axes = [exact_axes(conv, c.in_hw) for c in per_call]
        # A module called at several sizes must qualify at every one of them.
        reduce_h, reduce_w = all(a[0] for a in axes), all(a[1] for a in axes)
        if reduce_h or reduce_w:
            plan.append((name, reduce_h, reduce_w))
    if not plan:
        return model, report
    if not inplace:
        model = copy.deepcopy(model)
        convs = _convolutions(model)
    for name, reduce_h, reduce_w in plan:
        conv = convs[name]
        new = reduced_conv(conv, reduce_h, reduce_w)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
        before = sum(c.flops for c in calls[name])
        after = sum(conv_flops(new, (1, conv.out_channels, *c.out_hw)) for c in calls[name])
        first = calls[name][0]
        report.layers.append(RewrittenLayer(name, first.in_hw, _pair(conv.dilation), _pair(conv.kernel_size),
                                            _pair(new.kernel_size), before, after))
        report.flops_after += after - before
    return model, report


@torch.no_grad()
def compare_models(original: nn.Module, rewritten: nn.Module, images: list[np.ndarray], height: int, width: int,
                   *, progress: bool = True) -> dict:
    """Max abs logit difference and argmax agreement of `rewritten` against `original` (PyTorch,
    FP32) on `images`, preprocessed as the verification reference is."""
    from edgeseg.convert.verify import reference_logits

    max_diff, max_logit, agreement = 0.0, 0.0, Agreement()
    for image in tqdm(images, desc="rewrite vs original", disable=not progress, unit="img"):
        ref = reference_logits(original, image, height, width)
        out = reference_logits(rewritten, image, height, width)
        max_diff = max(max_diff, float(np.abs(out - ref).max()))
        max_logit = max(max_logit, float(np.abs(ref).max()))
        agreement.update(out.argmax(1), ref.argmax(1))
    return {"reference": "original PyTorch FP32 model", "images": len(images),
            "max_abs_logit_diff": float(f"{max_diff:.6g}"), "max_abs_logit": float(f"{max_logit:.6g}"),
            "argmax_agreement": agreement.rounded(6)}


# The rewrite is exact in real arithmetic; in float32 the two models sum the same products in a
# different order, so their logits differ by rounding only (about 1e-7 of the logits' magnitude).
# A wrong rewrite moves logits by amounts of the order of the logits themselves.
REWRITE_RELATIVE_TOLERANCE = 1e-5


def apply_for_export(model: nn.Module, height: int, width: int, *, enabled: bool, images: list[np.ndarray],
                     progress: bool = True) -> tuple[nn.Module, dict]:
    """The model to export at `height` x `width` and the manifest record of the rewrite.

    When enabled and some layer qualifies, the rewritten copy is checked against `model` on
    `images` (PyTorch, FP32); a difference beyond float rounding raises VerificationError (then
    convert with --no-aspp-rewrite and report the model).
    """
    from edgeseg.errors import VerificationError

    if not enabled:
        return model, {"applied": False, "reason": "disabled (--no-aspp-rewrite)"}
    rewritten, report = rewrite_dilated_convs(model, height, width)
    record = {"applied": bool(report.layers), **report.to_dict()}
    if not report.layers:
        record["reason"] = f"no convolution's off-centre taps read only padding at {height}x{width}"
        return model, record
    check = compare_models(model, rewritten, images, height, width, progress=progress)
    record["check"] = check
    allowed = REWRITE_RELATIVE_TOLERANCE * max(1.0, check["max_abs_logit"])
    if check["max_abs_logit_diff"] > allowed:
        names = ", ".join(layer.name for layer in report.layers)
        raise VerificationError(
            f"ASPP rewrite of {names} at {height}x{width}: logits differ from the original model by "
            f"{check['max_abs_logit_diff']:.3g} (allowed {allowed:.3g}); convert with --no-aspp-rewrite")
    return rewritten, record
