"""Rendering: exact overlay arithmetic, outlines, legend of classes present, modes, buffer reuse."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from edgeseg.errors import ConfigError
from edgeseg.palette import voc_palette_bgr
from edgeseg.runtime.render import Renderer, RenderOptions, hud_line

LABELS = ("background", "disc", "box", "triangle")
PLAIN = dict(outlines=False, legend=False, hud=False)


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


@pytest.fixture
def mask() -> np.ndarray:
    m = np.zeros((120, 160), np.uint8)
    m[20:60, 30:90] = 1  # 2400 px
    m[70:110, 100:150] = 2  # 2000 px
    m[5:10, 5:10] = 3  # 25 px
    return m


def test_palette_is_the_voc_colour_map_in_bgr():
    palette = voc_palette_bgr()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [0, 0, 128]  # aeroplane / first class: RGB (128, 0, 0)
    assert palette[15].tolist() == [128, 128, 192]  # person: RGB (192, 128, 128)


@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_overlay_blends_class_colour_with_alpha_and_leaves_background_alone(frame, mask, alpha):
    out = Renderer(LABELS, RenderOptions(alpha=alpha, **PLAIN)).render(frame, mask).copy()
    colour = voc_palette_bgr()[mask]
    expected = np.round(frame * (1 - alpha) + colour * alpha)
    fg = mask > 0
    assert np.abs(out[fg].astype(int) - expected[fg]).max() <= 1
    assert np.array_equal(out[~fg], frame[~fg])


def test_class_zero_is_tinted_when_no_label_is_background(frame):
    m = np.zeros(frame.shape[:2], np.uint8)
    out = Renderer(("road", "car"), RenderOptions(alpha=1.0, **PLAIN)).render(frame, m)
    assert (out == 0).all()  # class 0 (road) painted in its colour, black


def test_outlines_draw_the_object_edge_in_full_colour(frame, mask):
    out = Renderer(LABELS, RenderOptions(alpha=0.5, outlines=True, legend=False, hud=False)).render(frame, mask)
    box_colour = voc_palette_bgr()[1]
    # The object's own border rows/columns are the outline, in the class colour at full opacity...
    assert (out[20, 30:90] == box_colour).all() and (out[59, 30:90] == box_colour).all()
    assert (out[20:60, 30] == box_colour).all()
    # ...one pixel inside it is blended, and the background just outside is untouched.
    inner = np.round(frame[21:59, 31:89] * 0.5 + box_colour * 0.5)
    assert np.abs(out[21:59, 31:89].astype(int) - inner).max() <= 1
    assert np.array_equal(out[19, 30:90], frame[19, 30:90])


def test_mask_mode_is_the_class_colours(frame, mask):
    out = Renderer(LABELS, RenderOptions(mode="mask", **PLAIN)).render(frame, mask)
    assert np.array_equal(out, voc_palette_bgr()[mask])


def test_side_by_side_puts_overlay_left_and_mask_right(frame, mask):
    out = Renderer(LABELS, RenderOptions(mode="side-by-side", alpha=0.5, **PLAIN)).render(frame, mask)
    overlay = Renderer(LABELS, RenderOptions(mode="overlay", alpha=0.5, **PLAIN)).render(frame, mask)
    assert out.shape == (120, 320, 3)
    assert np.array_equal(out[:, :160], overlay)
    assert np.array_equal(out[:, 160:], voc_palette_bgr()[mask])


def test_legend_lists_the_classes_present_largest_first(frame, mask):
    renderer = Renderer(LABELS, RenderOptions())
    assert renderer.legend_entries(mask) == [(1, "disc"), (2, "box"), (3, "triangle")]
    only_box = np.where(mask == 2, 2, 0).astype(np.uint8)
    assert renderer.legend_entries(only_box) == [(2, "box")]
    assert renderer.legend_entries(np.zeros_like(mask)) == []


def test_legend_is_drawn_top_right_with_one_swatch_per_class(frame, mask):
    opts = dict(alpha=0.5, outlines=False, hud=False)
    with_legend = Renderer(LABELS, RenderOptions(legend=True, **opts)).render(frame, mask).copy()
    without = Renderer(LABELS, RenderOptions(legend=False, **opts)).render(frame, mask)
    changed = np.any(with_legend != without, axis=2)
    ys, xs = np.nonzero(changed)
    assert xs.min() > 160 // 3 and xs.max() >= 150 and ys.min() < 10  # a box in the top-right corner
    assert not changed[110:, :].any()
    # Each present class has a swatch of its colour inside the box.
    for class_id in (1, 2, 3):
        colour = voc_palette_bgr()[class_id]
        swatch = np.all(with_legend == colour, axis=2) & changed
        assert swatch.sum() >= 9, class_id


def test_hud_line_is_drawn_at_the_top_only(frame, mask):
    renderer = Renderer(LABELS, RenderOptions(alpha=0.5, outlines=False, legend=False, hud=True))
    plain = Renderer(LABELS, RenderOptions(alpha=0.5, **PLAIN)).render(frame, mask)
    out = renderer.render(frame, mask, hud_line(14.84, {"pre": 3.14, "infer": 61.2}))
    changed = np.any(out != plain, axis=2)
    rows = np.nonzero(changed.any(axis=1))[0]
    assert rows.min() == 0 and rows.max() < renderer.hud_box_height()
    assert hud_line(14.84, {"pre": 3.14, "infer": 61.2}) == " 14.8 FPS | pre 3.1 | infer 61.2 ms"


def test_render_reuses_its_buffers_and_allocates_no_frame_sized_memory(mask):
    big_frame = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    big_mask = cv2.resize(mask, (640, 480), interpolation=cv2.INTER_NEAREST)
    renderer = Renderer(LABELS, RenderOptions(mode="side-by-side"))
    first = renderer.render(big_frame, big_mask, "10.0 FPS")
    tracemalloc.start()
    second = renderer.render(big_frame, big_mask, "10.0 FPS")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert second is first
    # A class histogram and some text: kilobytes, where one copy of the mask alone is 300 KiB.
    assert peak < 16 * 1024, f"render allocated {peak} bytes per frame"


def test_a_new_frame_size_gets_new_buffers(frame, mask):
    renderer = Renderer(LABELS, RenderOptions(**PLAIN))
    renderer.render(frame, mask)
    small = cv2.resize(frame, (80, 60))
    out = renderer.render(small, cv2.resize(mask, (80, 60), interpolation=cv2.INTER_NEAREST))
    assert out.shape == (60, 80, 3)


def test_mask_of_another_size_is_refused(frame, mask):
    with pytest.raises(ValueError, match="does not match"):
        Renderer(LABELS).render(frame, mask[:-1])


@pytest.mark.parametrize("kwargs, words", [({"alpha": 1.5}, "--alpha 1.5"), ({"mode": "blend"}, "--mode blend")])
def test_bad_render_options_are_config_errors(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        RenderOptions(**kwargs)


def test_resize_mask_fills_the_callers_buffer_and_matches_a_fresh_resize():
    from edgeseg.runtime.postprocess import resize_mask

    small = np.random.default_rng(0).integers(0, 7, (20, 30), dtype=np.uint8)
    fresh = resize_mask(small, 120, 160)
    assert fresh.shape == (120, 160) and set(np.unique(fresh)) <= set(np.unique(small))
    buffer = np.empty((120, 160), np.uint8)
    same = resize_mask(small, 120, 160, out=buffer)
    assert same is buffer and np.array_equal(buffer, fresh)
    # A buffer of another frame size is not written into: a new mask comes back.
    other = resize_mask(small, 60, 80, out=buffer)
    assert other is not buffer and other.shape == (60, 80) and np.array_equal(buffer, fresh)
