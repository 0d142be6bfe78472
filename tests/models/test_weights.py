"""Where weights come from, and every way they can be wrong."""

import pytest
import torch

from edgeseg.errors import WeightsError
from edgeseg.models.weights import load_weights, save_checkpoint
from edgeseg.models.zoo import ZOO, build_model
from edgeseg.scenes import SYNTHETIC_LABELS
from tests.constants import REPO


def test_zoo_has_the_five_architectures():
    assert set(ZOO) == {"deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "deeplabv3_resnet101",
                        "lraspp_mobilenet_v3_large", "fcn_resnet50"}


def test_sample_checkpoint_carries_its_metadata(sample_checkpoint):
    w = load_weights("sample")
    assert w.arch == "deeplabv3_mobilenet_v3_large"
    assert w.labels == SYNTHETIC_LABELS and w.num_classes == 7
    assert w.trained_resolution == 1024  # the last fine-tuning stage validated at 1024
    assert w.metadata["val_miou"] >= 80.0
    assert len(w.metadata["dataset_sha256"]) == 64
    assert sample_checkpoint.stat().st_size < 25 * 2**20
    model = w.build()
    assert not model.training and next(model.parameters()).dtype == torch.float32


def test_sample_sidecar_scores_the_shipped_weights_at_each_input_size(sample_checkpoint):
    """The sidecar JSON (tests/golden/score_sample.py) belongs to exactly these weights and records their
    FP32 mIoU on 200 held-out scenes at the native 1024 ground truth: usable at every standard size and
    never worse for a larger input (docs/sample-world.md says how far from the +1.0-per-step aim it is)."""
    import hashlib
    import json

    sidecar = json.loads(sample_checkpoint.with_suffix(".json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(sample_checkpoint.read_bytes()).hexdigest()
    scores = {int(r): s["miou"] for r, s in sidecar["validation"]["by_resolution"].items()}
    assert sidecar["validation"]["images"] == 200 and sorted(scores) == [320, 640, 1024]
    assert scores[320] >= 75.0
    assert scores[640] >= scores[320] + 1.0 and scores[1024] >= scores[640], scores
    assert sidecar["history"] == load_weights("sample").metadata["history"]


def _train_stages(commands: str) -> list[dict]:
    """The `edgeseg train` options of each command in a shell text (continuation lines joined)."""
    import re
    import shlex

    from edgeseg.models.train_config import TrainConfig

    stages = []
    for command in re.split(r"&&|\n", commands.replace("\\\n", " ")):
        words = shlex.split(command, comments=True)
        if words[:2] == ["edgeseg", "train"]:
            flags = dict(zip(words[2::2], words[3::2]))
            stages.append({"data": flags["--data"], "resolution": int(flags["--resolution"]),
                           "crop": int(flags["--crop"]), "scale_min": float(flags["--scale-min"]),
                           "scale_max": float(flags["--scale-max"]), "epochs": int(flags["--epochs"]),
                           "lr": float(flags["--lr"]),
                           "image_pool_window": flags.get("--image-pool-window", TrainConfig.image_pool_window)})
    return stages


def test_documented_training_commands_are_the_sample_models_recorded_stages(sample_checkpoint):
    """The training block of docs/sample-model.md, the sidecar's training command and the configuration each
    stage recorded when it ran all describe the same stages, in order (data folders compared by their scene
    counts)."""
    import json
    import re

    from edgeseg.models.train_config import TrainConfig

    sidecar = json.loads(sample_checkpoint.with_suffix(".json").read_text())
    stage_keys = sorted((k for k in sidecar if re.fullmatch(r"stage\d+", k)), key=lambda k: int(k[5:]))
    records = [sidecar[k]["train_config"] for k in stage_keys]
    records.append(sidecar["train_config"])
    keys = ("resolution", "crop", "scale_min", "scale_max", "epochs", "lr", "image_pool_window")
    # Stages trained before the option existed pooled globally, which "init" meant for them.
    recorded = [{k: r.get(k, TrainConfig.image_pool_window) for k in keys} for r in records]
    doc = (REPO / "docs" / "sample-model.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", doc, re.S) if "--init sample-320.pt" in b)
    for text in (block, sidecar["training_command"]):
        stages = _train_stages(text)
        assert [{k: s[k] for k in keys} for s in stages] == recorded, text
        counts = dict(re.findall(r"make-scenes --out (\S+) --train (\d+)", text))
        recorded_counts = [int(re.search(r"train(\d+)$", r["data"]).group(1)) for r in records]
        assert [int(counts[s["data"]]) for s in stages] == recorded_counts, text


def test_plain_state_dict_takes_class_count_from_the_classifier(tmp_path):
    model = build_model("lraspp_mobilenet_v3_large", num_classes=5)
    path = tmp_path / "lraspp.pth"
    torch.save(model.state_dict(), path)
    w = load_weights(str(path), arch="lraspp_mobilenet_v3_large")
    assert w.num_classes == 5 and w.labels == tuple(f"class_{i}" for i in range(5))
    w.build()


def test_state_dict_with_aux_head_loads(tmp_path):
    model = build_model("fcn_resnet50", num_classes=3, aux_loss=True)
    path = tmp_path / "fcn.pth"
    torch.save(model.state_dict(), path)
    labels = tmp_path / "labels.txt"
    labels.write_text("bg\ncat\ndog\n")
    w = load_weights(str(path), arch="fcn_resnet50", labels_file=labels)
    assert w.labels == ("bg", "cat", "dog")
    w.build()


def test_labels_file_with_the_wrong_count_is_refused(tmp_path):
    path = tmp_path / "m.pth"
    torch.save(build_model("lraspp_mobilenet_v3_large", num_classes=4).state_dict(), path)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(WeightsError, match="2 label names but the weights have 4 classes"):
        load_weights(str(path), arch="lraspp_mobilenet_v3_large", labels_file=labels)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"nope\.pth: weights file not found"):
        load_weights(str(tmp_path / "nope.pth"))


