"""Where the Q/DQ nodes go: TensorRT's explicit-quantization placement, one pair per tensor.

TensorRT's guidance (Developer Guide, "Q/DQ Layer-Placement Recommendations"), which NVIDIA's
Model Optimizer (`modelopt.onnx.quantization`, INT8) implements:

- quantize every input of a weighted op: the activation per tensor, the weight per output channel
  (axis 0), symmetric (zero point 0); the bias stays float (TensorRT quantizes it itself);
- do not quantize the outputs of weighted ops: TensorRT fuses the Conv with what follows
  (BatchNorm, activation, the residual Add) and picks the output precision itself;
- quantize the *residual* input of a residual Add (the skip branch), and leave the input that comes
  from the Conv of the same branch in float, so that TensorRT fuses Conv + Add with an INT8 skip
  (modelopt's "non-residual input": the input whose producer is a Conv downstream of the other one);
- one QuantizeLinear -> DequantizeLinear pair per tensor, read by every consumer that quantizes it
  and by no other (a pooling that reads the same tensor keeps reading float): nothing for a
  simplifier to merge, and the same scale wherever TensorRT fuses across a branch.

Ranges come from `convert.qdq.calibrate` (onnxruntime's calibrators); the symmetric INT8 scale of a
tensor is max(|low|, |high|) / 127. Weights stay float behind Q -> DQ (the form the TensorRT 8.5
parser reads; the engine stores them in INT8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTED_OP_TYPES = ("Conv",)
INT8_MAX = 127.0


@dataclass
class Placement:
    """What to quantize: activation tensor -> the (node index, input index) reads to rewire, and the
    Conv weights (initializer names)."""

    activations: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    weights: list[str] = field(default_factory=list)

    def add(self, tensor: str, node_index: int, input_index: int) -> None:
        self.activations.setdefault(tensor, []).append((node_index, input_index))


def _ancestors(tensor: str, producer: dict[str, onnx.NodeProto]) -> set[str]:
    """Every tensor `tensor` is computed from (itself included)."""
    seen, stack = set(), [tensor]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is not None:
            stack.extend(i for i in node.input if i)
    return seen


def residual_inputs(add: onnx.NodeProto, producer: dict[str, onnx.NodeProto], constants: set[str]) -> list[int]:
    """The input indices of a residual Add to quantize: the skip branch, not the Conv output that is
    computed from it (TensorRT fuses that one into the Conv). Empty when the Add is not residual
    (one input is a constant, e.g. a normalization)."""
    if len(add.input) != 2 or any(i in constants or not i for i in add.input):
        return []
    a, b = add.input
    for backbone, skip in ((0, 1), (1, 0)):
        source = producer.get(add.input[backbone])
        if source is not None and source.op_type in WEIGHTED_OP_TYPES and add.input[skip] in _ancestors(
                add.input[backbone], producer):
            return [skip]
    return [0, 1] if a != b else [0]


def tensorrt_placement(model: onnx.ModelProto, skip_nodes: frozenset[str] = frozenset()) -> Placement:
    """The tensors TensorRT's recommendations quantize in `model` (a float, constant-folded graph)."""
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}
    placement = Placement()
    for k, node in enumerate(graph.node):
        if node.name in skip_nodes:
            continue
        if node.op_type in WEIGHTED_OP_TYPES:
            if node.input[0] not in constants:
                placement.add(node.input[0], k, 0)
            if node.input[1] in constants and node.input[1] not in placement.weights:
                placement.weights.append(node.input[1])
        elif node.op_type == "Add":
            for i in residual_inputs(node, producer, constants):
                placement.add(node.input[i], k, i)
    return placement


def _scale(absmax: np.ndarray | float) -> np.ndarray:
    """Symmetric INT8 scale, always positive (an all-zero tensor or channel gets scale 1)."""
    absmax = np.asarray(absmax, np.float32)
    return np.where(absmax > 0, absmax / INT8_MAX, 1.0).astype(np.float32)


def _qdq_nodes(tensor: str, scale: np.ndarray, axis: int | None) -> tuple[list[onnx.NodeProto], list[TensorProto], str]:
    """QuantizeLinear -> DequantizeLinear of `tensor`; returns the nodes, their initializers and the
    DequantizeLinear output."""
    zero = np.zeros(scale.shape, np.int8)
    inits = [numpy_helper.from_array(scale, f"{tensor}_scale"), numpy_helper.from_array(zero, f"{tensor}_zero_point")]
    quantized, dequantized = f"{tensor}_quantized", f"{tensor}_DequantizeLinear_Output"
    nodes = [helper.make_node("QuantizeLinear", [tensor, inits[0].name, inits[1].name], [quantized],
                              name=f"{tensor}_QuantizeLinear"),
             helper.make_node("DequantizeLinear", [quantized, inits[0].name, inits[1].name], [dequantized],
                              name=f"{tensor}_DequantizeLinear")]
    if axis is not None:
        for node in nodes:
            node.attribute.append(helper.make_attribute("axis", axis))
    return nodes, inits, dequantized


def insert_qdq(model: onnx.ModelProto, ranges: dict[str, float], placement: Placement) -> int:
    """Insert the pairs `placement` asks for (activation scales from `ranges`: tensor -> max |x|),
    rewire the quantizing reads, and return how many pairs were added. Raises KeyError naming a
    tensor the calibration did not cover."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    added_nodes, added_inits = [], []
    for tensor, reads in placement.activations.items():
        nodes, inits, dq = _qdq_nodes(tensor, _scale(ranges[tensor]), None)
        added_nodes += nodes
        added_inits += inits
        for node_index, input_index in reads:
            graph.node[node_index].input[input_index] = dq
    for name in placement.weights:
        w = numpy_helper.to_array(weights[name])
        absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        nodes, inits, dq = _qdq_nodes(name, _scale(absmax), 0)
        added_nodes += nodes
        added_inits += inits
        for node in graph.node:
            if node.op_type in WEIGHTED_OP_TYPES and node.input[1] == name:
                node.input[1] = dq
    graph.initializer.extend(added_inits)
    graph.node.extend(added_nodes)
    return len(placement.activations) + len(placement.weights)
