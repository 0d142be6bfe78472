"""`edgeseg train`: fine-tune a zoo model on a labelled folder (VOC layout or images/ + masks/).

Starts from an edgeseg checkpoint (`--init sample` or a file: fine-tuning keeps its labels unless the
data's differ, then the classifier head is re-initialised), from torchvision's weights where they can
be had, or from scratch.
After short training BatchNorm's running statistics lag far behind the weights, and eval mode
then predicts background everywhere; so before every validation and before saving, the
statistics are recomputed over training images (a "precise BN" pass).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgeseg.atomic import crash_point
from edgeseg.conventions import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from edgeseg.datasets import SegmentationDataset, open_dataset
from edgeseg.errors import ConfigError, DatasetError, TrainingError
from edgeseg.metrics import ConfusionMatrix
from edgeseg.models.image_pooling import check_window, set_image_pool_window
from edgeseg.models.train_config import TrainConfig, check_init, parse_image_pool_window
from edgeseg.models.train_state import check_trainable, claim_out, diverged, save_state, state_path
from edgeseg.models.train_state import resume as resume_state
from edgeseg.models.weights import LoadedWeights, load_weights, save_checkpoint
from edgeseg.models.zoo import build_model, zoo_entry
from edgeseg.runtime.preprocess import InputSpec, preprocess_rgb

_MEAN = np.asarray(IMAGENET_MEAN, np.float32) * 255
_STD = np.asarray(IMAGENET_STD, np.float32) * 255


class AugmentedPairs(torch.utils.data.Dataset):
    """Multi-scale crops, horizontal flip and colour jitter, as torchvision's references.

    Each training crop shows the scene as the network sees it at some deployment size: the scene's
    short side is scaled to `base` x s, s log-uniform in `scale` (so every octave of deployment
    size gets the same share of crops), and a `crop` window is cut from it. Scaling and cropping are
    one affine warp of the native image with the runtime's own interpolation (bilinear, as
    cv2.resize in preprocessing), so a 1024-pixel scene is never resized whole just to cut 256 pixels
    out of it, and the downscaled detail aliases as it does at deployment.
    """

    def __init__(self, dataset: SegmentationDataset, crop: int, scale: tuple[float, float], augment: bool,
                 base: int | None = None) -> None:
        self.dataset, self.crop, self.scale, self.augment = dataset, crop, scale, augment
        self.base = base or crop
        # The augmentation of image `index` in epoch `epoch` is drawn from (seed, epoch, index) alone: the
        # same in a resumed run as in an uninterrupted one, whichever worker process draws it.
        self.seed, self.epoch = 0, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, mask = self.dataset.pair(index)
        if self.augment:
            image, mask = self._augment(image, mask, np.random.default_rng((self.seed, self.epoch, index)))
        else:
            image = cv2.resize(image, (self.crop, self.crop), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (self.crop, self.crop), interpolation=cv2.INTER_NEAREST)
        x = (np.asarray(image, np.float32) - _MEAN) / _STD
        image_tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        return image_tensor, torch.from_numpy(np.ascontiguousarray(mask)).long()

    def _augment(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        f, y, x, flip = self.draw_view(rng, image.shape[0], image.shape[1])
        image, mask = self.view(image, mask, f, y, x, flip, self.crop)
        img = image.astype(np.float32)
        img = img * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)  # contrast, brightness
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.7, 1.3)  # saturation
        return np.clip(img, 0, 255), mask

    def draw_view(self, rng: np.random.Generator, height: int, width: int) -> tuple[float, float, float, bool]:
        """Scale factor f (native -> network pixels), crop origin (y, x) in scaled pixels, flip."""
        lo, hi = self.scale
        f = math.exp(rng.uniform(math.log(lo), math.log(hi))) * self.base / min(height, width)
        scaled_h, scaled_w = height * f, width * f
        # A scene smaller than the crop is placed at a random offset and padded (black image,
        # ignored label), so padding never biases one corner.
        y = rng.uniform(min(0.0, scaled_h - self.crop), max(0.0, scaled_h - self.crop))
        x = rng.uniform(min(0.0, scaled_w - self.crop), max(0.0, scaled_w - self.crop))
        return f, y, x, bool(rng.random() < 0.5)

    @staticmethod
    def view(image: np.ndarray, mask: np.ndarray, f: float, y: float, x: float, flip: bool,
             crop: int) -> tuple[np.ndarray, np.ndarray]:
        """The `crop` x `crop` window at (y, x) of the scene scaled by f (and mirrored): one affine warp,
        bilinear like cv2.resize (its pixel-centre convention: dst = f * src + (f - 1) / 2)."""
        sx = -f if flip else f
        tx = (crop - 1 + x - (f - 1) / 2) if flip else ((f - 1) / 2 - x)
        warp = np.array([[sx, 0.0, tx], [0.0, f, (f - 1) / 2 - y]], np.float64)
        image = cv2.warpAffine(image, warp, (crop, crop), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        mask = cv2.warpAffine(mask, warp, (crop, crop), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_INDEX)
        return image, mask


@torch.no_grad()
def recompute_bn_statistics(model: torch.nn.Module, loader, max_images: int, progress: bool = False) -> None:
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
    total = min(max_images, len(loader.dataset))
    with tqdm(total=total, desc="BatchNorm statistics", disable=not progress, leave=False, unit="img") as bar:
        seen = 0
        for images, _ in loader:
            model(images)
            seen += images.shape[0]
            bar.update(images.shape[0])
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


def init_weights(config: TrainConfig) -> LoadedWeights | None:
    """The checkpoint `--init` names (sample or a file), loaded and checked against --model; else None."""
    if config.init in ("torchvision", "scratch"):
        return None
    weights = load_weights(config.init)
    if weights.arch != config.arch:
        raise ConfigError(f"--init {config.init}: is a {weights.arch} checkpoint but --model is {config.arch}; "
                          f"pass --model {weights.arch}")
    return weights


def _from_checkpoint(model: torch.nn.Module, weights: LoadedWeights, labels: tuple[str, ...]) -> tuple[str, str | None]:
    """Load a checkpoint into `model`; the head too when the labels agree. Returns (init record, message)."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in weights.state_dict.items()}
    message = None
    if tuple(labels) != tuple(weights.labels):
        # Other classes: the classifier's last layer means nothing for them. Start it afresh.
        head = set(zoo_entry(weights.arch).classifier_keys)
        state = {k: v for k, v in state.items() if k not in head}
        message = (f"the data's labels ({', '.join(labels)}) differ from {Path(weights.source).name}'s "
                   f"({', '.join(weights.labels)}): the classifier head is re-initialised, the rest fine-tuned")
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in own and own[k].shape == v.shape}, strict=False)
    return f"checkpoint:{weights.source}", message


