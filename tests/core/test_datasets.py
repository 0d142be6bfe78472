"""Dataset loaders (the scene generator has its own tests in test_scenes.py)."""

import numpy as np
import pytest
from PIL import Image

from edgeseg.datasets import VOC_LABELS, evaluation_split, open_dataset, split_ids
from edgeseg.errors import DatasetError
from edgeseg.scenes import SYNTHETIC_LABELS, SceneConfig, write_voc_dataset


def test_voc_sample_loads_with_palette_indices(voc_sample):
    ds = open_dataset(voc_sample, "val")
    assert len(ds) == 22 and ds.labels == VOC_LABELS
    image, mask = ds.pair(0)
    assert image.shape[2] == 3 and image.shape[:2] == mask.shape
    assert set(np.unique(mask)) <= set(range(21)) | {255}
    ds.check(21)


def test_verification_reads_the_val_split_of_a_voc_layout_folder(tmp_path):
    """`ImageSets/Segmentation/val.txt` (VOC's own place) decides, not only a root `val.txt`: verifying
    on `--verify-data <VOC folder>` must never score training images."""
    from edgeseg.convert.verify import image_sets_for

    root = write_voc_dataset(tmp_path / "voc", train=3, val=2, seed=5, progress=False,
                             config=SceneConfig(height=128, width=128))
    assert not (root / "val.txt").exists() and evaluation_split(root) == "val"
    assert evaluation_split(_plain_folder(tmp_path / "plain")) is None
    (real, _) = image_sets_for(SYNTHETIC_LABELS, root, 8)
    val = open_dataset(root, "val")
    assert len(real.images) == 2 and all(np.array_equal(a, val.image(i)) for i, a in enumerate(real.images))


def test_split_ids_read_voc_lists_and_root_lists_and_are_empty_when_unlisted(tmp_path):
    root = write_voc_dataset(tmp_path / "voc", train=3, val=2, seed=5, progress=False,
                             config=SceneConfig(height=64, width=64))
    val_ids = split_ids(root, "val")
    assert val_ids == [s.id for s in open_dataset(root, "val").samples] and len(val_ids) == 2
    (root / "extra.txt").write_text("a 1\n\nb\n")  # first word of each non-empty line
    assert split_ids(root, "extra") == ["a", "b"]
    assert split_ids(root, "test") == []


def _plain_folder(root, size=(8, 6), mask_size=(8, 6), value=1):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.new("RGB", size).save(root / "images" / "a.png")
    Image.fromarray(np.full(mask_size[::-1], value, np.uint8), mode="L").save(root / "masks" / "a.png")
    return root


def test_plain_folder_loads(tmp_path):
    ds = open_dataset(_plain_folder(tmp_path))
    assert ds.kind == "folder" and len(ds) == 1
    image, mask = ds.pair(0)
    assert image.shape == (6, 8, 3) and mask.shape == (6, 8) and mask.max() == 1


def test_a_tif_folder_is_a_dataset_as_it_is_a_predict_source(tmp_path):
    """One list of image suffixes (edgeseg.conventions.IMAGE_SUFFIXES): a folder `predict` reads also
    trains, calibrates and verifies (the data sets used to know 5 suffixes, predict 9)."""
    from edgeseg.conventions import IMAGE_SUFFIXES

    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(rgb).save(tmp_path / "images" / "a.tif")
    Image.fromarray(np.full((6, 8), 1, np.uint8), mode="L").save(tmp_path / "masks" / "a.png")
    labelled, bare = open_dataset(tmp_path), open_dataset(tmp_path / "images")
    assert labelled.kind == "folder" and bare.kind == "images" and ".tif" in IMAGE_SUFFIXES
    image, mask = labelled.pair(0)
    assert np.array_equal(image, rgb) and mask.max() == 1  # TIFF is lossless: the pixels come back as written
    assert labelled.check(2) == {1}


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="no images found"):
        open_dataset(tmp_path)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(tmp_path / "nope")


def test_mask_of_the_wrong_size_names_the_file(tmp_path):
    ds = open_dataset(_plain_folder(tmp_path, mask_size=(4, 6)))
    with pytest.raises(DatasetError, match=r"a\.png: mask is 4x6 but its image is 8x6"):
        ds.check(3)


def test_class_id_above_the_class_count_names_the_file(tmp_path):
    ds = open_dataset(_plain_folder(tmp_path, value=9))
    with pytest.raises(DatasetError, match=r"masks/a\.png: class id 9 but the model has 3 classes"):
        ds.check(3)


def test_unreadable_image_names_the_file(tmp_path):
    root = _plain_folder(tmp_path)
    (root / "images" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"images/a\.png: not a readable image"):
        open_dataset(root).image(0)