def test_truncated_file(tmp_path, sample_checkpoint):
    path = tmp_path / "cut.pt"
    path.write_bytes(sample_checkpoint.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match=r"cut\.pt: not a readable PyTorch checkpoint"):
        load_weights(str(path))


def test_state_dict_of_another_architecture_is_named(tmp_path):
    path = tmp_path / "lraspp.pth"
    torch.save(build_model("lraspp_mobilenet_v3_large", num_classes=21).state_dict(), path)
    with pytest.raises(WeightsError,
                       match="not a deeplabv3_mobilenet_v3_large state dict.*looks like lraspp_mobilenet_v3_large"):
        load_weights(str(path))


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, build_model("lraspp_mobilenet_v3_large", num_classes=3),
                    arch="lraspp_mobilenet_v3_large", labels=("a", "b", "c"), resolution=128)
    with pytest.raises(WeightsError, match="is a lraspp_mobilenet_v3_large checkpoint, not deeplabv3_resnet50"):
        load_weights(str(path), arch="deeplabv3_resnet50")


def test_checkpoint_whose_weights_do_not_match_its_class_count(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, build_model("lraspp_mobilenet_v3_large", num_classes=3),
                    arch="lraspp_mobilenet_v3_large", labels=("a", "b", "c"), resolution=128)
    payload = torch.load(path, weights_only=True)
    payload["num_classes"], payload["labels"] = 4, ["a", "b", "c", "d"]
    del payload["payload_sha256"]  # hand-edited fields with no digest to betray them (an older edgeseg's file)
    torch.save(payload, path)
    with pytest.raises(WeightsError, match="does not fit lraspp_mobilenet_v3_large with 4 classes"):
        load_weights(str(path)).build()


def test_torchvision_weights_offline_say_to_pass_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached copy
    from torchvision.models import segmentation

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(segmentation.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.__class__,
                        "get_state_dict", offline)
    with pytest.raises(WeightsError,
                       match="cannot download torchvision's deeplabv3_mobilenet_v3_large weights.*pass --weights PATH"):
        load_weights("torchvision")