def initial_model(config: TrainConfig, labels: tuple[str, ...],
                  weights: LoadedWeights | None = None) -> tuple[torch.nn.Module, str]:
    """The model training starts from, and a record of where it came from."""
    model = build_model(config.arch, num_classes=len(labels))
    if weights is not None:
        init, message = _from_checkpoint(model, weights, labels)
        tqdm.write(f"fine-tuning from {weights.source}" + (f"; {message}" if message else ", keeping its labels"))
        return model, init
    if config.init == "scratch":
        return model, "scratch"
    # Fine-tune: backbone and ASPP from torchvision's weights, a fresh classifier for our classes.
    enum = zoo_entry(config.arch).weights_enum["DEFAULT"]
    try:
        state = enum.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # offline: any download error means the same thing
        tqdm.write(f"torchvision weights unavailable ({type(exc).__name__}); training from scratch")
        return model, "scratch"
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(compatible, strict=False)
    return model, f"torchvision:{enum}"


def image_pool_window(config: TrainConfig, weights: LoadedWeights | None) -> int | None:
    """The image-pooling window to train and save with: the option's, or the --init checkpoint's."""
    value = parse_image_pool_window(config.image_pool_window)
    if value == "init":
        return weights.image_pool_window if weights is not None else None
    window = None if value == "global" else int(value)
    check_window(config.arch, window, "--image-pool-window")
    return window


def _open_data(config: TrainConfig, weights: LoadedWeights | None):
    """(train set, val set, labels), checked in full before any training."""
    train_set = open_dataset(config.data, config.train_split)
    val_set = open_dataset(config.data, config.val_split)
    labels = train_set.labels
    if labels is None and weights is not None:
        labels = weights.labels  # a plain folder without labels.txt: the checkpoint names its classes
    if labels is None:
        raise ConfigError(f"{config.data}: no labels.txt naming the classes (one per line, background first)")
    used = train_set.check(len(labels)) | val_set.check(len(labels))
    if train_set.labels_assumed and max(used, default=0) < len(labels) - 1:
        raise DatasetError(
            f"{config.data}: has no labels.txt, so its classes would be taken as VOC's {len(labels)}, but its "
            f"masks use class ids up to {max(used, default=0)} only; write labels.txt naming its classes, one per "
            "line, background first")
    return train_set, val_set, tuple(labels)


def _loaders(config: TrainConfig, train_set: SegmentationDataset, generator: torch.Generator
             ) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader, tuple[AugmentedPairs, ...]]:
    """The training loader and the BN-pass loader, and their AugmentedPairs (each epoch sets their `epoch`)."""
    pairs = AugmentedPairs(train_set, config.crop or config.resolution, (config.scale_min, config.scale_max),
                           augment=True, base=config.resolution)
    pairs.seed = config.seed
    # Workers are started per epoch (not persistent), so each sees that epoch's `pairs.epoch`.
    loader = torch.utils.data.DataLoader(
        pairs, batch_size=config.batch_size, shuffle=True, drop_last=True, num_workers=config.workers,
        generator=generator,
    )
    # BatchNorm statistics are recomputed on what training showed the network: the same multi-scale
    # crops (the first `bn_images` training images, each epoch's own views), not whole images at one size,
    # which would tune the statistics to --resolution alone and cost accuracy at the other input sizes.
    bn_pairs = AugmentedPairs(train_set, config.crop or config.resolution, (config.scale_min, config.scale_max),
                              augment=True, base=config.resolution)
    bn_pairs.seed = config.seed
    bn_loader = torch.utils.data.DataLoader(bn_pairs, batch_size=config.batch_size)
    return loader, bn_loader, (pairs, bn_pairs)


