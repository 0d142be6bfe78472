"""Where weights come from: torchvision's enum, a torchvision state dict, or an edgeseg checkpoint.

The class count and label names always come from the weights themselves: the classifier's
shape, the enum's metadata, or the labels the edgeseg checkpoint carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgeseg.conventions import DEFAULT_ARCH, sample_checkpoint_path
from edgeseg.errors import ConfigError, WeightsError, first_line
from edgeseg.label_names import read_label_names
from edgeseg.manifest import sha256_file
from edgeseg.models.checkpoint_digest import DIGEST_KEY, check_digest, write_sealed
from edgeseg.models.torch_file import load_torch_file
from edgeseg.models.zoo import ZOO, build_model, zoo_entry

CHECKPOINT_FORMAT = "edgeseg-checkpoint/1"


@dataclass
class LoadedWeights:
    arch: str
    num_classes: int
    labels: tuple[str, ...]
    state_dict: dict[str, torch.Tensor]
    sha256: str | None
    source: str
    trained_resolution: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # ASPP image pooling over this many input pixels at most (convert.image_pooling); None: global.
    image_pool_window: int | None = None

    @property
    def mean(self) -> tuple[float, float, float]:
        """The per-channel mean of the input normalization these weights were trained with (RGB, 0-1)."""
        return zoo_entry(self.arch).mean

    @property
    def std(self) -> tuple[float, float, float]:
        """The per-channel standard deviation of that normalization."""
        return zoo_entry(self.arch).std

    def build(self) -> torch.nn.Module:
        """The model in eval mode, in float32, with these weights loaded (aux head dropped)."""
        from edgeseg.models.image_pooling import set_image_pool_window

        model = build_model(self.arch, num_classes=self.num_classes, aux_loss=False)
        set_image_pool_window(model, self.arch, self.image_pool_window)
        state = {k: v.float() if v.is_floating_point() else v
                 for k, v in self.state_dict.items() if not k.startswith("aux_classifier.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = first_line(exc)
            raise WeightsError(f"{self.source}: does not fit {self.arch} with {self.num_classes} classes "
                               f"({first})") from None
        return model.eval()


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or Inf: such a model outputs NaN, and NaN argmaxes to class 0 everywhere."""
    bad_total, first = 0, None
    for key, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            bad = int(tensor.numel() - torch.isfinite(tensor).sum())
            if bad and first is None:
                first = key
            bad_total += bad
    if bad_total:
        raise WeightsError(f"{source}: weights hold {bad_total} non-finite values (NaN/Inf), the first in {first}")


def _class_count(arch: str, state: dict[str, torch.Tensor], source: str) -> int:
    entry = zoo_entry(arch)
    counts = {int(state[k].shape[0]) for k in entry.classifier_keys if k in state}
    if not counts:
        guess = _guess_arch(state)
        hint = f"; it looks like {guess} (pass --model {guess})" if guess and guess != arch else ""
        raise WeightsError(f"{source}: not a {arch} state dict (no {entry.classifier_keys[0]}){hint}")
    if len(counts) > 1:
        raise WeightsError(f"{source}: classifier layers disagree on the class count ({sorted(counts)})")
    return counts.pop()


def _guess_arch(state: dict[str, torch.Tensor]) -> str | None:
    """Which zoo model's keys a state dict matches, for a helpful error message."""
    keys = {k for k in state if not k.startswith("aux_classifier.")}
    for name in ZOO:
        with torch.device("meta"):
            expected = set(build_model(name, num_classes=2).state_dict())
        if keys == expected:
            return name
    return None


def _torchvision_labels(arch: str, path: Path, sha: str, num_classes: int) -> tuple[str, ...] | None:
    """Label names of a torchvision release file, recognised by its name's hash prefix."""
    for weights in zoo_entry(arch).weights_enum:
        filename = weights.url.rsplit("/", 1)[-1]
        prefix = filename.rsplit("-", 1)[-1].split(".")[0]
        if (path.name == filename or sha.startswith(prefix)) and len(weights.meta["categories"]) == num_classes:
            return tuple(weights.meta["categories"])
    return None


def _read_labels_file(path: Path, num_classes: int) -> tuple[str, ...]:
    names = read_label_names(path, WeightsError)
    if len(names) != num_classes:
        raise WeightsError(f"{path}: {len(names)} label names but the weights have {num_classes} classes")
    return names


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    return load_torch_file(path)


# What an edgeseg checkpoint must carry, and of which type (a hand-edited or foreign file may not).
CHECKPOINT_FIELDS = {"arch": str, "num_classes": int, "labels": (list, tuple), "state_dict": dict}


