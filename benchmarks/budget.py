"""The deployment answer (`--budget-ms N` on `edgeseg bench` and `edgeseg report`): per device, model and
target, the input size and precision with the best mIoU whose p90 end-to-end time (preprocessing +
inference + postprocessing, the report's p90 column) fits the budget, its margin, the runner-up, and the
classes that size loses most against the largest size measured. It says so when nothing fits."""

from __future__ import annotations

from typing import Any

from edgeseg.benchmarks.report import _get, target_text
from edgeseg.errors import ConfigError

CLASSES_SHOWN = 3


def check_budget(budget_ms: float | None) -> None:
    if budget_ms is not None and not budget_ms > 0:
        raise ConfigError(f"--budget-ms {budget_ms}: must be a positive number of milliseconds")


def _p90(row: dict[str, Any]) -> float:
    return float(row["latency"]["total_ms"]["p90"])


def _size_key(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in str(row["resolution"]).split("x"))


def _name(row: dict[str, Any]) -> str:
    return f"{row['resolution']} {row['precision']}" + (f" {row['variant']}" if row.get("variant") else "")


def candidates(results: dict[str, Any]) -> dict[tuple, list[dict[str, Any]]]:
    """The rows that ran with a latency and an mIoU, by (device, model, target)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in results["rows"]:
        if row["status"] == "ok" and _get(row, "latency", "total_ms", "p90") is not None \
                and _get(row, "accuracy", "miou") is not None:
            key = (row.get("device") or "this machine", _get(row, "model", "name"), target_text(row))
            groups.setdefault(key, []).append(row)
    return groups


def choose(rows: list[dict[str, Any]], budget_ms: float) -> dict[str, Any]:
    """The pick among one group's rows: best mIoU within the budget (a tie goes to the faster), the
    runner-up, the margin; or, when nothing fits, the fastest row and by how much it misses."""
    fits = sorted((r for r in rows if _p90(r) <= budget_ms), key=lambda r: (-r["accuracy"]["miou"], _p90(r)))
    if not fits:
        fastest = min(rows, key=_p90)
        return {"fits": False, "fastest": fastest, "over_ms": round(_p90(fastest) - budget_ms, 1)}
    best = fits[0]
    return {"fits": True, "best": best, "runner_up": fits[1] if len(fits) > 1 else None,
            "margin_ms": round(budget_ms - _p90(best), 1), "losses": class_losses(best, rows)}


def class_losses(chosen: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The classes the chosen size loses most against the largest size measured: PyTorch FP32 per-class IoU
    at both sizes where the rows carry it (the report's per-class table), else the measured per-class IoU
    of the same precision. None when the chosen size is the largest."""
    largest = max(rows, key=lambda r: (_size_key(r), r["precision"] == chosen["precision"]))
    if _size_key(largest) <= _size_key(chosen):
        return None
    source = "PyTorch FP32"
    here, there = _get(chosen, "accuracy", "reference_per_class_iou"), _get(largest, "accuracy",
                                                                            "reference_per_class_iou")
    if not (here and there):
        source = f"measured per-class IoU, {chosen['precision']} against {largest['precision']}"
        here, there = chosen["accuracy"].get("per_class_iou") or {}, largest["accuracy"].get("per_class_iou") or {}
    loss = {c: there[c] - here[c] for c in here if here.get(c) is not None and there.get(c) is not None}
    worst = sorted(((c, v) for c, v in loss.items() if v > 0), key=lambda cv: -cv[1])[:CLASSES_SHOWN]
    return {"against": largest["resolution"], "source": source, "classes": [(c, round(v, 1)) for c, v in worst]}


def budget_answers(results: dict[str, Any], budget_ms: float) -> list[dict[str, Any]]:
    """One answer per (device, model, target), in the order the rows first appear."""
    check_budget(budget_ms)
    return [{"device": device, "model": model, "target": target, **choose(rows, budget_ms)}
            for (device, model, target), rows in candidates(results).items()]


def _describe(row: dict[str, Any]) -> str:
    return f"{_name(row)} ({row['accuracy']['miou']:.2f} mIoU, p90 {_p90(row):.1f} ms)"


def answer_line(answer: dict[str, Any], budget_ms: float) -> str:
    """One answer as a Markdown list item a person reads."""
    where = f"{answer['target']} on {answer['device']} ({answer['model']})"
    if not answer["fits"]:
        return (f"- {where}: **nothing fits {budget_ms:g} ms**: the fastest, {_describe(answer['fastest'])}, "
                f"is {answer['over_ms']:.1f} ms over")
    best = answer["best"]
    line = (f"- {where}: **{_name(best)}**: {best['accuracy']['miou']:.2f} mIoU at p90 {_p90(best):.1f} ms, "
            f"{answer['margin_ms']:.1f} ms inside the budget; runner-up "
            + (_describe(answer["runner_up"]) if answer["runner_up"] else "none (nothing else fits)"))
    losses = answer["losses"]
    if losses is None:
        return line + "; the largest size measured, so no class loses to a larger one"
    if not losses["classes"]:
        return line + f"; no class is worse than at {losses['against']} ({losses['source']})"
    lost = ", ".join(f"{c} −{v:.1f}" for c, v in losses["classes"])
    return line + f"; against {losses['against']} it loses most on {lost} IoU points ({losses['source']})"


def budget_section(results: dict[str, Any], budget_ms: float) -> list[str]:
    """The report.md section: the rule, then one line per device, model and target."""
    answers = budget_answers(results, budget_ms)
    lines = [f"## Within a latency budget of {budget_ms:g} ms per frame", "",
             "Per device, model and target: the input size and precision with the best mIoU whose p90 end-to-end "
             "time (preprocessing + inference + postprocessing, the p90 column above) fits the budget; a tie in "
             "mIoU goes to the faster. Host-proxy rows answer for this machine's CPU, not the phone's.", ""]
    lines += [answer_line(a, budget_ms) for a in answers] or ["- no row ran with a latency and an mIoU"]
    return lines + [""]
