"""Fault campaign, issue 30 family 2: checkpoints are checked like artifacts (a digest that convert, `train --init`
and `--resume` check), and `train` neither writes nor resumes non-finite weights."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.faults.campaign_harness import Case, Kit, Setup, absent, chain, copy, tree

FAMILY = "2 checkpoints"
# Replaces a loss or a weight mid-training with NaN/Inf (or, for fp16, a value past its range), then runs the CLI.
PATCHED_TRAIN = """
import sys, torch, torch.nn.functional as F
mode = sys.argv[1]
real_ce, real_step = F.cross_entropy, torch.optim.AdamW.step
steps = []
if mode == "loss":
    F.cross_entropy = lambda *a, **k: real_ce(*a, **k) * float("nan")
else:
    def step(self, *a, **k):
        result = real_step(self, *a, **k); steps.append(1)
        if len(steps) == 2:
            self.param_groups[0]["params"][0].data.view(-1)[0] = 1e6 if mode == "fp16" else float("inf")
        return result
    torch.optim.AdamW.step = step
from edgeseg.cli import main
sys.exit(main(sys.argv[2:]))
"""


def flipped(src: Path, where: float, name: str = "w.pt") -> Setup:
    """`src` copied to `name` with one byte inverted: at `where` (a fraction of the file), or for a negative
    `where` in the middle of the largest stored tensor."""
    def setup(w: Path) -> None:
        dst = w / name
        shutil.copyfile(src, dst)
        data = bytearray(dst.read_bytes())
        if where < 0:
            with zipfile.ZipFile(dst) as archive:
                largest = max(archive.infolist(), key=lambda info: info.file_size)
            header = largest.header_offset  # a zip local header: 30 bytes, then the name and the extra field
            name_len, extra_len = struct.unpack("<HH", bytes(data[header + 26:header + 30]))
            at = header + 30 + name_len + extra_len + largest.file_size // 2
        else:
            at = int(where * len(data))
        data[at] ^= 0xFF
        dst.write_bytes(bytes(data))
    return setup


def resealed(src: Path, dst: str, edit: Callable[[dict], object], *, reseal: bool = True,
             digest: object = None) -> Setup:
    """`src` (a checkpoint or training state) loaded, edited and saved as `dst`: with a fresh digest (the edit is
    sealed: only the content checks can see it), with the old one (`reseal=False`: a stale digest), or with
    `digest` in its place."""
    def setup(w: Path) -> None:
        import torch

        from edgeseg.models.checkpoint_digest import DIGEST_KEY, sealed

        payload = torch.load(src, weights_only=True)
        recorded = payload.get(DIGEST_KEY)
        edit(payload)
        payload = {key: value for key, value in payload.items() if key != DIGEST_KEY}
        (w / dst).parent.mkdir(parents=True, exist_ok=True)
        kept = {DIGEST_KEY: recorded} if recorded is not None else {}
        if digest is not None:
            kept = {DIGEST_KEY: digest}
        torch.save(sealed(payload) if reseal and digest is None else {**payload, **kept}, w / dst)
    return setup


def nan_weight(state: dict) -> None:
    state["model"][next(iter(state["model"]))].view(-1)[0] = float("nan")


def inf_moment(state: dict) -> None:
    next(iter(state["optimizer"]["state"].values()))["exp_avg_sq"].view(-1)[0] = float("inf")


def wrong_shape(state: dict) -> None:
    import torch

    conv = next(key for key, tensor in state["model"].items() if tensor.dim() == 4)
    state["model"][conv] = torch.zeros(1, 1, 1, 1)


def converted_nothing(w: Path, code: int, err: str, out: str) -> str | None:
    return f"artifacts {tree(w / 'out')}" if list((w / "out").glob("*.onnx")) else None


def train_argv(kit: Kit) -> list[str]:
    return ["train", "--data", kit.a("voc"), "--model", "lraspp_mobilenet_v3_large", "--resolution", "64",
            "--batch-size", "2", "--workers", "0", "--max-steps-per-epoch", "1", "--init", "scratch", "--no-bf16"]


# A pickle that runs a command when unpickled: torch.load(weights_only=False) would create ./pwned.
EVIL_PICKLE = """
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))
torch.save({"state_dict": Evil()}, sys.argv[1])
"""


def written(name: str, content: bytes) -> Setup:
    def setup(w: Path) -> None:
        (w / name).parent.mkdir(parents=True, exist_ok=True)
        (w / name).write_bytes(content)
    return setup


def truncated(src: Path, name: str, fraction: float) -> Setup:
    def setup(w: Path) -> None:
        data = src.read_bytes()
        written(name, data[:int(len(data) * fraction)])(w)
    return setup


def saved(name: str, make: Callable[[], object]) -> Setup:
    def setup(w: Path) -> None:
        import torch

        torch.save(make(), w / name)
    return setup


def evil_pickle(kit: Kit, name: str) -> Setup:
    def setup(w: Path) -> None:
        subprocess.run([kit.python, "-c", EVIL_PICKLE, str(w / name)], check=True, cwd=w, env=kit.env)
    return setup


def weights_files(kit: Kit) -> list[Case]:
    """Files given as --weights / --init that are not (whole, honest) checkpoints."""
    ckpt = kit.assets / "ckpt.pt"
    convert = ["convert", "--weights", "w.pt", "--resolution", "64", "--verify-images", "1", "--out", "out"]
    init = ["train", "--data", kit.a("voc"), "--init", "w.pt", "--resolution", "64", "--epochs", "1", "--workers", "0",
            "--batch-size", "2", "--max-steps-per-epoch", "1", "--out", "t/m.pt"]

    def zeros(shape: tuple[int, ...]) -> Callable[[], object]:
        def make() -> object:
            import torch

            return torch.zeros(shape)
        return make

    bad: list[tuple[str, Setup]] = [
        ("an empty file", written("w.pt", b"")),
        ("a text file", written("w.pt", b"these are not weights\n")),
        ("half a checkpoint", truncated(ckpt, "w.pt", 0.5)),
        ("a checkpoint cut 100 bytes short", truncated(ckpt, "w.pt", 0.99999)),
        ("a zip of text", written("w.pt", b"PK\x03\x04" + b"\x00" * 60)),
        ("a bare tensor", saved("w.pt", zeros((3, 3)))),
        ("a list", saved("w.pt", lambda: [1, 2, 3])),
        ("a pickle that runs a command", evil_pickle(kit, "w.pt")),
        ("a sealed checkpoint of an unknown architecture",
         resealed(ckpt, "w.pt", lambda p: p.update(arch="resnet9000"))),
        ("a sealed checkpoint with 3 labels for 7 classes",
         resealed(ckpt, "w.pt", lambda p: p.update(labels=["a", "b", "c"]))),
        ("a sealed checkpoint without its weights", resealed(ckpt, "w.pt", lambda p: p.pop("state_dict"))),
    ]
    no_pwned = absent("pwned")
    found = [Case(FAMILY, f"convert refuses {name}", convert, setup=setup, timeout=300,
                  check=lambda w, *rest: converted_nothing(w, *rest) or no_pwned(w, *rest)) for name, setup in bad]
    found += [Case(FAMILY, f"train --init refuses {name}", init, setup=setup, timeout=300,
                   check=lambda w, *rest: absent("t", "pwned")(w, *rest))
              for name, setup in bad if name in ("half a checkpoint", "a pickle that runs a command", "a bare tensor")]
    return found


def states(kit: Kit) -> list[Case]:
    """--resume with a state that is missing or belongs to another run."""
    state = kit.assets / "state/m.pt.train-state"
    resume = ["--epochs", "2", "--resume", "--out", "t/m.pt"]
    train = train_argv(kit)
    other_model = [a if a != "lraspp_mobilenet_v3_large" else "deeplabv3_mobilenet_v3_large" for a in train]
    return [
        Case(FAMILY, "resume without a state", [*train, *resume], check=absent("t")),
        Case(FAMILY, "resume a state of another model", [*other_model, *resume], timeout=300,
             setup=copy(state, "t/m.pt.train-state"), check=absent("t/m.pt")),
        Case(FAMILY, "resume a state that is a folder", [*train, *resume], check=absent("t/m.pt"),
             setup=lambda w: (w / "t/m.pt.train-state").mkdir(parents=True)),
        Case(FAMILY, "resume an empty state", [*train, *resume], setup=written("t/m.pt.train-state", b""),
             check=absent("t/m.pt")),
        # The state holds epoch 1 of 1: the run is complete, and resuming it publishes its weights (exit 0).
        Case(FAMILY, "resume a finished run publishes it", [*train, "--epochs", "1", "--resume", "--out", "t/m.pt"],
             setup=copy(state, "t/m.pt.train-state"), expect="ok"),
    ]


def cases(kit: Kit) -> list[Case]:
    ckpt, state = kit.assets / "ckpt.pt", kit.assets / "state/m.pt.train-state"
    convert = ["convert", "--weights", "w.pt", "--resolution", "64", "--verify-images", "1", "--out", "out"]
    init = ["train", "--data", kit.a("voc"), "--init", "w.pt", "--resolution", "64", "--epochs", "1", "--workers", "0",
            "--batch-size", "2", "--max-steps-per-epoch", "1", "--out", "t/m.pt"]
    resume = [*train_argv(kit), "--epochs", "2", "--resume", "--out", "t/m.pt"]
    saved = "t/m.pt.train-state"
    found = [
        Case(FAMILY, "convert refuses flipped tensor", convert, setup=flipped(ckpt, -1), check=converted_nothing,
             timeout=300),
        Case(FAMILY, "train --init refuses flipped tensor", init, setup=flipped(ckpt, -1), check=absent("t/m.pt"),
             timeout=300),
    ]
    # A flip anywhere in the file: refused, or (in zip padding or an unread record) the same weights load, and then
    # converting them is right too.
    found += [Case(FAMILY, f"convert with a byte flipped at {where}", convert, expect="any", setup=flipped(ckpt, where),
                   timeout=300) for where in (0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97)]
    found += [
        Case(FAMILY, "resume refuses NaN weight", resume, setup=resealed(state, saved, nan_weight),
             check=absent("t/m.pt"), timeout=300),
        Case(FAMILY, "resume refuses Inf moment", resume, setup=resealed(state, saved, inf_moment),
             check=absent("t/m.pt"), timeout=300),
        Case(FAMILY, "resume refuses text epoch", resume, setup=resealed(state, saved, lambda s: s.update(epoch="1")),
             check=absent("t/m.pt")),
        Case(FAMILY, "resume refuses list config", resume, setup=resealed(state, saved, lambda s: s.update(config=[1])),
             check=absent("t/m.pt")),
        Case(FAMILY, "resume refuses wrong shapes", resume, setup=resealed(state, saved, wrong_shape),
             check=absent("t/m.pt")),
        Case(FAMILY, "resume refuses flipped state", resume, setup=chain(lambda w: (w / "t").mkdir(),
                                                                          flipped(state, -1, saved)),
             check=absent("t/m.pt")),
        Case(FAMILY, "resume refuses stale digest", resume,
             setup=resealed(state, saved, lambda s: s["history"].append({"x": 1}), reseal=False),
             check=absent("t/m.pt")),
        Case(FAMILY, "convert refuses edited labels under stale digest", convert,
             setup=resealed(ckpt, "w.pt", lambda p: p.update(labels=["background", *"abcdef"]), reseal=False),
             check=converted_nothing, timeout=300),
        Case(FAMILY, "convert refuses garbage digest", convert, check=converted_nothing, timeout=300,
             setup=resealed(ckpt, "w.pt", lambda p: None, digest=123)),
        Case(FAMILY, "train --init refuses sealed NaN checkpoint", init,
             setup=resealed(ckpt, "w.pt", lambda p: p["state_dict"][next(iter(p["state_dict"]))].view(-1)
                            .__setitem__(0, float("nan"))), check=absent("t/m.pt")),
    ]
    found += [Case(FAMILY, f"train refuses non-finite {mode}", [mode, *train_argv(kit), "--epochs", "2", *extra,
                                                               "--out", "t/m.pt"],
                   python=PATCHED_TRAIN, check=absent("t/m.pt"), timeout=300)
              for mode, extra in (("loss", []), ("weights", []), ("fp16", ["--save-dtype", "fp16"]))]
    found += [
        Case(FAMILY, "sample without digest still loads", [], expect="ok",
             python="from edgeseg.models.weights import load_weights; assert load_weights('sample').sha256"),
        Case(FAMILY, "torchvision state dict loads", [kit.a("tv.pth")], expect="ok",
             python="import sys; from edgeseg.models.weights import load_weights; "
                    "assert load_weights(sys.argv[1], arch='lraspp_mobilenet_v3_large').num_classes == 3"),
        Case(FAMILY, "train refuses lr 1e38", [*train_argv(kit), "--lr", "1e38", "--out", "t/m.pt"], check=absent("t")),
    ]
    return found + weights_files(kit) + states(kit)
