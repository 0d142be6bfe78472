"""Will TensorRT's ONNX parser take this graph? Checked on the workstation, per TensorRT version.

An engine is built on the Jetson, so a node its TensorRT cannot parse would only surface there,
after the copy. This module checks every node against the ONNX-TensorRT operator support
matrices of the versions a target profile lists (`tensorrt_versions`: 8.5/8.6 on JetPack 5 and
6.0, 10.x on JetPack 6.1+) and fails early with the node's name and op.

Sources (onnx/onnx-tensorrt `docs/operators.md` and `docs/Changelog.md`):
- 8.5: operators up to opset 17; HardSwish added (absent in 8.4); UINT8 network I/O (changelog
  8.5: "importing ONNX networks with UINT8 I/O types") and Cast from FP32/FP16 to UINT8; Cast
  targets FP32, FP16, INT32, INT8, BOOL otherwise; ArgMax inputs FP32, FP16; INT64 "cast down"
  to INT32.
- 8.6: + GroupNormalization, LayerNormalization, IsInf; ArgMax also takes INT32; INT8
  initializers feeding DequantizeLinear (pre-quantized weights) are accepted.
- 10.x: opset 9..20; INT64 native; Cast to/from UINT8; Slice takes tensor `axes` from 10.3.
- All: Resize modes nearest/linear; coordinate transforms half_pixel, pytorch_half_pixel,
  tf_half_pixel_for_nn, asymmetric, align_corners; nearest modes floor, ceil,
  round_prefer_floor, round_prefer_ceil; no antialias. Quantize/DequantizeLinear: INT8, zero
  point 0 (symmetric), constant scales; a per-channel (vector) scale only on a weight, along its
  output-channel axis (0 for Conv, 1 for ConvTranspose); activations take one scale per tensor.
  Float weights behind QuantizeLinear -> DequantizeLinear parse on every version (edgeseg's form).
- DLA (Orin, TensorRT 8.6 matrix in NVIDIA/Deep-Learning-Accelerator-SW): which op types run on
  the DLA natively; the rest fall back to the GPU (reported, not an error, with GPU fallback on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from edgeseg.errors import ConfigError

_COMMON_OPS = frozenset([
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "AveragePool",
    "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu",
    "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm",
    "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GRU",
    "HardSigmoid", "HardSwish", "Identity", "If", "ImageScaler", "InstanceNormalization", "IsNaN", "LeakyRelu",
    "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "Max",
    "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero",
    "Not", "OneHot", "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomNormal",
    "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
    "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence", "RNN", "RoiAlign", "Round", "ScaledTanh",
    "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh",
    "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum",
    "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
])

# Op types per TensorRT release line; minor releases of 10.x that added ops are listed separately.
_OPS_8_6 = _COMMON_OPS | {"GroupNormalization", "LayerNormalization", "IsInf"}
_OPS_10_0 = _OPS_8_6 | {"CastLike", "DeformConv", "Gelu", "Hardmax", "Mish"}
_OPS_ADDED_10 = {4: {"BlackmanWindow", "HammingWindow", "HannWindow"}, 5: {"STFT"}, 14: {"Attention"},
                 15: {"RotaryEmbedding", "RMSNormalization", "TensorScatter"}}

RESIZE_MODES = ("nearest", "linear")
RESIZE_COORDINATE_TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                                "align_corners")
RESIZE_NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")

# Orin DLA through TensorRT 8.6: op types that run natively (Constant and Shape are folded at build time).
DLA_NATIVE_OPS = frozenset([
    "Abs", "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv", "ConvTranspose",
    "Equal", "Gemm", "LeakyRelu", "LRN", "MatMul", "Max", "MaxPool", "Mul", "PRelu", "Relu", "Reshape", "Resize",
    "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sub", "Sum", "Tanh", "Transpose", "Upsample",
])

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
    float_to_uint8_cast_only: bool  # Cast to UINT8 only from FP32/FP16 (8.x)

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
            cast_targets=frozenset({f32, f16, i32, i8, u8, b}),
            argmax_inputs=frozenset({f32, f16, i32} if minor == 6 else {f32, f16}),
            slice_tensor_axes=False, int8_weight_initializers=minor >= 6, float_to_uint8_cast_only=True,
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
            slice_tensor_axes=minor >= 3, int8_weight_initializers=True, float_to_uint8_cast_only=False,
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


@dataclass(frozen=True)
class _Graph:
    """What the checks need to know about the graph around a node."""

    consts: dict[str, onnx.TensorProto]
    types: dict[str, int]
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> _Graph:
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in model.graph.node:
            for tensor in node.input:
                consumers.setdefault(tensor, []).append(node)
        return cls(_constant_values(model.graph), _tensor_types(model),
                   {o: n for n in model.graph.node for o in n.output}, consumers)


# The output-channel axis of a weight, per consumer: where a per-channel scale may run.
_WEIGHT_OUTPUT_AXIS = {"Conv": 0, "ConvTranspose": 1}


def _check_resize(node: onnx.NodeProto) -> str | None:
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
    return None


def _weight_dequantize(node: onnx.NodeProto, g: _Graph) -> onnx.NodeProto | None:
    """The DequantizeLinear that hands a constant (a weight) to its consumers: `node` itself when it
    dequantizes a constant, or the DequantizeLinear after a QuantizeLinear of a constant."""
    if node.op_type == "DequantizeLinear":
        source = g.producer.get(node.input[0])
        if node.input[0] in g.consts or (source is not None and source.op_type == "QuantizeLinear"
                                         and source.input[0] in g.consts):
            return node
        return None
    if node.input[0] not in g.consts:
        return None
    readers = g.consumers.get(node.output[0], [])
    return readers[0] if len(readers) == 1 and readers[0].op_type == "DequantizeLinear" else None


def _check_scale(node: onnx.NodeProto, g: _Graph) -> str | None:
    """A per-channel scale only on a weight, along the output-channel axis of what reads it."""
    scale = g.consts[node.input[1]]
    if int(np.prod(scale.dims)) <= 1:
        return None
    dq = _weight_dequantize(node, g)
    if dq is None:
        return "a per-channel scale on an activation (TensorRT takes one scale per activation tensor)"
    axis = _attr(node, "axis", 1)
    for reader in g.consumers.get(dq.output[0], []):
        wanted = _WEIGHT_OUTPUT_AXIS.get(reader.op_type)
        if wanted is None:
            return f"a per-channel scale on a weight read by {reader.op_type} (only Conv and ConvTranspose weights)"
        if axis != wanted:
            return (f"a per-channel scale along axis {axis} of a {reader.op_type} weight "
                    f"(its output channels are axis {wanted})")
    return None


def _check_qdq(node: onnx.NodeProto, p: ParserProfile, g: _Graph) -> str | None:
    zero_point = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if zero_point is not None:
        zp = g.consts.get(zero_point)
        if zp is None:
            return "the zero point must be a constant"
        if zp.data_type != TensorProto.INT8:
            return f"{_TYPE_NAMES.get(zp.data_type)} quantization (TensorRT quantizes to symmetric INT8)"
        if onnx.numpy_helper.to_array(zp).any():
            return "a non-zero zero point (TensorRT quantization is symmetric)"
    if node.input[1] not in g.consts:
        return "the scale must be a constant"
    if node.op_type == "DequantizeLinear" and node.input[0] in g.consts:
        kind = g.consts[node.input[0]].data_type
        if kind != TensorProto.INT8:
            return f"DequantizeLinear of a {_TYPE_NAMES.get(kind)} constant (e.g. an INT32 bias); keep biases in float"
        if not p.int8_weight_initializers:
            return ("pre-quantized INT8 weights; TensorRT before 8.6 takes float weights followed by "
                    "QuantizeLinear -> DequantizeLinear")
    return _check_scale(node, g)


def _check_cast(node: onnx.NodeProto, p: ParserProfile, g: _Graph) -> str | None:
    to = int(_attr(node, "to", TensorProto.FLOAT))
    if to not in p.cast_targets:
        return f"Cast to {_TYPE_NAMES.get(to, to)}"
    source = g.types.get(node.input[0])
    if to == TensorProto.UINT8 and p.float_to_uint8_cast_only and source not in (TensorProto.FLOAT,
                                                                                 TensorProto.FLOAT16):
        kind = _TYPE_NAMES.get(source, "an unknown type") if source is not None else "an unknown type"
        return f"Cast from {kind} to UINT8 (TensorRT 8.x casts to UINT8 only from FP32/FP16)"
    return None


def _check_node(node: onnx.NodeProto, p: ParserProfile, g: _Graph) -> str | None:
    """The reason `node` will not parse on `p`, or None."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return f"custom domain '{node.domain}' needs a TensorRT plugin"
    if op not in p.ops:
        return f"op type {op} is not in the ONNX-TensorRT operator support matrix"
    if op == "Resize":
        return _check_resize(node)
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return _check_qdq(node, p, g)
    if op == "Cast":
        return _check_cast(node, p, g)
    if op == "ArgMax":
        kind = g.types.get(node.input[0])
        if kind is not None and kind not in p.argmax_inputs:
            return f"ArgMax over {_TYPE_NAMES.get(kind)}"
    if (op == "Slice" and len(node.input) > 3 and node.input[3] and not p.slice_tensor_axes
            and node.input[3] not in g.consts):
        return "Slice axes must be an initializer before TensorRT 10.3"
    if op in ("Squeeze", "Unsqueeze") and len(node.input) > 1 and node.input[1] and node.input[1] not in g.consts:
        return f"{op} axes must be a constant"
    return None


def check_model(model: onnx.ModelProto | Path | str, versions: tuple[str, ...] | list[str]) -> SupportReport:
    """Check every node and the graph's inputs/outputs against each TensorRT version's parser."""
    name = str(model) if not isinstance(model, onnx.ModelProto) else model.graph.name or "model"
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    profiles = [parser_profile(v) for v in versions]
    g = _Graph.of(model)
    consts = g.consts
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
            reason = _check_node(node, p, g)
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
