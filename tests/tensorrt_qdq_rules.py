"""TensorRT's Q/DQ placement rules, checked by walking an INT8 bundle's graph.

Used by tests/formats/tensorrt/test_tensorrt_bundle.py on the small bundles it converts, and by hand on full-size
ones: `python -m tests.tensorrt_qdq_rules out/*.onnx` prints each bundle's Q/DQ counts and problems.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edgeseg.formats.tensorrt.convert.qdq_placement import residual_inputs


def _attr(node: onnx.NodeProto, name: str, default):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def qdq_counts(model: onnx.ModelProto) -> tuple[int, int]:
    ops = [n.op_type for n in model.graph.node]
    return ops.count("QuantizeLinear"), ops.count("DequantizeLinear")


def placement_problems(model: onnx.ModelProto, kept_in_float: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Every way `model` departs from TensorRT's placement (see formats/tensorrt/convert/qdq_placement.py), one line
    each; `kept_in_float` names the nodes the budget search took out of INT8."""
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    problems: list[str] = []

    def pair_source(tensor: str) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
        dq = producer.get(tensor)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return (q, dq) if q is not None and q.op_type == "QuantizeLinear" else None

    # Every pair: symmetric INT8, positive scales, Q and DQ agree, one pair per tensor.
    seen_sources: set[str] = set()
    for q in (n for n in graph.node if n.op_type == "QuantizeLinear"):
        readers = consumers.get(q.output[0], [])
        if len(readers) != 1 or readers[0].op_type != "DequantizeLinear":
            problems.append(f"{q.name}: its output feeds {[r.op_type for r in readers]}, not one DequantizeLinear")
            continue
        dq = readers[0]
        if q.input[0] in seen_sources:
            problems.append(f"{q.name}: a second Q/DQ pair on tensor {q.input[0]!r} (one per tensor)")
        seen_sources.add(q.input[0])
        scale, zero = inits.get(q.input[1]), inits.get(q.input[2]) if len(q.input) > 2 else None
        if scale is None or zero is None or zero.dtype != np.int8 or zero.any() or not (scale > 0).all():
            problems.append(f"{q.name}: needs a positive constant scale and an INT8 zero point 0")
        if list(dq.input[1:]) != list(q.input[1:]) or _attr(dq, "axis", 1) != _attr(q, "axis", 1):
            problems.append(f"{dq.name}: scale, zero point or axis differs from its QuantizeLinear")
    constants = set(inits)
    for node in graph.node:
        if node.name in kept_in_float:
            continue
        if node.op_type == "Conv":
            data, weight = pair_source(node.input[0]), pair_source(node.input[1])
            if data is None:
                problems.append(f"{node.name}: Conv data input is not quantized")
            if weight is None:
                problems.append(f"{node.name}: Conv weight is not quantized")
                continue
            q, _ = weight
            w, scale = inits.get(q.input[0]), inits.get(q.input[1])
            if w is None or w.dtype != np.float32:
                problems.append(f"{node.name}: weight is not a float initializer behind Q/DQ")
            elif _attr(q, "axis", 1) != 0 or scale is None or scale.shape != (w.shape[0],):
                problems.append(f"{node.name}: weight scales are not per output channel (axis 0)")
        elif node.op_type == "Add":
            wanted = residual_inputs(node, producer, constants)
            for i, tensor in enumerate(node.input):
                quantized = pair_source(tensor) is not None
                if i in wanted and not quantized:
                    problems.append(f"{node.name}: residual input {tensor!r} is not quantized")
                if i not in wanted and quantized:
                    problems.append(f"{node.name}: input {tensor!r} from the fused Conv branch is quantized")
    # Reads of a pair: only Conv data inputs and residual Add skips; a weighted op's output only there.
    for dq in (n for n in graph.node if n.op_type == "DequantizeLinear"):
        for reader in consumers.get(dq.output[0], []):
            if reader.op_type not in ("Conv", "Add"):
                source = producer.get(producer[dq.input[0]].input[0]) if dq.input[0] in producer else None
                what = f"output of {source.op_type} {source.name}" if source is not None else "tensor"
                problems.append(f"{dq.name}: quantized {what} read by {reader.op_type} {reader.name}")
    used = {n.domain or "" for n in graph.node} | {""}
    unused = sorted((o.domain or "") for o in model.opset_import if (o.domain or "") not in used)
    if unused:
        problems.append(f"opset domains the graph does not use: {unused}")
    if any(i.data_type == TensorProto.INT8 and i.name in {n.input[0] for n in graph.node
                                                           if n.op_type == "DequantizeLinear"}
           for i in graph.initializer):
        problems.append("pre-quantized INT8 weights (the TensorRT 8.5 parser reads float weights behind Q/DQ)")
    return problems


def main(paths: list[str]) -> int:
    import onnxslim

    failed = 0
    for path in paths:
        model = onnx.load(path)
        problems = placement_problems(model)
        slim = qdq_counts(onnxslim.slim(onnx.load(path)))
        print(f"{Path(path).name}: Q/DQ {qdq_counts(model)}, after onnxslim {slim}, {len(problems)} problems")
        for line in problems:
            print(f"  {line}")
        failed += bool(problems) or slim != qdq_counts(model)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
