"""`edgeseg train`: fine-tune a zoo model on a labelled folder (VOC layout or images/ + masks/).

Starts from torchvision's weights where they can be had and from scratch where they cannot.
After short training BatchNorm's running statistics lag far behind the weights, and eval mode
then predicts background everywhere; so before every validation and before saving, the
statistics are recomputed over training images (a "precise BN" pass).
"""

from __future__ import annotations

import os
import pickle
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgeseg.atomic import atomic_path, crash_point, ensure_writable_dir, locked_temp_file
from edgeseg.datasets import IGNORE_INDEX, SegmentationDataset, open_dataset
from edgeseg.metrics import ConfusionMatrix
from edgeseg.convert.models import IMAGENET_MEAN, IMAGENET_STD, build_model, zoo_entry
from edgeseg.convert.train_config import TrainConfig
from edgeseg.convert.weights import save_checkpoint
from edgeseg.convert.resolution import MAX_SIDE
from edgeseg.errors import ConfigError, DatasetError, WeightsError
from edgeseg.runtime.preprocess import InputSpec, preprocess_rgb


_MEAN = np.asarray(IMAGENET_MEAN, np.float32) * 255
_STD = np.asarray(IMAGENET_STD, np.float32) * 255


class AugmentedPairs(torch.utils.data.Dataset):
    """Scale jitter, pad-and-crop, horizontal flip and colour jitter, as torchvision's references."""

    def __init__(self, dataset: SegmentationDataset, crop: int, scale: tuple[float, float], augment: bool,
                 base: int | None = None) -> None:
        # Scale jitter is relative to `base` (the evaluation size), so objects keep the sizes they
        # have at evaluation on average even when the crop is smaller.
        self.dataset, self.crop, self.scale, self.augment = dataset, crop, scale, augment
        self.base = base or crop
        # The augmentation of image `index` in epoch `epoch` is drawn from (seed, epoch, index) alone: the
        # same in a resumed run as in an uninterrupted one, whichever worker process draws it.
        self.seed, self.epoch = 0, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, mask = self.dataset.pair(index)
        crop = self.crop
        if not self.augment:
            image = cv2.resize(image, (crop, crop), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (crop, crop), interpolation=cv2.INTER_NEAREST)
        else:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            side = rng.uniform(*self.scale) * self.base
            f = side / min(image.shape[:2])
            size = (max(int(round(image.shape[1] * f)), 1), max(int(round(image.shape[0] * f)), 1))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            ph, pw = max(crop - image.shape[0], 0), max(crop - image.shape[1], 0)
            if ph or pw:
                image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
                mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
            y = int(rng.integers(0, image.shape[0] - crop + 1))
            x = int(rng.integers(0, image.shape[1] - crop + 1))
            image, mask = image[y:y + crop, x:x + crop], mask[y:y + crop, x:x + crop]
            if rng.random() < 0.5:
                image, mask = image[:, ::-1], mask[:, ::-1]
            img = image.astype(np.float32)
            img = img * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)  # contrast, brightness
            grey = img.mean(axis=2, keepdims=True)
            img = grey + (img - grey) * rng.uniform(0.7, 1.3)  # saturation
            image = np.clip(img, 0, 255)
        x = (np.asarray(image, np.float32) - _MEAN) / _STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), torch.from_numpy(np.ascontiguousarray(mask)).long()


@torch.no_grad()
def recompute_bn_statistics(model: torch.nn.Module, loader, max_images: int) -> None:
    """Replace BatchNorm running statistics by exact averages over `max_images` training images."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = model.training
    model.train()
    seen = 0
    for images, _ in loader:
        model(images)
        seen += images.shape[0]
        if seen >= max_images:
            break
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: SegmentationDataset, resolution: int, num_classes: int,
             progress: bool = False) -> dict:
    """mIoU of `model` on `dataset`: each image stretched to `resolution`, prediction resized back."""
    spec = InputSpec(height=resolution, width=resolution)
    matrix = ConfusionMatrix(num_classes)
    model.eval()
    for i in tqdm(range(len(dataset)), desc="validate", disable=not progress, leave=False, unit="img"):
        image, mask = dataset.pair(i)
        logits = model(torch.from_numpy(preprocess_rgb(image, spec)))["out"]
        pred = logits[0].argmax(0).numpy().astype(np.uint8)
        pred = cv2.resize(pred, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_NEAREST)
        matrix.update(mask, pred)
    return matrix.compute().to_dict()


def _initial_model(config: TrainConfig, num_classes: int) -> tuple[torch.nn.Module, str]:
    model = build_model(config.arch, num_classes=num_classes)
    if config.init == "scratch":
        return model, "scratch"
    # Fine-tune: backbone and ASPP from torchvision's weights, a fresh classifier for our classes.
    weights = zoo_entry(config.arch).weights_enum.DEFAULT
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # offline: any download error means the same thing
        tqdm.write(f"torchvision weights unavailable ({type(exc).__name__}); training from scratch")
        return model, "scratch"
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(compatible, strict=False)
    return model, f"torchvision:{weights}"


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".train-state")


def _check_writable(out: Path) -> None:
    """The checkpoint's place takes a file: a temporary made and removed there now, not after training."""
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a checkpoint file name such as model.pt")
    ensure_writable_dir(out.parent)
    try:
        probe, lock = locked_temp_file(out)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    probe.unlink(missing_ok=True)
    os.close(lock)


