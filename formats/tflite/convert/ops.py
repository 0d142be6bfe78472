"""The operators inside a written `.tflite` flatbuffer, and what the Android runtimes can run.

Two checks read the op list straight from the flatbuffer (not from the converter's word):
`require_builtin_only` refuses Flex (Select-TF) and other custom ops, which neither the plain
LiteRT runtime nor the GPU delegate nor NNAPI can execute; `gpu_unsupported` lists the ops the
GPU delegate would hand back to the CPU.

The GPU rules mirror TensorFlow Lite's own `tensorflow/lite/tools/versioning/gpu_compatibility.cc`
(the check the GPU delegate runs when it partitions a graph). The model analyzer in the
ai-edge-litert wheel is built without that check (it calls every model compatible), so the
table is kept here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgeseg.errors import ManifestError, VerificationError

TFLITE_FILE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer
T = TypeVar("T")


@dataclass(frozen=True)
class OpUse:
    """One operator of the model: its name and what the GPU check needs to know about it."""

    name: str  # builtin name ("CONV_2D") or, for custom ops, the custom code ("FlexAddV2")
    custom: bool
    input_types: tuple[str, ...]  # tensor types of the non-optional inputs ("FLOAT32", "UINT8", ...)
    output_types: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()  # the few builtin options a check looks at


def _enum_names(enum_class: type) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items()
            if not name.startswith("_") and isinstance(value, int)}


def required_table(table: T | None, where: str, what: str) -> T:
    """A flatbuffer table every valid model has (the generated accessors return None for a missing one)."""
    if table is None:
        raise ManifestError(f"{where}: a TFLite flatbuffer without its {what}")
    return table


def is_tflite_flatbuffer(data: bytes) -> bool:
    """True when `data` starts like a TFLite flatbuffer (root offset, then the TFL3 identifier)."""
    return len(data) >= 8 and data[4:8] == TFLITE_FILE_IDENTIFIER


def read_ops(model: Path | bytes) -> list[OpUse]:
    """Every operator of every subgraph of a `.tflite` file (or its bytes), in graph order."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    where = str(model) if isinstance(model, (str, Path)) else "model bytes"
    if not is_tflite_flatbuffer(data):
        raise ManifestError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier)")
    builtin_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    root = schema.Model.GetRootAs(data, 0)
    codes = []
    for i in range(root.OperatorCodesLength()):
        code = required_table(root.OperatorCodes(i), where, f"operator code {i}")
        # Old files keep the code in the 8-bit `deprecated_builtin_code`, new ones in `builtin_code`.
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(((code.CustomCode() or b"?").decode(errors="replace"), True))
        else:
            codes.append((builtin_names.get(builtin, f"BUILTIN_{builtin}"), False))
    ops = []

    def types(subgraph: Any, indices: list[int]) -> tuple[str, ...]:
        return tuple(type_names.get(subgraph.Tensors(i).Type(), "?") for i in indices if i >= 0)

    for s in range(root.SubgraphsLength()):
        subgraph = required_table(root.Subgraphs(s), where, f"subgraph {s}")
        for o in range(subgraph.OperatorsLength()):
            op = required_table(subgraph.Operators(o), where, f"operator {o} of subgraph {s}")
            name, custom = codes[op.OpcodeIndex()]
            inputs = [int(op.Inputs(k)) for k in range(op.InputsLength())]
            outputs = [int(op.Outputs(k)) for k in range(op.OutputsLength())]
            ops.append(OpUse(name, custom, types(subgraph, inputs), types(subgraph, outputs),
                             _options(schema, name, op)))
    return ops


def _options(schema, name: str, op) -> tuple[tuple[str, object], ...]:
    table = op.BuiltinOptions()
    if table is None:
        return ()
    if name == "RESIZE_BILINEAR":
        opts = schema.ResizeBilinearOptions()
        opts.Init(table.Bytes, table.Pos)
        return (("align_corners", bool(opts.AlignCorners())), ("half_pixel_centers", bool(opts.HalfPixelCenters())))
    if name == "MIRROR_PAD":
        opts = schema.MirrorPadOptions()
        opts.Init(table.Bytes, table.Pos)
        return (("mode", "REFLECT" if opts.Mode() == schema.MirrorPadMode.REFLECT else "SYMMETRIC"),)
    return ()


