"""What `train` keeps beside --out: the resumable training state, and this run's hold on --out.

The state (`m.pt.train-state`) is written after every epoch, sealed with its digest
(models.checkpoint_digest), and only while every tensor in it is finite: a diverged run keeps its last
good state. `--resume` refuses a state that is damaged, was written with other options, or holds NaN/Inf.
While a run trains, it holds --out's lock (edgeseg.run_lock): a second `train` into the same checkpoint
is refused in one line naming the first, instead of both printing "wrote".
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edgeseg.atomic import ensure_writable_dir, locked_temp_file
from edgeseg.errors import ConfigError, TrainingError, WeightsError, first_line
from edgeseg.models.checkpoint_digest import check_digest, write_sealed
from edgeseg.models.torch_file import load_torch_file
from edgeseg.models.train_config import TrainConfig
from edgeseg.run_lock import RunLock, lock_path_for, take

# Each key of a training state and the type its value must have.
STATE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "config": dict, "model": dict, "optimizer": dict, "epoch": int, "history": list, "init": str}


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".train-state")


def claim_out(out: Path) -> RunLock:
    """--out takes a file (a temporary made and removed there now, not after training) and no other `train`
    writes it: this run holds its lock until released."""
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a checkpoint file name such as model.pt")
    ensure_writable_dir(out.parent)
    try:
        probe, fd = locked_temp_file(out)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    probe.unlink(missing_ok=True)
    os.close(fd)
    return take(lock_path_for(out), f"--out {out}: another train (pid {{pid}}) is writing it; wait for it to end "
                                    "or choose another file")


def non_finite(value: Any, where: str = "") -> tuple[int, str | None]:
    """How many NaN/Inf values the floating-point tensors in `value` (nested dicts and lists) hold, and where
    the first is."""
    if isinstance(value, torch.Tensor):
        bad = int(value.numel() - torch.isfinite(value).sum()) if value.is_floating_point() else 0
        return bad, (where if bad else None)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    total, first = 0, None
    for key, item in items:
        bad, at = non_finite(item, f"{where}.{key}" if where else str(key))
        total, first = total + bad, first or at
    return total, first


def check_trainable(model: torch.nn.Module, config: TrainConfig, when: str) -> None:
    """Stop a run whose weights (or BatchNorm statistics) became NaN/Inf `when` (an epoch, the rounding to
    --save-dtype): nothing more is written."""
    bad, first = non_finite(model.state_dict())
    if bad and when.startswith("rounding"):  # finite weights beyond float16's range, not a divergence
        raise TrainingError(f"--save-dtype {config.save_dtype}: {bad} weights do not fit it (the first in {first}); "
                            "no checkpoint was written; save with --save-dtype fp32")
    if bad:
        raise TrainingError(diverged(config, f"{when} left {bad} non-finite weights (the first in {first})"))


def diverged(config: TrainConfig, what: str) -> str:
    return (f"--lr {config.lr:g}: training diverged: {what}; no checkpoint was written (the last good epoch's state, "
            "if any, is kept); try a lower --lr")


def save_state(path: Path, payload: dict[str, Any]) -> None:
    """Write the training state atomically, sealed with its digest (its tensors were checked finite)."""
    write_sealed(path, payload, "training state")


def load_state(path: Path) -> dict:
    """The training state `--resume` continues from, or one line saying why it cannot be used."""
    state = load_torch_file(path, "training state", "; start a new run without --resume")
    check_digest(state, path, "training state")
    missing = [k for k in STATE_FIELDS if not isinstance(state, dict) or k not in state]
    if missing:
        raise WeightsError(f"{path}: training state lacks {', '.join(missing)}; start a new run without --resume")
    wrong = [k for k, kind in STATE_FIELDS.items() if not isinstance(state[k], kind) or isinstance(state[k], bool)]
    if wrong:
        raise WeightsError(f"{path}: training state field {wrong[0]} has the wrong type "
                           f"({type(state[wrong[0]]).__name__}); start a new run without --resume")
    bad, first = non_finite({"model": state["model"], "optimizer": state["optimizer"]})
    if bad:
        raise WeightsError(f"{path}: training state holds {bad} non-finite values (NaN/Inf), the first in {first}; "
                           "it cannot be resumed: start a new run without --resume (with a lower --lr?)")
    return state


def resume(path: Path, config: TrainConfig, model: torch.nn.Module, optimizer) -> tuple[int, list, str]:
    """Load the state at `path` into `model` and `optimizer`: (epochs done, history, init record)."""
    if not path.is_file():
        raise WeightsError(f"{path}: no training state to resume from")
    state = load_state(path)
    if state["config"] != asdict(config) | {"epochs": state["config"].get("epochs")}:
        raise ConfigError(f"{path}: was written with other training options; start a new run instead of --resume")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise WeightsError(f"{path}: training state does not fit this model ({first_line(exc)[:160]}); start a "
                           "new run without --resume") from None
    if isinstance(state.get("torch_rng"), torch.Tensor):  # dropout draws from it: an uninterrupted run would be here
        torch.set_rng_state(state["torch_rng"])
    return state["epoch"], state["history"], state["init"]
