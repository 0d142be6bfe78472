"""Will TensorRT's ONNX parser take this graph? Checked on the workstation, per TensorRT version.

An engine is built on the Jetson, so a node its TensorRT cannot parse would only surface there,
after the copy. This module checks every node against the ONNX-TensorRT operator support
matrices of the versions a target profile lists (`tensorrt_versions`: 8.5/8.6 on JetPack 5 and
6.0, 10.x on JetPack 6.1+) and fails early with the node's name and op.

Sources (onnx/onnx-tensorrt `docs/operators.md` and `docs/Changelog.md`):
- 8.5: operators up to opset 17; HardSwish added (absent in 8.4); UINT8 only as network I/O
  (changelog 8.5: "importing ONNX networks with UINT8 I/O types"); Cast types FP32, FP16,
  INT32, INT8, BOOL; ArgMax inputs FP32, FP16; INT64 "cast down" to INT32.
- 8.6: + GroupNormalization, LayerNormalization, IsInf; ArgMax also takes INT32.
- 10.x: opset 9..20; INT64 native; Cast to/from UINT8; Slice takes tensor `axes` from 10.3.
- All: Resize modes nearest/linear; coordinate transforms half_pixel, pytorch_half_pixel,
  tf_half_pixel_for_nn, asymmetric, align_corners; nearest modes floor, ceil,
  round_prefer_floor, round_prefer_ceil; no antialias. Quantize/DequantizeLinear: zero point 0
  (symmetric), INT8.
- Q/DQ weights: before TensorRT 10 the parser takes quantized weights as float initializers
  followed by QuantizeLinear -> DequantizeLinear (what onnxruntime's `AddQDQPairToWeight` writes
  for TensorRT); pre-quantized INT8 initializers feeding DequantizeLinear are a 10.x feature.
- DLA (Orin, TensorRT 8.6 matrix in NVIDIA/Deep-Learning-Accelerator-SW): which op types run on
  the DLA natively; the rest fall back to the GPU (reported, not an error, with GPU fallback on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import TensorProto

from edgeseg.errors import ConfigError

_COMMON_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish
Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression
NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign
Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# Op types per TensorRT release line; minor releases of 10.x that added ops are listed separately.
_OPS_8_6 = _COMMON_OPS | {"GroupNormalization", "LayerNormalization", "IsInf"}
_OPS_10_0 = _OPS_8_6 | {"CastLike", "DeformConv", "Gelu", "Hardmax", "Mish"}
_OPS_ADDED_10 = {4: {"BlackmanWindow", "HammingWindow", "HannWindow"}, 5: {"STFT"}, 14: {"Attention"},
                 15: {"RotaryEmbedding", "RMSNormalization", "TensorScatter"}}

RESIZE_MODES = ("nearest", "linear")
RESIZE_COORDINATE_TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
RESIZE_NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")

# Orin DLA through TensorRT 8.6: op types that run natively (Constant and Shape are folded at build time).
DLA_NATIVE_OPS = frozenset("""
Abs Add AveragePool BatchNormalization Clip Concat Constant Conv ConvTranspose Equal Gemm LeakyRelu LRN
MatMul Max MaxPool Mul PRelu Relu Reshape Resize Shape Sigmoid Slice Softmax Split Sub Sum Tanh Transpose
Upsample
""".split())

_TYPE_NAMES = {v: k for k, v in TensorProto.DataType.items()}


@dataclass(frozen=True)
class ParserProfile:
    """What one TensorRT version's ONNX parser accepts (the parts an edgeseg graph can touch)."""

    version: str
    major: int
    minor: int
    ops: frozenset[str]
    max_opset: int
    io_types: frozenset[int]
    cast_targets: frozenset[int]
    argmax_inputs: frozenset[int]
    slice_tensor_axes: bool
    int8_weight_initializers: bool  # pre-quantized INT8 weights feeding DequantizeLinear

    @property
    def name(self) -> str:
        return f"TensorRT {self.version}"