def _check_checkpoint_fields(payload: dict, path: Path) -> None:
    for key, kind in CHECKPOINT_FIELDS.items():
        if key not in payload:
            raise WeightsError(f"{path}: edgeseg checkpoint lacks '{key}'")
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise WeightsError(f"{path}: edgeseg checkpoint field '{key}' has the wrong type "
                               f"({type(payload[key]).__name__})")
    if payload["arch"] not in ZOO:
        raise WeightsError(f"{path}: edgeseg checkpoint names an unknown architecture '{payload['arch']}'")
    if not all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values()):
        raise WeightsError(f"{path}: edgeseg checkpoint's state_dict holds something other than tensors")


def load_weights(spec: str, *, arch: str | None = None, labels_file: Path | None = None) -> LoadedWeights:
    """Resolve `--weights`: 'sample', 'torchvision', or a path to a state dict / edgeseg checkpoint."""
    if spec == "sample":
        path = sample_checkpoint_path()
        if not path.is_file():
            raise WeightsError(f"{path}: the sample checkpoint is missing from this installation")
        return load_weights(str(path), arch=arch, labels_file=labels_file)
    if spec == "torchvision":
        return _load_torchvision(arch or DEFAULT_ARCH)
    path = Path(spec)
    payload = _load_file(path)
    check_digest(payload, path)  # before anything is read from it: flipped bytes are not a different model
    sha = sha256_file(path)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        if labels_file is not None:  # its own labels are the ones it was trained with: never silently replaced
            raise ConfigError(f"--labels {labels_file}: {path} is an edgeseg checkpoint, which carries its own "
                              "label names; leave --labels out")
        _check_checkpoint_fields(payload, path)
        ckpt_arch = payload["arch"]
        if arch is not None and arch != ckpt_arch:
            raise WeightsError(f"{path}: is a {ckpt_arch} checkpoint, not {arch}")
        weights = LoadedWeights(
            arch=ckpt_arch, num_classes=int(payload["num_classes"]), labels=tuple(payload["labels"]),
            state_dict=payload["state_dict"], sha256=sha, source=str(path),
            trained_resolution=payload.get("resolution"),
            metadata={k: v for k, v in payload.items() if k not in ("state_dict", "format", DIGEST_KEY)},
        )
        if len(weights.labels) != weights.num_classes:
            raise WeightsError(f"{path}: carries {len(weights.labels)} label names for {weights.num_classes} classes")
        from edgeseg.models.image_pooling import check_window

        weights.image_pool_window = payload.get("image_pool_window")
        check_window(ckpt_arch, weights.image_pool_window, str(path), WeightsError)
        check_finite(weights.state_dict, str(path))
        return weights
    if isinstance(payload, dict) and "model" in payload and isinstance(payload["model"], dict):
        payload = payload["model"]  # torchvision references' training checkpoints nest the state dict
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise WeightsError(f"{path}: neither a state dict nor an edgeseg checkpoint")
    arch = arch or DEFAULT_ARCH
    num_classes = _class_count(arch, payload, str(path))
    check_finite(payload, str(path))
    if labels_file is not None:
        labels = _read_labels_file(labels_file, num_classes)
    else:
        labels = _torchvision_labels(arch, path, sha, num_classes) or tuple(f"class_{i}" for i in range(num_classes))
    return LoadedWeights(arch=arch, num_classes=num_classes, labels=labels, state_dict=payload, sha256=sha,
                         source=str(path))


def _load_torchvision(arch: str) -> LoadedWeights:
    weights = zoo_entry(arch).weights_enum["DEFAULT"]
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # urllib/hub raise many types; every one means "not downloadable here"
        raise WeightsError(
            f"{weights.url}: cannot download torchvision's {arch} weights ({type(exc).__name__}); "
            f"pass --weights PATH to a local copy of that file"
        ) from None
    check_finite(state, f"torchvision:{weights}")
    return LoadedWeights(
        arch=arch, num_classes=len(weights.meta["categories"]), labels=tuple(weights.meta["categories"]),
        state_dict=state, sha256=None, source=f"torchvision:{weights}",
        metadata={"torchvision_metrics": weights.meta.get("_metrics")},
    )


def save_checkpoint(
    path: Path, model: torch.nn.Module, *, arch: str, labels: tuple[str, ...], resolution: int,
    dtype: torch.dtype = torch.float32, extra: dict[str, Any] | None = None,
) -> None:
    """Write an edgeseg checkpoint atomically: the weights plus everything needed to use them, sealed with
    the digest every load checks (models.checkpoint_digest). `train` checks the weights are finite first
    (models.train_state.check_trainable); loading refuses non-finite ones either way."""
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).clone()
             for k, v in model.state_dict().items() if not k.startswith("aux_classifier.")}
    payload = {
        "format": CHECKPOINT_FORMAT, "arch": arch, "num_classes": len(labels), "labels": list(labels),
        "resolution": resolution, "state_dict": state, **(extra or {}),
    }
    write_sealed(Path(path), payload)
