"""The pieces every INT8 path's budget search shares (ONNX Runtime and TensorRT Q/DQ in convert/qdq.py,
OpenVINO/NNCF in formats/openvino/convert/int8.py): ranking quantized ops by what each alone costs, and the record
of one attempt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm


def rank_by_gates(names: list[str], run_gated: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  batches: list[np.ndarray], reference: list[np.ndarray], gate_dtype: Any, *, progress: bool,
                  unit: str) -> list[tuple[str, float]]:
    """Each name's cost in INT8: the argmax agreement with `reference` gained when that one gate is off (its
    op in float) and every other on; most sensitive first. Shared by every INT8 path's budget search."""

    def agreement(gates: np.ndarray) -> tuple[float, float]:
        agree = error = 0.0
        for batch, ref in zip(batches, reference):
            out = np.asarray(run_gated(batch, gates))
            if out.ndim == 4:  # logits: compare class decisions and the logits themselves
                agree += float((out.argmax(1) == ref.argmax(1)).mean())
                error += float(np.abs(out - ref).mean())
            else:  # mask output
                agree += float((out == ref).mean())
        return agree / len(batches), error / len(batches)

    ones = np.ones(len(names), gate_dtype)
    base_agree, base_error = agreement(ones)
    scores = []
    for k, name in enumerate(tqdm(names, desc="layer sensitivity", unit=unit, disable=not progress)):
        gates = ones.copy()
        gates[k] = 0
        agree, error = agreement(gates)
        # Agreement decides; the logit error breaks ties between layers that flip no pixel here.
        scores.append((name, agree - base_agree, base_error - error))
    scores.sort(key=lambda item: (item[1], item[2]), reverse=True)
    return [(name, round(gain, 6)) for name, gain, _ in scores]


def attempt_record(excluded: list[str], summary: dict) -> dict:
    """One budget-search attempt as the manifest records it."""
    return {"kept_in_float": len(excluded), "argmax_agreement": summary["argmax_agreement"],
            "miou_delta": summary["miou_delta"], "passed": summary["passed"]}