STATE_KEYS = ("config", "model", "optimizer", "epoch", "history", "init")


def _load_state(path: Path) -> dict:
    """The training state `--resume` continues from, or one line saying why it cannot be used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: training state is not readable (truncated or corrupt: {reason}); "
                           f"start a new run without --resume") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise WeightsError(f"{path}: training state lacks {', '.join(missing)}; start a new run without --resume")
    return state


def train(config: TrainConfig, out: Path, *, resume: bool = False, progress: bool = True,
          max_steps_per_epoch: int | None = None) -> dict:
    """Train, validate every epoch, keep resumable state beside `out`, write the checkpoint to `out`."""
    zoo_entry(config.arch)
    if config.resolution % 8 or config.resolution < 64 or config.resolution > MAX_SIDE:
        raise ConfigError(f"--resolution {config.resolution}: must be a multiple of 8 from 64 to {MAX_SIDE}")
    _check_writable(Path(out))  # before an epoch of work, not after
    torch.manual_seed(config.seed)
    train_set = open_dataset(config.data, config.train_split)
    val_set = open_dataset(config.data, config.val_split)
    labels = train_set.labels
    if labels is None:
        raise ConfigError(f"{config.data}: no labels.txt naming the classes (one per line, background first)")
    num_classes = len(labels)
    used = train_set.check(num_classes) | val_set.check(num_classes)
    if train_set.labels_assumed and max(used, default=0) < num_classes - 1:
        raise DatasetError(
            f"{config.data}: has no labels.txt, so its classes would be taken as VOC's {num_classes}, but its masks use "
            f"class ids up to {max(used, default=0)} only; write labels.txt naming its classes, one per line, background first")
    dataset_sha = train_set.fingerprint()

    state_path = _state_path(out)
    model, init = _initial_model(config, num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_epoch, history = 0, []
    if resume:
        if not state_path.is_file():
            raise WeightsError(f"{state_path}: no training state to resume from")
        state = _load_state(state_path)
        if state["config"] != asdict(config) | {"epochs": state["config"]["epochs"]}:
            raise ConfigError(f"{state_path}: was written with other training options; start a new run instead of --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, init = state["epoch"], state["history"], state["init"]
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        tqdm.write(f"resuming after epoch {start_epoch} of {config.epochs}")

    generator = torch.Generator().manual_seed(config.seed)
    pairs = AugmentedPairs(train_set, config.crop or config.resolution, (config.scale_min, config.scale_max),
                           augment=True, base=config.resolution)
    pairs.seed = config.seed
    # Workers are started per epoch (not persistent) so that each sees that epoch's `pairs.epoch`.
    loader = torch.utils.data.DataLoader(
        pairs, batch_size=config.batch_size, shuffle=True, drop_last=True, num_workers=config.workers,
        generator=generator,
    )
    bn_loader = torch.utils.data.DataLoader(
        AugmentedPairs(train_set, config.resolution, (1.0, 1.0), augment=False), batch_size=config.batch_size,
    )
    steps_per_epoch = min(len(loader), max_steps_per_epoch or len(loader))
    if steps_per_epoch == 0:
        raise ConfigError(f"{config.data}: {len(train_set)} training images is fewer than one batch of {config.batch_size}")
    total_steps = steps_per_epoch * config.epochs
    for epoch in range(start_epoch, config.epochs):
        model.train()
        generator.manual_seed(config.seed + epoch)  # the same epoch sees the same batches after a resume
        pairs.epoch = epoch
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, unit="batch")
        losses, started = [], time.time()
        for step, (images, targets) in enumerate(loader):
            if step >= steps_per_epoch:
                break
            global_step = epoch * steps_per_epoch + step
            lr = config.lr * (1 - global_step / total_steps) ** 0.9  # poly schedule
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                logits = model(images)["out"]
            loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.2e}")
            bar.update()
        bar.close()
        recompute_bn_statistics(model, bn_loader, config.bn_images)
        scores = evaluate(model, val_set, config.resolution, num_classes, progress=progress)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_miou": scores["miou"],
                        "seconds": round(time.time() - started, 1)})
        tqdm.write(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}  val mIoU {scores['miou']:.2f}  "
                   f"pixel acc {scores['pixel_accuracy']:.2f}  ({time.time() - started:.0f} s)")
        with atomic_path(state_path) as tmp:
            torch.save({"config": asdict(config), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "epoch": epoch + 1, "history": history, "init": init,
                        "torch_rng": torch.get_rng_state()}, tmp)  # dropout draws from it: restored on resume
        crash_point("train:epoch-saved")

    # Score exactly what is saved: the weights rounded to the checkpoint's dtype.
    save_dtype = {"fp32": torch.float32, "fp16": torch.float16}[config.save_dtype]
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(save_dtype))
    final = evaluate(model, val_set, config.resolution, num_classes, progress=progress)
    save_checkpoint(
        out, model, arch=config.arch, labels=labels, resolution=config.resolution,
        dtype=save_dtype,
        extra={"dataset": str(config.data), "dataset_sha256": dataset_sha, "val_miou": final["miou"],
               "val_scores": final, "init": init, "history": history, "train_config": asdict(config)},
    )
    return {"checkpoint": str(out), "val_miou": final["miou"], "history": history}