def _train_epoch(model, loader, optimizer, config: TrainConfig, epoch: int, steps_per_epoch: int,
                 progress: bool) -> list[float]:
    """One epoch of AdamW with the poly schedule; returns the batch losses."""
    model.train()
    total_steps = steps_per_epoch * config.epochs
    losses: list[float] = []
    bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, unit="batch")
    for step, (images, targets) in enumerate(loader):
        if step >= steps_per_epoch:
            break
        lr = config.lr * (1 - (epoch * steps_per_epoch + step) / total_steps) ** 0.9  # poly schedule
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits = model(images)["out"]
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)
        value = loss.item()
        if not math.isfinite(value):  # one more step would carry NaN into every weight
            bar.close()
            raise TrainingError(diverged(config, f"the loss is {value} at epoch {epoch + 1}, batch {step + 1}"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(value)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.2e}")
        bar.update()
    bar.close()
    return losses


@torch.no_grad()
def _round_to(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Round the weights to the checkpoint's dtype in place, so what is scored is exactly what is saved."""
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(dtype))


def train(config: TrainConfig, out: Path, *, resume: bool = False, progress: bool = True,
          max_steps_per_epoch: int | None = None) -> dict:
    """Train, validate every epoch, keep resumable state beside `out`, write the checkpoint to `out`; no
    other `train` writes `out` meanwhile (refused in one line naming this one)."""
    zoo_entry(config.arch)  # the numbers were checked when `config` was made (TrainConfig.__post_init__)
    check_init(config.init)
    with claim_out(Path(out)):  # before an epoch of work, not after
        return _train(config, Path(out), resume, progress, max_steps_per_epoch)


def _train(config: TrainConfig, out: Path, resume: bool, progress: bool, max_steps_per_epoch: int | None) -> dict:
    torch.manual_seed(config.seed)
    weights = init_weights(config)
    pool_window = image_pool_window(config, weights)
    train_set, val_set, labels = _open_data(config, weights)
    model, init = initial_model(config, labels, weights)
    set_image_pool_window(model, config.arch, pool_window)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state_file = state_path(out)
    start_epoch, history = 0, []
    if resume:
        start_epoch, history, init = resume_state(state_file, config, model, optimizer)
        tqdm.write(f"resuming after epoch {start_epoch} of {config.epochs}")
    generator = torch.Generator().manual_seed(config.seed)
    loader, bn_loader, epoch_views = _loaders(config, train_set, generator)
    steps_per_epoch = min(len(loader), max_steps_per_epoch or len(loader))
    if steps_per_epoch == 0:
        raise ConfigError(f"{config.data}: {len(train_set)} training images is fewer than one batch of "
                          f"{config.batch_size}")
    save_dtype = {"fp32": torch.float32, "fp16": torch.float16}[config.save_dtype]
    scores: dict = {}
    for epoch in range(start_epoch, config.epochs):
        generator.manual_seed(config.seed + epoch)  # the same epoch sees the same batches after a resume
        for views in epoch_views:
            views.epoch = epoch
        started = time.time()
        losses = _train_epoch(model, loader, optimizer, config, epoch, steps_per_epoch, progress)
        recompute_bn_statistics(model, bn_loader, config.bn_images, progress=progress)
        check_trainable(model, config, f"epoch {epoch + 1}")  # before it is scored or saved
        if epoch == config.epochs - 1:
            _round_to(model, save_dtype)  # the last validation scores the weights exactly as saved
            check_trainable(model, config, f"rounding to {config.save_dtype}")
        scores = evaluate(model, val_set, config.resolution, len(labels), progress=progress)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_miou": scores["miou"],
                        "seconds": round(time.time() - started, 1)})
        tqdm.write(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}  val mIoU {scores['miou']:.2f}  "
                   f"pixel acc {scores['pixel_accuracy']:.2f}  ({time.time() - started:.0f} s)")
        save_state(state_file, {"config": asdict(config), "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "history": history,
                                "init": init, "torch_rng": torch.get_rng_state()})
        crash_point("train:epoch-saved")
    if not scores:  # resumed a run that had already finished (or --epochs 0): score what is saved, once
        _round_to(model, save_dtype)
        check_trainable(model, config, f"rounding to {config.save_dtype}")
        scores = evaluate(model, val_set, config.resolution, len(labels), progress=progress)
    save_checkpoint(
        out, model, arch=config.arch, labels=labels, resolution=config.resolution, dtype=save_dtype,
        extra={"dataset": str(config.data), "dataset_sha256": train_set.fingerprint(), "val_miou": scores["miou"],
               "val_scores": scores, "init": init, "history": history, "train_config": asdict(config),
               "image_pool_window": pool_window},
    )
    return {"checkpoint": str(out), "val_miou": scores["miou"], "history": history}
