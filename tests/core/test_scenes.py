"""The synthetic scene generator: native-resolution scenes in which resolution matters.

Scenes are generated small here (the suite must stay fast) except where the point is the
native 1024-pixel default.
"""

import hashlib

import cv2
import numpy as np
import pytest

from edgeseg.datasets import open_dataset
from edgeseg.errors import ConfigError
from edgeseg.metrics import ConfusionMatrix
from edgeseg.scenes import (
    IGNORE_INDEX,
    SYNTHETIC_LABELS,
    SceneConfig,
    generate_scene,
    scene_rng,
    stored_scene,
    write_voc_dataset,
)

SMALL = SceneConfig(height=256, width=256)


def test_default_scene_is_native_1024_with_ground_truth_at_that_size():
    image, mask = generate_scene(scene_rng(0, "val", 0))
    assert image.shape == (1024, 1024, 3) and image.dtype == np.uint8
    assert mask.shape == (1024, 1024) and mask.dtype == np.uint8


def test_any_size_on_request_including_non_square():
    image, mask = generate_scene(scene_rng(0, "val", 0), SceneConfig(height=96, width=160))
    assert image.shape == (96, 160, 3) and mask.shape == (96, 160)


@pytest.mark.parametrize("config", [{"height": 8, "width": 64}, {"min_objects": 5, "max_objects": 2}])
def test_impossible_scene_configs_are_refused(config):
    with pytest.raises(ConfigError):
        SceneConfig(**config)


def test_scenes_are_deterministic_and_cover_every_class():
    a_img, a_mask = generate_scene(scene_rng(7, "val", 3), SMALL)
    b_img, b_mask = generate_scene(scene_rng(7, "val", 3), SMALL)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    other_img, _ = generate_scene(scene_rng(7, "val", 4), SMALL)
    assert not np.array_equal(a_img, other_img)
    seen = set()
    for i in range(30):
        seen |= set(np.unique(generate_scene(scene_rng(0, "train", i), SMALL)[1]).tolist())
    assert seen == set(range(len(SYNTHETIC_LABELS))) | {IGNORE_INDEX}


def test_objects_range_from_a_few_pixels_to_frame_filling():
    areas_px = []
    for i in range(40):
        mask = generate_scene(scene_rng(0, "train", i), SMALL)[1]
        count, _, stats, _ = cv2.connectedComponentsWithStats(((mask > 0) & (mask < IGNORE_INDEX)).astype(np.uint8))
        areas_px += stats[1:count, cv2.CC_STAT_AREA].tolist()
    assert min(areas_px) <= 10  # a few native pixels (inside the ignore band)
    assert max(areas_px) > 0.4 * SMALL.height * SMALL.width


def _thin_components(mask: np.ndarray) -> int:
    """Labelled components at most ~6 px across (distance-transform width) yet over 40 px long."""
    count, comp, stats, _ = cv2.connectedComponentsWithStats(((mask > 0) & (mask < IGNORE_INDEX)).astype(np.uint8))
    thin = 0
    for k in range(1, count):
        piece = (comp == k).astype(np.uint8)
        width = 2 * cv2.distanceTransform(np.pad(piece, 1), cv2.DIST_L2, 3).max()
        if width <= 6 and max(stats[k, cv2.CC_STAT_WIDTH], stats[k, cv2.CC_STAT_HEIGHT]) > 40:
            thin += 1
    return thin


def test_thin_structures_are_a_few_native_pixels_wide():
    """Rings, crosses and stripes a few pixels wide: the detail a 320 input cannot hold."""
    assert sum(_thin_components(generate_scene(scene_rng(0, "train", i), SMALL)[1]) for i in range(30)) >= 5


def _resampled_truth_miou(mask: np.ndarray, size: int) -> float:
    """mIoU of the ground truth itself after a round trip through `size` pixels (nearest)."""
    h, w = mask.shape
    small = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    back[back == IGNORE_INDEX] = 0
    matrix = ConfusionMatrix(len(SYNTHETIC_LABELS))
    matrix.update(mask, back)
    return matrix.compute().to_dict()["miou"]


def test_detail_is_lost_at_lower_input_sizes():
    """Even a perfect model is capped by its input size at native scoring: the ground truth squeezed
    through 320 pixels scores clearly less than through 640, and 640 less than through 1024 (exact)."""
    masks = [generate_scene(scene_rng(0, "val", i))[1] for i in range(2)]
    scores = {r: np.mean([_resampled_truth_miou(m, r) for m in masks]) for r in (320, 640, 1024)}
    assert scores[1024] == pytest.approx(100.0)
    assert scores[320] < scores[640] - 1.0 < scores[1024] - 2.0


def test_written_set_is_byte_identical_for_the_same_seed(tmp_path):
    def digest(root):
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(p.name.encode() + p.read_bytes())
        return h.hexdigest()

    a = write_voc_dataset(tmp_path / "a", train=3, val=2, seed=5, progress=False, config=SMALL)
    b = write_voc_dataset(tmp_path / "b", train=3, val=2, seed=5, progress=False, config=SMALL)
    assert digest(a) == digest(b)
    ds = open_dataset(a, "val")
    assert len(ds) == 2 and ds.labels == SYNTHETIC_LABELS and ds.kind == "voc"
    assert ds.pair(0)[1].shape == (256, 256)


def test_stored_scene_is_what_make_scenes_writes_and_training_reads(tmp_path):
    """Held-out scoring reads scenes as stored (JPEG round trip), the form a model trained on a
    make-scenes folder sees; it differs from the raw render."""
    root = write_voc_dataset(tmp_path / "s", train=0, val=2, seed=5, progress=False, config=SMALL)
    image, mask = open_dataset(root, "val").pair(1)
    stored_image, stored_mask = stored_scene(scene_rng(5, "val", 1), SMALL)
    raw_image, _ = generate_scene(scene_rng(5, "val", 1), SMALL)
    assert np.array_equal(stored_image, image) and np.array_equal(stored_mask, mask)
    assert not np.array_equal(raw_image, stored_image)
