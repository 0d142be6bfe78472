"""Multi-scale training crops (AugmentedPairs): the network's view of a native scene at each deployment size."""

import math

import cv2
import numpy as np
import pytest

from edgeseg.models.train import AugmentedPairs
from edgeseg.scenes import SceneConfig, generate_scene, scene_rng


@pytest.fixture(scope="module")
def scene():
    return generate_scene(scene_rng(0, "val", 1), SceneConfig(height=512, width=512))


@pytest.mark.parametrize("f", [0.3125, 0.625, 1.0])
def test_a_view_is_the_scene_resized_as_the_runtime_resizes_it_then_cropped(scene, f):
    """Deployment at R resizes the native frame with cv2.resize (bilinear): training crops must show
    the same pixels, aliasing included, not a smoother or shifted version."""
    image, mask = scene
    side = round(512 * f)
    crop = 64
    resized = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
    y, x = 40, 24
    view, view_mask = AugmentedPairs.view(image, mask, f, y, x, False, crop)
    assert np.abs(view.astype(int) - resized[y:y + crop, x:x + crop].astype(int)).max() <= 1
    flipped, flipped_mask = AugmentedPairs.view(image, mask, f, y, x, True, crop)
    # Mirrored: the same window of the mirrored scene.
    mirror = cv2.resize(image[:, ::-1], (side, side), interpolation=cv2.INTER_LINEAR)
    x_m = side - x - crop
    assert np.abs(flipped.astype(int) - mirror[y:y + crop, x_m:x_m + crop].astype(int)).max() <= 1
    assert np.mean(flipped_mask != view_mask[:, ::-1]) < 0.01  # nearest rounding may differ on a few pixels


def test_outside_the_scene_is_black_and_ignored(scene):
    image, mask = scene
    view, view_mask = AugmentedPairs.view(image, mask, 0.1, -10.0, -10.0, False, 96)  # scene is 51 px: padded
    assert (view_mask[80:, :] == 255).all() and (view[80:, :] == 0).all()
    assert (view_mask[20:40, 20:40] != 255).any()


def test_scales_are_log_uniform_over_the_deployment_range():
    """Every octave of deployment size gets the same share of crops: half below the geometric mean."""
    pairs = AugmentedPairs(dataset=None, crop=256, scale=(0.5, 1.6), augment=True, base=640)
    rng = np.random.default_rng(0)
    sides = np.array([pairs.draw_view(rng, 1024, 1024)[0] * 1024 for _ in range(4000)])
    assert sides.min() >= 0.5 * 640 - 1e-6 and sides.max() <= 1.6 * 640 + 1e-6
    assert sides.min() < 0.52 * 640 and sides.max() > 1.55 * 640
    below = np.mean(sides < 640 * math.sqrt(0.5 * 1.6))
    assert below == pytest.approx(0.5, abs=0.03)


def test_batchnorm_statistics_come_from_the_training_views(tmp_path):
    """The precise-BN pass sees the multi-scale crops training saw (this epoch's), not whole scenes at
    --resolution: statistics tuned to one size cost accuracy at the other deployment sizes."""
    import torch

    from edgeseg.datasets import open_dataset
    from edgeseg.models.train import _loaders
    from edgeseg.models.train_config import TrainConfig
    from edgeseg.scenes import write_voc_dataset

    root = write_voc_dataset(tmp_path / "s", train=4, val=1, progress=False, config=SceneConfig(height=256, width=256))
    config = TrainConfig(data=str(root), resolution=128, crop=96, scale_min=0.5, scale_max=2.0, batch_size=2)
    train_set = open_dataset(root, "train")
    loader, bn_loader, (pairs, held) = _loaders(config, train_set, torch.Generator().manual_seed(0))
    bn_pairs = bn_loader.dataset
    assert held is bn_pairs and loader.dataset is pairs
    assert bn_pairs.augment and bn_pairs.crop == 96 and bn_pairs.scale == (0.5, 2.0) and bn_pairs.base == 128
    bn_pairs.epoch = pairs.epoch = 3
    image, mask = bn_pairs[1]
    again, again_mask = pairs[1]  # the same view training drew for image 1 in epoch 3
    assert image.shape == (3, 96, 96) and torch.equal(image, again) and torch.equal(mask, again_mask)