def parser_profile(version: str) -> ParserProfile:
    """The parser rules for a TensorRT version string from a target profile ("8.6", "10.3")."""
    try:
        major, minor = (int(p) for p in str(version).split(".")[:2])
    except ValueError:
        raise ConfigError(f"TensorRT version '{version}': expected MAJOR.MINOR, e.g. 8.6 or 10.3") from None
    f32, f16, i32, i64, i8, u8, b = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT32, TensorProto.INT64,
                                      TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL)
    if major == 8 and minor in (5, 6):
        return ParserProfile(
            version=f"{major}.{minor}", major=major, minor=minor, ops=_OPS_8_6 if minor == 6 else _COMMON_OPS,
            max_opset=17, io_types=frozenset({f32, f16, i32, i8, u8, b}),
            cast_targets=frozenset({f32, f16, i32, i8, b}),
            argmax_inputs=frozenset({f32, f16, i32} if minor == 6 else {f32, f16}),
            slice_tensor_axes=False, int8_weight_initializers=False,
        )
    if major == 10:
        ops = set(_OPS_10_0)
        for added_in, names in _OPS_ADDED_10.items():
            if minor >= added_in:
                ops |= names
        return ParserProfile(
            version=f"{major}.{minor}", major=major, minor=minor, ops=frozenset(ops), max_opset=20,
            io_types=frozenset({f32, f16, i32, i64, i8, u8, b}),
            cast_targets=frozenset({f32, f16, i32, i64, u8, b}),
            argmax_inputs=frozenset({f32, f16, i32, i64}),
            slice_tensor_axes=minor >= 3, int8_weight_initializers=True,
        )
    raise ConfigError(f"TensorRT {version}: edgeseg has no ONNX parser table for it (known: 8.5, 8.6, 10.x)")


@dataclass(frozen=True)
class Problem:
    node: str
    op: str
    version: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op}) will not parse on TensorRT {self.version}: {self.reason}"


