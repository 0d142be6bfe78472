"""What runs inside XNNPACK: the full-INT8 LiteRT recipe that keeps the whole graph in one delegate
partition, and the partition count of any `.tflite`.

On a phone's CPU (android-cpu) LiteRT hands every op XNNPACK supports to the XNNPACK delegate,
in as few partitions as it can; an op it refuses splits the graph and runs on LiteRT's reference
kernels, with a hand-over at each boundary. ai-edge-quantizer's plain `static_wi8_ai8` recipe
quantizes every HARD_SWISH to int8, and XNNPACK (ai-edge-litert 2.x) delegates HARD_SWISH only in
float: the DeepLabV3-MobileNetV3 graph fell into 21 partitions, the 20 int8 HARD_SWISH ops between
them, and ran *slower* than FP32. Found by reading which ops of the int8 model sit outside every
DELEGATE node of the interpreter's execution plan (`outside_ops` below).

The recipe here keeps HARD_SWISH in float: the quantizer writes DEQUANTIZE -> HARD_SWISH ->
QUANTIZE, all three delegated, so the graph is one partition. It is exact with respect to the
float op (no rewrite of the arithmetic); the int8 tensors on both sides keep their calibrated ranges.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# Ops XNNPACK runs only in float: kept out of int8 by the recipe (see the module docstring).
FLOAT_ONLY_OPS = ("HARD_SWISH",)


def int8_recipe(quantizer) -> None:
    """Load the full-INT8 recipe into an `ai_edge_quantizer.quantizer.Quantizer`: per-channel
    symmetric int8 weights, per-tensor int8 activations, float model input and output (QUANTIZE /
    DEQUANTIZE inside), and `FLOAT_ONLY_OPS` left in float so XNNPACK takes the whole graph."""
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe

    ops = qtyping.TFLOperationName
    no_quantize = algorithm_manager.AlgorithmName.NO_QUANTIZE
    quantizer.load_quantization_recipe(recipe.static_wi8_ai8())
    for name in ("INPUT", "OUTPUT", *FLOAT_ONLY_OPS):
        quantizer.update_quantization_recipe(".*", getattr(ops, name), algorithm_key=no_quantize)


def _interpreter(model: Path | bytes):
    from edgeseg.formats.tflite.runtime.runner import interpreter_module

    module = interpreter_module()
    # The default op resolver applies XNNPACK on the CPU, exactly as the LiteRT backend runs it.
    if isinstance(model, (bytes, bytearray)):
        interpreter = module.Interpreter(model_content=bytes(model), num_threads=1)
    else:
        interpreter = module.Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _ops(interpreter) -> list[dict]:
    return interpreter._get_ops_details()  # noqa: SLF001 - the only view of the delegated plan in Python


def partitions(model: Path | bytes) -> int:
    """How many XNNPACK partitions (DELEGATE nodes) LiteRT's CPU runtime cuts the model into."""
    return sum(op["op_name"] == "DELEGATE" for op in _ops(_interpreter(model)))


def outside_ops(model: Path | bytes) -> Counter:
    """The ops XNNPACK left to LiteRT's own kernels, by name. Each DELEGATE node lists the tensors
    its partition reads and writes; the ops of a partition are those met walking back from its
    outputs to its inputs. Every op met by no partition runs outside the delegate."""
    ops = _ops(_interpreter(model))
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in original for t in op["outputs"]}
    by_index = {op["index"]: op for op in original}
    inside: set[int] = set()
    for delegate in (op for op in ops if op["op_name"] == "DELEGATE"):
        stop = {int(t) for t in delegate["inputs"]}
        pending, seen = [int(t) for t in delegate["outputs"]], set()
        while pending:
            tensor = pending.pop()
            if tensor in seen or tensor in stop or tensor not in producer:
                continue
            seen.add(tensor)
            inside.add(producer[tensor])
            pending.extend(int(t) for t in by_index[producer[tensor]]["inputs"] if t >= 0)
    return Counter(op["op_name"] for op in original if op["index"] not in inside)