def op_counts(ops: list[OpUse]) -> dict[str, int]:
    """Operator name -> how many times it occurs, most frequent first (for the manifest)."""
    return dict(Counter(op.name for op in ops).most_common())


def require_builtin_only(ops: list[OpUse], artifact: str) -> None:
    """Raise one line naming the ops when the model holds any Flex (Select-TF) or other custom op."""
    custom = sorted({op.name for op in ops if op.custom})
    if not custom:
        return
    flex = [name for name in custom if name.startswith("Flex")]
    kind = "Flex (Select-TF) ops" if flex else "custom ops"
    raise VerificationError(
        f"{artifact}: contains {kind} {', '.join(custom)}; they do not run in the plain LiteRT runtime, "
        "the GPU delegate or NNAPI (only builtin ops are allowed)"
    )


# Builtin ops the GPU delegate takes without further conditions (gpu_compatibility.cc, the
# `CheckGpuDelegateCompatibility` switch); the conditional ones are checked in `_gpu_reason`.
GPU_SUPPORTED_OPS = frozenset([
    "ABS", "ADD", "ADD_N", "ATAN2", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CEIL", "CONCATENATION", "CONV_2D", "COS",
    "CUMSUM", "DENSIFY", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "DIV", "DYNAMIC_UPDATE_SLICE", "ELU",
    "EMBEDDING_LOOKUP", "EQUAL", "EXP", "FLOOR", "FLOOR_DIV", "FLOOR_MOD", "FULLY_CONNECTED", "GATHER", "GELU",
    "GREATER", "GREATER_EQUAL", "HARD_SWISH", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGISTIC",
    "LSTM", "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MUL", "NEG", "NOT_EQUAL", "ONE_HOT", "PACK", "PAD",
    "PADV2", "POW", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SELECT", "SELECT_V2", "SIGN", "SIN", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "STABLEHLO_CLAMP",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TILE", "TRANSPOSE", "TRANSPOSE_CONV",
])
GPU_SUPPORTED_CUSTOM_OPS = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D",
                                      "Resampler"})
_GPU_CAST_PAIRS = frozenset(
    [("BOOL", "FLOAT16"), ("BOOL", "FLOAT32"), ("FLOAT16", "BOOL"), ("FLOAT32", "BOOL")]
    + [(a, b) for a in ("FLOAT32", "INT32") for b in ("FLOAT32", "INT32")]
)


def _gpu_reason(op: OpUse) -> str | None:
    """Why the GPU delegate would not take `op`, or None when it would."""
    if op.custom:
        return None if op.name in GPU_SUPPORTED_CUSTOM_OPS else "custom op"
    if op.name == "CAST":
        pair = (op.input_types[0], op.output_types[0]) if op.input_types and op.output_types else ("?", "?")
        return None if pair in _GPU_CAST_PAIRS else f"cast {pair[0].lower()} -> {pair[1].lower()}"
    if op.name == "DEQUANTIZE":
        return "int16 input" if op.input_types[:1] == ("INT16",) else None
    if op.name == "RESIZE_BILINEAR":
        opts = dict(op.options)
        both = opts.get("align_corners") and opts.get("half_pixel_centers")
        return "align_corners with half_pixel_centers" if both else None
    if op.name == "MIRROR_PAD":
        return None if dict(op.options).get("mode") == "REFLECT" else "symmetric mode"
    return None if op.name in GPU_SUPPORTED_OPS else "not supported"


def gpu_unsupported(ops: list[OpUse]) -> list[dict]:
    """The ops the GPU delegate leaves to the CPU: [{"op", "count", "reason"}], in graph order."""
    found: dict[tuple[str, str], int] = {}
    for op in ops:
        reason = _gpu_reason(op)
        if reason is not None:
            found[(op.name, reason)] = found.get((op.name, reason), 0) + 1
    return [{"op": name, "count": count, "reason": reason} for (name, reason), count in found.items()]


def describe_gpu_unsupported(unsupported: list[dict]) -> str:
    """One console line for `gpu_unsupported`'s result."""
    if not unsupported:
        return "GPU delegate: every op is supported"
    parts = [f"{u['op']} x{u['count']} ({u['reason']})" for u in unsupported]
    return "GPU delegate: these ops fall back to the CPU: " + ", ".join(parts)
