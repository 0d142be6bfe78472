"""`edgeseg train` end to end on a tiny generated set, and resuming a killed run."""

import json

import torch

from edgeseg.cli import main
from edgeseg.convert.weights import load_weights


def test_one_epoch_then_resume(synthetic_voc, tmp_path, capsys):
    out = tmp_path / "model.pt"
    args = ["train", "--data", str(synthetic_voc), "--resolution", "96", "--batch-size", "4",
            "--max-steps-per-epoch", "2", "--workers", "0", "--out", str(out)]
    assert main([*args, "--epochs", "1"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= first["val_miou"] <= 100.0
    state = out.with_name(out.name + ".train-state")
    assert state.is_file() and torch.load(state, weights_only=True)["epoch"] == 1

    # Continue the same run for a second epoch: history keeps the first epoch, the checkpoint loads.
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    weights = load_weights(str(out))
    history = weights.metadata["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["val_miou"] == first["val_miou"]
    assert weights.labels[0] == "background" and weights.num_classes == 7
    assert weights.trained_resolution == 96 and len(weights.metadata["dataset_sha256"]) == 64
    weights.build()


def test_resume_without_state_is_one_line(synthetic_voc, tmp_path, capsys):
    code = main(["train", "--data", str(synthetic_voc), "--resume", "--out", str(tmp_path / "m.pt")])
    assert code == 2
    assert "m.pt.train-state: no training state to resume from" in capsys.readouterr().err


def test_dataset_with_a_bad_mask_stops_before_training(synthetic_voc, tmp_path, capsys):
    import shutil

    import numpy as np
    from PIL import Image

    bad = tmp_path / "bad"
    shutil.copytree(synthetic_voc, bad)
    first = sorted((bad / "SegmentationClass").glob("train_*.png"))[0]
    Image.fromarray(np.full((10, 10), 3, np.uint8), mode="L").save(first)
    code = main(["train", "--data", str(bad), "--out", str(tmp_path / "m.pt")])
    assert code == 2
    assert f"{first.name}: mask is 10x10 but its image is 320x320" in capsys.readouterr().err