@dataclass
class SupportReport:
    versions: list[str]
    nodes: int
    op_types: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    dla_gpu_fallback_ops: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"tensorrt_versions": self.versions, "nodes": self.nodes, "op_types": self.op_types,
                "passed": self.ok, "problems": [str(p) for p in self.problems],
                "dla_gpu_fallback_op_types": self.dla_gpu_fallback_ops}


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant_values(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node outputs: the tensors the parser sees as build-time constants."""
    values = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            tensor = _attr(node, "value", None)
            if isinstance(tensor, onnx.TensorProto):
                values[node.output[0]] = tensor
    return values


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = {}
    g = inferred.graph
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types


def _check_node(node: onnx.NodeProto, p: ParserProfile, consts: dict, types: dict) -> str | None:
    """The reason `node` will not parse on `p`, or None."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return f"custom domain '{node.domain}' needs a TensorRT plugin"
    if op not in p.ops:
        return f"op type {op} is not in the ONNX-TensorRT operator support matrix"
    if op == "Resize":
        mode = _attr(node, "mode", "nearest")
        if mode not in RESIZE_MODES:
            return f"Resize mode '{mode}' (supported: {', '.join(RESIZE_MODES)})"
        transform = _attr(node, "coordinate_transformation_mode", "half_pixel")
        if transform not in RESIZE_COORDINATE_TRANSFORMS:
            return f"coordinate_transformation_mode '{transform}' (supported: {', '.join(RESIZE_COORDINATE_TRANSFORMS)})"
        if mode == "nearest" and _attr(node, "nearest_mode", "round_prefer_floor") not in RESIZE_NEAREST_MODES:
            return f"nearest_mode '{_attr(node, 'nearest_mode', '')}'"
        if _attr(node, "antialias", 0):
            return "antialiased Resize"
    if op in ("QuantizeLinear", "DequantizeLinear"):
        zero_point = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if zero_point is not None:
            zp = consts.get(zero_point)
            if zp is None:
                return "the zero point must be a constant"
            if zp.data_type != TensorProto.INT8:
                return f"{_TYPE_NAMES.get(zp.data_type)} quantization (TensorRT quantizes to symmetric INT8)"
            if onnx.numpy_helper.to_array(zp).any():
                return "a non-zero zero point (TensorRT quantization is symmetric)"
        if node.input[1] not in consts:
            return "the scale must be a constant"
        if op == "DequantizeLinear":
            source = node.input[0]
            if source in consts:
                kind = consts[source].data_type
                if kind != TensorProto.INT8:
                    return f"DequantizeLinear of a {_TYPE_NAMES.get(kind)} constant (e.g. an INT32 bias); keep biases in float"
                if not p.int8_weight_initializers:
                    return ("pre-quantized INT8 weights; TensorRT before 10 takes float weights followed by "
                            "QuantizeLinear -> DequantizeLinear")
    if op == "Cast":
        to = _attr(node, "to", TensorProto.FLOAT)
        if to not in p.cast_targets:
            return f"Cast to {_TYPE_NAMES.get(to, to)}"
    if op == "ArgMax":
        kind = types.get(node.input[0])
        if kind is not None and kind not in p.argmax_inputs:
            return f"ArgMax over {_TYPE_NAMES.get(kind)}"
    if op == "Slice" and len(node.input) > 3 and node.input[3] and not p.slice_tensor_axes and node.input[3] not in consts:
        return "Slice axes must be an initializer before TensorRT 10.3"
    if op in ("Squeeze", "Unsqueeze") and len(node.input) > 1 and node.input[1] and node.input[1] not in consts:
        return f"{op} axes must be a constant"
    return None


def check_model(model: onnx.ModelProto | Path | str, versions: tuple[str, ...] | list[str]) -> SupportReport:
    """Check every node and the graph's inputs/outputs against each TensorRT version's parser."""
    name = str(model) if not isinstance(model, onnx.ModelProto) else model.graph.name or "model"
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    profiles = [parser_profile(v) for v in versions]
    consts = _constant_values(model.graph)
    types = _tensor_types(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    op_types: dict[str, int] = {}
    for node in model.graph.node:
        op_types[node.op_type] = op_types.get(node.op_type, 0) + 1
    report = SupportReport(versions=[p.version for p in profiles], nodes=len(model.graph.node),
                           op_types=dict(sorted(op_types.items())))
    for p in profiles:
        if opset > p.max_opset:
            report.problems.append(Problem(name, f"opset {opset}", p.version, f"parses opsets up to {p.max_opset}"))
        for io in [*model.graph.input, *model.graph.output]:
            if io.name in consts:
                continue
            kind = io.type.tensor_type.elem_type
            if kind not in p.io_types:
                hint = " (8.x casts INT64 I/O down to INT32: export INT32)" if kind == TensorProto.INT64 else ""
                report.problems.append(Problem(io.name, f"graph I/O {_TYPE_NAMES.get(kind)}", p.version,
                                               f"unsupported network I/O type{hint}"))
        for node in model.graph.node:
            reason = _check_node(node, p, consts, types)
            if reason:
                report.problems.append(Problem(node.name or node.output[0], node.op_type, p.version, reason))
    report.dla_gpu_fallback_ops = sorted(set(op_types) - DLA_NATIVE_OPS - {"QuantizeLinear", "DequantizeLinear"})
    return report


def require_supported(model: onnx.ModelProto | Path | str, versions, *, artifact: str) -> SupportReport:
    """`check_model`, raising one ConfigError line (first problem, and how many more) when any node fails."""
    report = check_model(model, versions)
    if not report.ok:
        first = report.problems[0]
        more = f" (and {len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""
        raise ConfigError(f"{artifact}: {first}{more}")
    return report
