"""Fault injection, issue 30 family 2: checkpoints are checked like artifacts, and `train` never writes (or
resumes) non-finite weights.

Every checkpoint and training state edgeseg writes carries the sha256 of its own contents
(models.checkpoint_digest); `convert`, `train --init` and `train --resume` recompute it, so flipped bytes in a
tensor (which torch.load does not notice: it checks no zip CRC) are one line naming the file. A checkpoint
without a digest (the shipped sample, a torchvision `.pth`) keeps loading. A loss or weights that become NaN/Inf
stop the run in one line with no checkpoint written; a state holding NaN is not resumed.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from edgeseg.errors import WeightsError
from edgeseg.models.checkpoint_digest import DIGEST_KEY, payload_digest, sealed
from edgeseg.models.weights import load_weights, save_checkpoint
from edgeseg.models.zoo import build_model
from edgeseg.scenes import SYNTHETIC_LABELS, SceneConfig, write_voc_dataset
from tests.conftest import SAMPLE_CHECKPOINT
from tests.fault_kit import flip_byte
from tests.faults.campaign_kit import one_line_error, run_cli, tree

ARCH = "lraspp_mobilenet_v3_large"  # the zoo's smallest: these tests train and load, they do not measure


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return write_voc_dataset(tmp_path_factory.mktemp("set") / "voc", train=2, val=1, progress=False,
                             config=SceneConfig(height=64, width=64))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A deeplabv3_mobilenet_v3_large checkpoint as `train` writes them (digest included)."""
    path = tmp_path_factory.mktemp("ckpt") / "mine.pt"
    save_checkpoint(path, build_model("deeplabv3_mobilenet_v3_large", num_classes=len(SYNTHETIC_LABELS)),
                    arch="deeplabv3_mobilenet_v3_large", labels=SYNTHETIC_LABELS, resolution=64)
    return path


def train_args(data: Path, out: Path, *extra: object) -> list[object]:
    return ["train", "--data", data, "--model", ARCH, "--resolution", "64", "--batch-size", "2", "--workers", "0",
            "--max-steps-per-epoch", "1", "--init", "scratch", "--no-bf16", "--out", out, *extra]


