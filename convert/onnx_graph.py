"""Small edits of an ONNX graph that several converters make: declare only the opset domains used, drop
what nothing reads, order nodes topologically (inserted Q/DQ pairs and gates are appended at the end)."""

from __future__ import annotations

import onnx


def prune_opset_imports(model: onnx.ModelProto) -> onnx.ModelProto:
    """Declare only the opset domains the graph's nodes use (plus the default domain): exporters and
    optimizers leave `com.microsoft`, `org.pytorch.aten` and others behind, which parsers then have to
    resolve for nothing."""
    used = {n.domain or "" for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if (o.domain or "") in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def drop_unused(model: onnx.ModelProto) -> None:
    """Remove nodes whose outputs nothing reads (bypassed Q/DQ pairs) and initializers left unread."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(init)


def sorted_topologically(model: onnx.ModelProto) -> onnx.ModelProto:
    """Order the nodes so each comes after the producers of its inputs (ONNX requires it; inserted
    Q/DQ pairs and gates are appended at the end)."""
    graph = model.graph
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("graph has a cycle or a missing input")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
    return model
