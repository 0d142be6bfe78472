"""Masks read without Pillow (the device install) equal what Pillow reads."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from edgeseg import datasets
from edgeseg.datasets import open_dataset
from edgeseg.errors import DatasetError
from edgeseg.palette_png import read_class_ids_png


def test_voc_palette_masks_equal_pillows_indices(voc_sample):
    masks = sorted((voc_sample / "SegmentationClass").glob("*.png"))
    assert len(masks) >= 20
    for path in masks:
        expected = np.array(Image.open(path))
        assert np.array_equal(read_class_ids_png(path), expected), path.name
    # the VOC sample uses the ignore index (object borders) and several classes
    assert 255 in np.unique(expected) and len(np.unique(expected)) >= 3


def test_synthetic_scene_masks_equal_pillows_indices(synthetic_voc):
    for path in sorted((synthetic_voc / "SegmentationClass").glob("*.png"))[:6]:
        assert np.array_equal(read_class_ids_png(path), np.array(Image.open(path)))


def test_greyscale_masks_are_their_values(tmp_path):
    ids = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8) % 21
    Image.fromarray(ids, mode="L").save(tmp_path / "grey.png")
    assert np.array_equal(read_class_ids_png(tmp_path / "grey.png"), ids)


def test_a_colour_used_twice_in_the_palette_is_refused(tmp_path):
    ids = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    im = Image.fromarray(ids, mode="P")
    im.putpalette([0, 0, 0, 9, 9, 9, 9, 9, 9] + [0] * (253 * 3))
    im.save(tmp_path / "dup.png")
    with pytest.raises(DatasetError, match=r"dup\.png: its palette repeats a colour"):
        read_class_ids_png(tmp_path / "dup.png")


@pytest.mark.parametrize(("mode", "named"), [("RGB", "mode RGB"), ("I;16", "mode L;16")])
def test_non_id_masks_are_refused_naming_the_file(tmp_path, mode, named):
    Image.new(mode, (8, 8)).save(tmp_path / "m.png")
    with pytest.raises(DatasetError, match=rf"m\.png: mask must be a palette or greyscale PNG .*{named}"):
        read_class_ids_png(tmp_path / "m.png")


def test_missing_and_non_png_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.png: mask file not found"):
        read_class_ids_png(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DatasetError, match=r"text\.png: not a readable mask \(not a PNG file\)"):
        read_class_ids_png(tmp_path / "text.png")


def test_datasets_read_and_check_masks_without_pillow(voc_sample, monkeypatch):
    with_pillow = open_dataset(voc_sample, "val").subset(4)
    expected = [with_pillow.mask(i) for i in range(4)]
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` now raises ImportError, as on a device
    assert datasets._pillow() is None
    without = open_dataset(voc_sample, "val").subset(4)
    for i in range(4):
        assert np.array_equal(without.mask(i), expected[i])
    without.check(21)


def test_scene_masks_written_without_pillow_are_pillows_bytes():
    """make-scenes writes masks without Pillow (the device install), byte for byte as Pillow writes them, so
    a data set's fingerprint (which a checkpoint records) is the same on a workstation and on a device."""
    import io

    from edgeseg.palette import voc_palette_rgb
    from edgeseg.palette_png import encode_class_ids_png
    from edgeseg.scenes import generate_scene, scene_rng

    palette = voc_palette_rgb()
    for index in range(6):
        _, ids = generate_scene(scene_rng(0, "train", index))
        pillow = Image.fromarray(ids, mode="P")
        pillow.putpalette(palette.ravel().tolist())
        buffer = io.BytesIO()
        pillow.save(buffer, format="PNG")
        assert encode_class_ids_png(ids, palette) == buffer.getvalue(), index


def test_make_scenes_writes_a_data_set_without_pillow(tmp_path, monkeypatch):
    from edgeseg.scenes import SceneConfig, write_voc_dataset

    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    scenes = SceneConfig(height=96, width=96)
    out = write_voc_dataset(tmp_path / "scenes", train=1, val=2, config=scenes, progress=False)
    assert (out / "labels.txt").is_file()
    dataset = open_dataset(out, "val")
    assert len(dataset) == 2 and dataset.mask(0).shape == (96, 96)