def flip_in_largest_tensor(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor's stored bytes (a zip member, stored uncompressed)."""
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    raw = path.read_bytes()
    name_length, extra_length = struct.unpack("<HH", raw[member.header_offset + 26:member.header_offset + 30])
    flip_byte(path, member.header_offset + 30 + name_length + extra_length + member.file_size // 2)


def damaged(path: Path, what: str = "checkpoint") -> str:
    return f"{path}: {what} is damaged: its contents hash to sha256 "


# -- the digest -------------------------------------------------------------------------------------------

def test_every_checkpoint_edgeseg_writes_carries_a_matching_digest(checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    assert payload[DIGEST_KEY] == payload_digest(payload)


def test_the_digest_sees_one_changed_value_anywhere():
    payload = {"state_dict": {"w": torch.zeros(3)}, "labels": ["a", "b"], "val_miou": 1.5}
    reference = payload_digest(payload)
    changes = ({"labels": ["a", "c"]}, {"val_miou": 1.5000001}, {"state_dict": {"w": torch.tensor([0., 0., 1e-30])}},
               {"state_dict": {"w": torch.zeros(3, dtype=torch.float16)}}, {"state_dict": {"w": torch.zeros(1, 3)}})
    for change in changes:
        assert payload_digest({**payload, **change}) != reference, change
    assert payload_digest(dict(reversed(list(payload.items())))) == reference


@pytest.mark.parametrize("command", ["convert", "train --init"])
def test_a_flipped_byte_in_a_tensor_is_refused_naming_the_file(tmp_path, capsys, checkpoint, small_set, command):
    copy = tmp_path / "mine.pt"
    shutil.copyfile(checkpoint, copy)
    flip_in_largest_tensor(copy)
    torch.load(copy, weights_only=True)  # torch itself loads it without a word
    out = tmp_path / "out"
    if command == "convert":
        code, err = run_cli(capsys, "convert", "--weights", copy, "--resolution", "64", "--out", out)
    else:
        code, err = run_cli(capsys, "train", "--data", small_set, "--init", copy, "--resolution", "64",
                            "--out", out / "m.pt")
    assert code == 2
    message = one_line_error(err, command.split()[0])
    assert message.startswith(damaged(copy)) and message.endswith("(flipped or changed bytes); use another copy")
    assert tree(out) == []


def test_a_hand_edited_field_under_a_stale_digest_is_refused(tmp_path, checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    payload["labels"] = ["background", *SYNTHETIC_LABELS[1:-1], "plus"]  # a changed byte in the pickle, say
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    with pytest.raises(WeightsError, match="checkpoint is damaged"):
        load_weights(str(path))


@pytest.mark.parametrize("recorded", [123, None, "0" * 64, ""])
def test_a_digest_that_is_no_digest_is_refused(tmp_path, checkpoint, recorded):
    payload = torch.load(checkpoint, weights_only=True)
    payload[DIGEST_KEY] = recorded
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(WeightsError) as info:
        load_weights(str(path))
    assert str(info.value).startswith(damaged(path)) and "\n" not in str(info.value)


def test_the_sample_checkpoint_has_no_digest_and_still_loads():
    payload = torch.load(SAMPLE_CHECKPOINT, weights_only=True)
    assert DIGEST_KEY not in payload
    weights = load_weights("sample")
    assert weights.labels == SYNTHETIC_LABELS and weights.sha256 is not None  # its file's sha256, as before


def test_a_torchvision_state_dict_has_no_digest_and_still_loads(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(build_model(ARCH, num_classes=3).state_dict(), path)
    assert load_weights(str(path), arch=ARCH).num_classes == 3


def test_a_checkpoint_whose_digest_was_removed_is_accepted_as_an_older_one(tmp_path, checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    del payload[DIGEST_KEY]
    path = tmp_path / "older.pt"
    torch.save(payload, path)
    assert load_weights(str(path)).labels == SYNTHETIC_LABELS


@pytest.fixture(scope="module")
def checkpoint_state(checkpoint) -> dict:
    return load_weights(str(checkpoint)).state_dict


@pytest.mark.parametrize("where", [i / 24 for i in range(24)] + [-1, -10, -22, -40])
def test_a_flipped_byte_anywhere_is_refused_in_one_line_or_changes_nothing(tmp_path, checkpoint, checkpoint_state,
                                                                          where):
    """Bytes the zip's structure or its alignment padding holds may change nothing that is read: then the
    weights load whole and the same. Anything else is one line naming the file, never other weights."""
    copy = tmp_path / "mine.pt"
    shutil.copyfile(checkpoint, copy)
    size = copy.stat().st_size
    flip_byte(copy, int(where * size) if where >= 0 else size + int(where))
    try:
        loaded = load_weights(str(copy)).state_dict
    except WeightsError as exc:
        assert str(exc).startswith(f"{copy}: ") and "\n" not in str(exc)
        return
    assert loaded.keys() == checkpoint_state.keys()
    assert all(torch.equal(loaded[k], checkpoint_state[k]) for k in loaded)


# -- non-finite weights -----------------------------------------------------------------------------------

def test_init_from_a_sealed_checkpoint_holding_nan_is_refused(tmp_path, capsys, checkpoint, small_set):
    payload = torch.load(checkpoint, weights_only=True)
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first].view(-1)[0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(sealed(payload), path)
    code, err = run_cli(capsys, "train", "--data", small_set, "--init", path, "--resolution", "64",
                        "--out", tmp_path / "run" / "m.pt")
    assert code == 2
    assert one_line_error(err, "train") == f"{path}: weights hold 1 non-finite values (NaN/Inf), the first in {first}"
    assert tree(tmp_path / "run") == []


@pytest.mark.slow
def test_a_loss_that_becomes_nan_stops_training_and_writes_nothing(tmp_path, capsys, small_set, monkeypatch):
    import torch.nn.functional as F

    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    out = tmp_path / "run" / "m.pt"
    code, err = run_cli(capsys, *train_args(small_set, out, "--epochs", "2"))
    assert code == 2
    assert one_line_error(err, "train") == ("--lr 0.002: training diverged: the loss is nan at epoch 1, batch 1; no "
                                            "checkpoint was written (the last good epoch's state, if any, is kept); "
                                            "try a lower --lr")
    assert tree(out.parent) == []


@pytest.mark.slow
def test_weights_that_become_nan_in_the_second_epoch_keep_the_first_epochs_state(tmp_path, capsys, small_set,
                                                                                 monkeypatch):
    real_step = torch.optim.AdamW.step
    steps = []

    def poisoning_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 2:  # the second epoch's only step: its loss was finite, its result is not
            self.param_groups[0]["params"][0].data.view(-1)[0] = float("inf")
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoning_step)
    out = tmp_path / "run" / "m.pt"
    code, err = run_cli(capsys, *train_args(small_set, out, "--epochs", "2"))
    assert code == 2
    message = one_line_error(err, "train")
    assert message.startswith("--lr 0.002: training diverged: epoch 2 left ") and "no checkpoint was written" in message
    assert tree(out.parent) == ["m.pt.train-state"]
    assert torch.load(out.parent / "m.pt.train-state", weights_only=True)["epoch"] == 1


# -- resuming ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_epoch_state(tmp_path_factory, small_set) -> Path:
    """A run killed after its first of two epochs: the state `--resume` continues from."""
    from edgeseg.cli import main

    out = tmp_path_factory.mktemp("run") / "m.pt"
    assert main([str(a) for a in train_args(small_set, out, "--epochs", "1")]) == 0
    out.unlink()  # as if killed before the checkpoint: only the state remains
    return out.with_name("m.pt.train-state")


def _resume_from(tmp_path: Path, state: dict | None, source: Path) -> Path:
    out = tmp_path / "run" / "m.pt"
    out.parent.mkdir()
    target = out.with_name("m.pt.train-state")
    if state is None:
        shutil.copyfile(source, target)
    else:
        torch.save(state, target)
    return out


def _edit(state: dict, edit: str) -> dict:
    if edit == "nan-weight":
        state["model"][next(iter(state["model"]))].view(-1)[0] = float("nan")
    elif edit == "inf-moment":
        first = next(iter(state["optimizer"]["state"].values()))
        first["exp_avg_sq"].view(-1)[0] = float("inf")
    elif edit == "epoch-text":
        state["epoch"] = "1"
    elif edit == "wrong-shapes":
        key = next(k for k in state["model"] if state["model"][k].dim() == 4)
        state["model"][key] = torch.zeros(1, 1, 1, 1)
    return sealed({k: v for k, v in state.items() if k != DIGEST_KEY})


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    ("nan-weight", "{state}: training state holds 1 non-finite values (NaN/Inf), the first in model."),
    ("inf-moment", "{state}: training state holds 1 non-finite values (NaN/Inf), the first in optimizer.state."),
    ("epoch-text", "{state}: training state field epoch has the wrong type (str); start a new run without --resume"),
    ("wrong-shapes", "{state}: training state does not fit this model ("),
    ("flipped", "{state}: training state is damaged: its contents hash to sha256 "),
])
def test_resume_refuses_a_state_it_cannot_continue_and_writes_nothing(tmp_path, capsys, small_set, one_epoch_state,
                                                                      edit, message):
    if edit == "flipped":
        out = _resume_from(tmp_path, None, one_epoch_state)
        flip_in_largest_tensor(out.with_name("m.pt.train-state"))
    else:
        out = _resume_from(tmp_path, _edit(torch.load(one_epoch_state, weights_only=True), edit), one_epoch_state)
    before = out.with_name("m.pt.train-state").read_bytes()
    code, err = run_cli(capsys, *train_args(small_set, out, "--epochs", "2", "--resume"))
    assert code == 2
    assert one_line_error(err, "train").startswith(message.format(state=out.with_name("m.pt.train-state")))
    assert tree(out.parent) == ["m.pt.train-state"]
    assert out.with_name("m.pt.train-state").read_bytes() == before  # kept as it was, for inspection


@pytest.mark.slow
def test_a_resumed_run_writes_a_sealed_checkpoint_and_state(tmp_path, capsys, small_set, one_epoch_state):
    out = _resume_from(tmp_path, None, one_epoch_state)
    code, err = run_cli(capsys, *train_args(small_set, out, "--epochs", "2", "--resume"))
    assert code == 0, err
    for path in (out, out.with_name("m.pt.train-state")):
        payload = torch.load(path, weights_only=True)
        assert payload[DIGEST_KEY] == payload_digest(payload)
    assert tree(out.parent) == ["m.pt", "m.pt.train-state"]


def test_epochs_0_refuses_weights_that_overflow_the_save_dtype(tmp_path, capsys, small_set):
    model = build_model("deeplabv3_mobilenet_v3_large", num_classes=len(SYNTHETIC_LABELS))
    with torch.no_grad():
        model.classifier[4].weight.view(-1)[0] = 1e6  # finite in float32, beyond float16's 65504
    init = tmp_path / "big.pt"
    save_checkpoint(init, model, arch="deeplabv3_mobilenet_v3_large", labels=SYNTHETIC_LABELS, resolution=64)
    out = tmp_path / "run" / "m.pt"
    code, err = run_cli(capsys, "train", "--data", small_set, "--init", init, "--epochs", "0", "--save-dtype", "fp16",
                        "--resolution", "64", "--batch-size", "2", "--workers", "0", "--out", out)
    assert code == 2
    assert one_line_error(err, "train") == ("--save-dtype fp16: 1 weights do not fit it (the first in "
                                            "classifier.4.weight); no checkpoint was written; save with --save-dtype "
                                            "fp32")
    assert tree(out.parent) == []
