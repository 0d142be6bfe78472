"""How much work a model is: GFLOPs counted from the PyTorch model, the ASPP rewrite's record or a
TFLite graph, and the cost columns of a row (size, achieved GFLOP/s, fraction of the machine's peak)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.formats import all_formats
from edgeseg.manifest import Manifest

if TYPE_CHECKING:  # torch is imported where it is used: `edgeseg --help` must not load it
    import torch

    from edgeseg.benchmarks.references import Reference


def model_gflops(model: torch.nn.Module, height: int, width: int, *, channels: int = 3) -> float:
    """GFLOPs of one forward pass at HxW: 2 x multiply-accumulates of every convolution and matrix
    product, counted by torch's FlopCounterMode from the real weight shapes (a depthwise 3x3 costs
    9 MACs per output pixel, not 9 x channels). Elementwise ops, pooling and resizes are not counted.
    torchvision's tables quote MACs as "GFLOPS": theirs x 2 = ours.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels, height, width))
    return counter.get_total_flops() / 1e9

def artifact_gflops(manifest: Manifest, reference: Reference | None) -> tuple[float | None, str | None]:
    """GFLOPs of the model the artifact runs, and where the number comes from.

    The ASPP rewrite's own count when the conversion applied it (the artifact then does less work
    than the original model); else FlopCounterMode on the PyTorch model; else (no torch, as on a
    device) the convolution count the conversion recorded; else, for a TFLite file with no PyTorch
    model (a peer), the count read from its graph.
    """
    record = (manifest.data.get("conversion") or {}).get("aspp_rewrite") or {}
    if record.get("applied") and record.get("flops_after"):
        return record["flops_after"] / 1e9, "ASPP rewrite's count of the exported model (manifest)"
    if reference is not None:
        return reference.gflops, "FlopCounterMode on the PyTorch model"
    if record.get("flops_after"):  # the rewrite found nothing to do, but counted the convolutions
        return record["flops_after"] / 1e9, "convolution count recorded at conversion (manifest)"
    if manifest.artifact_path.suffix == all_formats()["tflite"].suffix:
        try:
            return tflite_gflops(manifest.artifact_path), "convolutions and fully-connected layers of the TFLite graph"
        except (ImportError, ValueError) as exc:
            return None, f"not counted ({exc})"
    return None, None


def tflite_gflops(path: Path) -> float:
    """2 x multiply-accumulates of the CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV and FULLY_CONNECTED
    operators of a `.tflite` file, from its tensor shapes (weights [out, kh, kw, in] for convolutions,
    [1, kh, kw, channels] for depthwise: one kh x kw window per output value)."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeseg.formats.tflite.convert.ops import required_table

    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"{path}: not a TFLite flatbuffer")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    model = schema.Model.GetRootAs(data, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = required_table(model.OperatorCodes(i), str(path), f"operator code {i}")
        codes.append(names.get(max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode())), "?"))
    macs = 0
    for s in range(model.SubgraphsLength()):
        graph = required_table(model.Subgraphs(s), str(path), f"subgraph {s}")
        shape = partial(_tensor_shape, graph)
        for o in range(graph.OperatorsLength()):
            op = required_table(graph.Operators(o), str(path), f"operator {o} of subgraph {s}")
            name = codes[op.OpcodeIndex()]
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                weights, out = shape(op.Inputs(1)), shape(op.Outputs(0))
                per_output = {"CONV_2D": int(np.prod(weights[1:])), "DEPTHWISE_CONV_2D": int(np.prod(weights[1:3])),
                              "FULLY_CONNECTED": weights[-1]}[name]
                macs += int(np.prod(out)) * per_output
            elif name == "TRANSPOSE_CONV":  # inputs: output shape, weights [out, kh, kw, in], input
                weights, inp = shape(op.Inputs(1)), shape(op.Inputs(2))
                macs += int(np.prod(inp)) * int(np.prod(weights[:3]))
    return 2 * macs / 1e9

def _tensor_shape(graph: Any, index: int) -> list[int]:
    return [int(v) for v in graph.Tensors(index).ShapeAsNumpy()]


# Backends whose rows run on a GPU: the measured matmul peak is this machine's CPU's, so it is no roof for them.
GPU_BACKENDS = frozenset({"tensorrt"})


def roofline_note(row: dict, peak: dict[str, Any]) -> str | None:
    """Why a row has no roofline fraction (None when it has one)."""
    if row.get("backend") in GPU_BACKENDS:
        return "runs on the GPU; the measured matmul peak is this machine's CPU's, so it is no roof for this row"
    if peak.get("gflops_per_s") is None:
        return f"no matmul peak: {peak.get('reason')}"
    return None


def cost_entry(row: dict, gflops: float | None, source: str | None, peak: dict[str, Any]) -> dict[str, Any]:
    """Size, GFLOPs at this resolution, achieved GFLOP/s (at median inference time) and its fraction of
    the machine's measured matmul `peak` (the roofline fraction; empty, with the reason, where there is
    no peak or the peak is not this row's processor's)."""
    out: dict[str, Any] = {"size_mb": row["artifact"]["size_mb"], "gflops": None, "gflops_source": source,
                           "achieved_gflops_per_s": None, "roofline_fraction": None,
                           "matmul_peak_gflops_per_s": peak.get("gflops_per_s")}
    if gflops is not None:
        achieved = gflops / (row["latency"]["inference_ms"]["p50"] / 1000)
        out.update(gflops=round(gflops, 3), achieved_gflops_per_s=round(achieved, 2))
    return cost_on_final_peak(out, row, peak)


def cost_on_final_peak(cost: dict[str, Any], row: dict, peak: dict[str, Any]) -> dict[str, Any]:
    """A row's cost entry with its roofline fraction (re)stated on `peak`, the run's final matmul peak
    (the better of the measurements before and after the rows)."""
    out = {**cost, "matmul_peak_gflops_per_s": peak.get("gflops_per_s"), "roofline_fraction": None}
    out.pop("roofline_note", None)
    note = roofline_note(row, peak)
    if note is not None:
        out["roofline_note"] = note
    elif out.get("achieved_gflops_per_s") is not None:
        out["roofline_fraction"] = round(out["achieved_gflops_per_s"] / peak["gflops_per_s"], 4)
    return out

