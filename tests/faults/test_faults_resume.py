"""Fault injection, issue 30 family 2 (class 8 of the first campaign):
training killed after an epoch and resumed reaches the same weights as
an uninterrupted run with the same seed (data order, augmentation, dropout's RNG, optimizer state).

The kill is `crash_point("train:epoch-saved")` in a child process: os._exit right after the first
epoch's state is saved, as SIGKILL would end it (no cleanup, no checkpoint).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeseg.atomic import CRASH_EXIT_CODE
from edgeseg.cli import main
from tests.constants import REPO


def train_args(data: Path, out: Path) -> list[str]:
    # One batch per epoch over two epochs at 64 px, from scratch (no download).
    return ["train", "--data", str(data), "--resolution", "64", "--batch-size", "2", "--epochs", "2",
            "--max-steps-per-epoch", "1", "--workers", "0", "--init", "scratch", "--out", str(out)]


@pytest.mark.slow
def test_killed_and_resumed_training_matches_an_uninterrupted_run(synthetic_voc, tmp_path, capsys):
    killed, clean = tmp_path / "killed" / "m.pt", tmp_path / "clean" / "m.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGESEG_CRASH_AT": "train:epoch-saved"}
    child = subprocess.run([sys.executable, "-m", "edgeseg", *train_args(synthetic_voc, killed)], env=env,
                           capture_output=True, text=True, timeout=600, check=False)
    assert child.returncode == CRASH_EXIT_CODE, child.stderr[-2000:]
    state = killed.with_name("m.pt.train-state")
    assert state.is_file() and not killed.exists()
    assert torch.load(state, weights_only=True)["epoch"] == 1

    assert main([*train_args(synthetic_voc, killed), "--resume"]) == 0
    assert main(train_args(synthetic_voc, clean)) == 0
    capsys.readouterr()

    resumed = torch.load(killed, weights_only=True)["state_dict"]
    uninterrupted = torch.load(clean, weights_only=True)["state_dict"]
    assert resumed.keys() == uninterrupted.keys()
    worst = max(float((resumed[k].double() - uninterrupted[k].double()).abs().max())
                for k in resumed if resumed[k].is_floating_point())
    assert worst <= 1e-6, f"resumed run differs from the uninterrupted one by up to {worst}"
    assert sorted(p.name for p in killed.parent.iterdir()) == ["m.pt", "m.pt.train-state"]  # no temporaries
