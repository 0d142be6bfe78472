"""`edgeseg train` end to end on a tiny generated set, and resuming a killed run."""

import json

import pytest
import torch

from edgeseg.cli import main
from edgeseg.models.weights import load_weights
from tests.constants import TINY_RESOLUTION


@pytest.mark.slow
def test_one_epoch_then_resume(synthetic_voc, tmp_path, capsys):
    out = tmp_path / "model.pt"
    args = ["train", "--data", str(synthetic_voc), "--resolution", "96", "--batch-size", "4",
            "--max-steps-per-epoch", "2", "--workers", "0", "--out", str(out)]
    assert main([*args, "--epochs", "1", "--json"]) == 0
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
    with Image.open(bad / "JPEGImages" / f"{first.stem}.jpg") as image:
        width, height = image.size
    Image.fromarray(np.full((10, 10), 3, np.uint8), mode="L").save(first)
    code = main(["train", "--data", str(bad), "--out", str(tmp_path / "m.pt")])
    assert code == 2
    assert f"{first.name}: mask is 10x10 but its image is {width}x{height}" in capsys.readouterr().err


@pytest.mark.slow
def test_finetune_from_sample_validates_once_and_converts(synthetic_voc, tmp_path, capsys, monkeypatch):
    from edgeseg.models import train as train_module

    validations = []
    real_evaluate = train_module.evaluate
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: validations.append(1) or real_evaluate(*a, **k))
    out = tmp_path / "tuned.pt"
    assert main(["train", "--data", str(synthetic_voc), "--init", "sample", "--resolution", TINY_RESOLUTION,
                 "--batch-size", "4", "--epochs", "1", "--max-steps-per-epoch", "2", "--workers", "0",
                 "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "keeping its labels" in stdout and f"wrote {out}" in stdout
    assert not any(line.lstrip().startswith("{") for line in stdout.splitlines())  # JSON only with --json
    assert len(validations) == 1  # one epoch, one validation: the final score is that epoch's

    tuned, sample = load_weights(str(out)), load_weights("sample")
    assert tuned.labels == sample.labels and tuned.metadata["init"].startswith("checkpoint:")
    assert tuned.metadata["val_miou"] == tuned.metadata["history"][-1]["val_miou"]
    # Fine-tuned, not retrained: two small steps leave the weights near the sample's, yet changed.
    key = "classifier.4.weight"
    change = (tuned.state_dict[key].float() - sample.state_dict[key].float()).abs().max().item()
    assert 0 < change < 0.1

    models = tmp_path / "models"
    assert main(["convert", "--weights", str(out), "--resolution", TINY_RESOLUTION, "--verify-images", "2",
                 "--out", str(models)]) == 0
    assert (models / "tuned-host-cpu-fp32-64.onnx").is_file()


def test_other_labels_reinitialise_only_the_head(capsys):
    from edgeseg.models.train import initial_model
    from edgeseg.models.train_config import TrainConfig

    sample = load_weights("sample")
    other = ("background", "cat", "dog")
    model, init = initial_model(TrainConfig(data="", init="sample"), other, sample)
    state = model.state_dict()
    assert init == f"checkpoint:{sample.source}" and state["classifier.4.weight"].shape[0] == 3
    message = capsys.readouterr().out
    assert "the data's labels (background, cat, dog) differ" in message
    assert "the classifier head is re-initialised" in message
    backbone = "backbone.0.0.weight"
    assert torch.equal(state[backbone], sample.state_dict[backbone].float())
    # Same class count, other names: still a fresh head (the old one means other classes).
    renamed = tuple(f"{name}_x" for name in sample.labels)
    model, _ = initial_model(TrainConfig(data="", init="sample"), renamed, sample)
    assert not torch.equal(model.state_dict()["classifier.4.weight"], sample.state_dict["classifier.4.weight"].float())
    same, _ = initial_model(TrainConfig(data="", init="sample"), sample.labels, sample)
    assert torch.equal(same.state_dict()["classifier.4.weight"], sample.state_dict["classifier.4.weight"].float())


def test_unknown_init_is_one_line(synthetic_voc, tmp_path, capsys):
    assert main(["train", "--data", str(synthetic_voc), "--init", "imagenet", "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "--init imagenet: choose sample, torchvision, scratch or the path of an edgeseg checkpoint" in err
