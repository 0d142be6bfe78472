"""Deterministic synthetic segmentation scenes at native high resolution, in the PASCAL VOC layout.

The world is defined at the native size (1024x1024 by default, any size on request) with the
ground truth at that size, so that a model deployed at 320, 640 or 1024 loses what a camera image
loses when it is shrunk: small objects, thin structures and fine texture.

Each object class has its own shape, its own texture and its own band of hues; objects are
saturated, background and clutter mostly muted but of any hue. What scales with the frame (clutter,
texture periods of large objects, lighting) is defined on a 320-pixel reference frame and scaled up;
what a camera resolves only with enough pixels is defined in native pixels:
- object sizes are log-uniform from a few native pixels to larger than the frame;
- thin structures: rings with a band of a few pixels, crosses with arms a few pixels wide, and
  "stripes" (boxes stretched into bars a few pixels across);
- a small object's texture period is bounded by its size, and a quarter of the small objects wear
  another class's hues, so their class can only be told from shape and texture, i.e. with enough pixels;
- sensor blur and noise are per native pixel.
Objects overlap (occlusion); boundaries are marked 255 (ignore), as in VOC.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edgeseg.atomic import crash_point, ensure_writable_dir, staged_folder
from edgeseg.conventions import IGNORE_INDEX
from edgeseg.errors import ConfigError, OutputError
from edgeseg.palette import voc_palette_rgb
from edgeseg.palette_png import encode_class_ids_png
from edgeseg.resolution import MAX_SIDE
from edgeseg.run_lock import lock_path_for, take

SYNTHETIC_LABELS = ("background", "disc", "box", "triangle", "star", "ring", "cross")
# Shape name -> texture; the pairing is fixed so each class has two consistent cues.
_TEXTURE_OF = {
    "disc": "stripes",
    "box": "checker",
    "triangle": "dots",
    "star": "blotches",
    "ring": "radial",
    "cross": "grid",
}


@dataclass(frozen=True)
class SceneConfig:
    """Scene size in native pixels and the object population.

    `min_object_px` and the thin-structure widths are in native pixels: they are what a camera
    resolves only at its full resolution. Everything else scales with the frame.
    """

    height: int = 1024
    width: int = 1024
    min_objects: int = 2
    max_objects: int = 12
    min_object_px: float = 6.0
    thin_fraction: float = 0.35  # rings, crosses and boxes drawn as thin structures
    decoy_fraction: float = 0.25  # small objects wearing another class's hues
    small_object_px: float = 64.0  # "small" for the decoy rule, in native pixels

    def __post_init__(self) -> None:
        if not (16 <= self.height <= MAX_SIDE and 16 <= self.width <= MAX_SIDE):
            raise ConfigError(f"scene size {self.height}x{self.width}: each side must be from 16 to {MAX_SIDE} pixels")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ConfigError(f"scene objects {self.min_objects}..{self.max_objects}: need 1 <= min <= max")

    @property
    def unit(self) -> float:
        """Native pixels per pixel of the 320-pixel reference frame the frame-relative sizes are defined on."""
        return min(self.height, self.width) / 320.0


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _hsv_colour(hue_deg: float, saturation: float, value: float) -> np.ndarray:
    hsv = np.array([[[hue_deg % 360 / 2, saturation * 255, value * 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    return _hsv_colour(rng.uniform(0, 360), rng.uniform(0.0, 0.45), rng.uniform(0.25, 0.95))


def _class_colours(rng: np.random.Generator, class_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Two colours of the class's hue band (60 degrees apart per class), one light and one dark."""
    hue = (class_index - 1) * 60 + rng.uniform(-20, 20)
    light = _hsv_colour(hue, rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0))
    dark = _hsv_colour(hue + rng.uniform(-10, 10), rng.uniform(0.55, 1.0), rng.uniform(0.2, 0.45))
    return (light, dark) if rng.random() < 0.5 else (dark, light)


def _background(rng: np.random.Generator, config: SceneConfig) -> np.ndarray:
    """Smooth gradient, low-frequency colour noise and clutter that belongs to no class (float32 RGB)."""
    h, w, unit = config.height, config.width, config.unit
    c0, c1 = _muted_colour(rng), _muted_colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    # A linear ramp is separable: build it from one row and one column instead of a full grid.
    t = (math.cos(angle) * np.arange(w, dtype=np.float32)[None, :]
         + math.sin(angle) * np.arange(h, dtype=np.float32)[:, None])
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c0 + (c1 - c0) * t[..., None]
    cell = 40 * unit  # colour-noise cell: frame-relative, so the background stays smooth at any size
    coarse = rng.normal(0, 30, size=(max(int(h / cell), 2), max(int(w / cell), 2), 3)).astype(np.float32)
    img += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    # Clutter: random strokes and irregular blobs, so "not background" is not the same as "object".
    for _ in range(int(rng.integers(0, 14))):
        colour = tuple(float(v) for v in (_random_colour(rng) if rng.random() < 0.3 else _muted_colour(rng)))
        if rng.random() < 0.5:
            pts = np.cumsum(rng.normal(0, 25 * unit, size=(int(rng.integers(3, 8)), 2)), axis=0)
            pts += rng.uniform([0, 0], [w, h])
            thickness = max(round(rng.uniform(1, 5) * unit), 1)
            cv2.polylines(img, [pts.astype(np.int32)], False, colour, thickness, cv2.LINE_AA)
        else:
            centre = rng.uniform([0, 0], [w, h])
            n = int(rng.integers(5, 10))
            radii = rng.uniform(4, 30) * unit * rng.uniform(0.4, 1.6, size=n)
            angles = np.sort(rng.uniform(0, 2 * math.pi, size=n))
            pts = centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
            cv2.fillPoly(img, [pts.astype(np.int32)], colour, cv2.LINE_AA)
    return img


def _thin_px(rng: np.random.Generator) -> float:
    """Width of a thin structure in native pixels: visible at full resolution, gone at a third of it."""
    return float(rng.uniform(4.0, 9.0))


def _shape_mask(rng: np.random.Generator, shape: str, h: int, w: int, centre, size: float, angle: float,
                thin: bool) -> np.ndarray:
    """Boolean mask of one object; `thin` draws rings, crosses and boxes as structures a few pixels wide."""
    mask = np.zeros((h, w), np.uint8)
    cx, cy = centre
    r = size / 2
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

    def poly(points):
        pts = (np.asarray(points) @ rot.T) + np.array([cx, cy])
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)

    centre_i = (round(cx), round(cy))
    if shape == "disc":
        axes = (max(int(r), 1), max(int(r * rng.uniform(0.6, 1.0)), 1))
        cv2.ellipse(mask, centre_i, axes, math.degrees(angle), 0, 360, 1, -1)
    elif shape == "box":
        # A thin box is a stripe: a bar a few pixels across and up to the object's size long.
        half = _thin_px(rng) / 2 if thin else r * rng.uniform(0.5, 1.0)
        poly([(-r, -half), (r, -half), (r, half), (-r, half)])
    elif shape == "triangle":
        poly([(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)])
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        poly(pts)
    elif shape == "ring":
        inner = r - _thin_px(rng) if thin else r * rng.uniform(0.35, 0.6)
        cv2.circle(mask, centre_i, max(int(r), 1), 1, -1)
        if inner >= 1:
            cv2.circle(mask, centre_i, int(inner), 0, -1)
    elif shape == "cross":
        t = _thin_px(rng) / 2 if thin else r * rng.uniform(0.28, 0.4)
        poly([(-r, -t), (r, -t), (r, t), (-r, t)])
        poly([(-t, -r), (t, -r), (t, r), (-t, r)])
    else:  # pragma: no cover - the shape table is closed
        raise ValueError(shape)
    return mask.astype(bool)


def _texture(rng: np.random.Generator, kind: str, box, centre, size: float, colours, unit: float) -> np.ndarray:
    """The class's texture over the object's bounding box; the period shrinks with small objects."""
    y0, y1, x0, x1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = math.cos(angle) * xx + math.sin(angle) * yy
    v = -math.sin(angle) * xx + math.cos(angle) * yy
    # Frame-relative period, but at least ~3 periods across a small object: its texture is then
    # only a few native pixels fine, readable at full resolution and averaged away below it.
    period = max(min(rng.uniform(5.0, 12.0) * unit, size / 3), 2.5)
    c1, c2 = colours
    if kind == "stripes":
        t = (np.sin(u * 2 * math.pi / period) > 0).astype(np.float32)
    elif kind == "checker":
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == "dots":
        du = (u / period) % 1.0 - 0.5
        dv = (v / period) % 1.0 - 0.5
        t = ((du * du + dv * dv) < 0.09).astype(np.float32)
    elif kind == "grid":
        du = np.abs((u / period) % 1.0 - 0.5)
        dv = np.abs((v / period) % 1.0 - 0.5)
        t = ((du > 0.38) | (dv > 0.38)).astype(np.float32)
    elif kind == "blotches":
        cell = max(period / 2, 1.5)
        small = rng.random((max(int((y1 - y0) / cell), 2), max(int((x1 - x0) / cell), 2))).astype(np.float32)
        t = (cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC) > 0.5).astype(np.float32)
    elif kind == "radial":
        d = np.hypot(xx - centre[0], yy - centre[1]) / max(size / 2, 1.0)
        t = np.clip(d, 0, 1)
    else:  # pragma: no cover
        raise ValueError(kind)
    return c1 + (c2 - c1) * t[..., None]


def _place_object(rng: np.random.Generator, config: SceneConfig, img: np.ndarray, label: np.ndarray,
                  size: float) -> None:
    """Draw one object of a random class over `img` and `label` (in place)."""
    h, w = config.height, config.width
    shapes = list(_TEXTURE_OF)
    shape = shapes[int(rng.integers(len(shapes)))]
    class_index = SYNTHETIC_LABELS.index(shape)
    centre = (rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h))
    # Thin structures need room for their width: a ring or cross smaller than ~4 widths is a blob.
    thin = shape in ("ring", "cross", "box") and size > 24 and rng.random() < config.thin_fraction
    mask = _shape_mask(rng, shape, h, w, centre, size, rng.uniform(0, 2 * math.pi), thin)
    if not mask.any():
        return
    hue_class = class_index
    if size < config.small_object_px and rng.random() < config.decoy_fraction:
        hue_class = 1 + (class_index - 1 + int(rng.integers(1, len(shapes)))) % len(shapes)
    ys, xs = np.nonzero(mask)
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    colours = _class_colours(rng, hue_class)
    patch = _texture(rng, _TEXTURE_OF[shape], box, centre, size, colours, config.unit)
    region = mask[box[0]:box[1], box[2]:box[3]]
    img[box[0]:box[1], box[2]:box[3]][region] = patch[region]
    label[box[0]:box[1], box[2]:box[3]][region] = class_index


def _degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Uneven lighting, global exposure, blur and sensor noise (per native pixel); uint8 out."""
    h, w = img.shape[:2]
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(angle) * (np.arange(w, dtype=np.float32)[None, :] / w - 0.5)
            + math.sin(angle) * (np.arange(h, dtype=np.float32)[:, None] / h - 0.5))
    light = rng.uniform(0.6, 1.2) * (1 + rng.uniform(0, 0.6) * ramp)
    img *= light[..., None]
    if rng.random() < 0.6:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.4))
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(rng.uniform(0, 10))
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> tuple[np.ndarray, np.ndarray]:
    """One scene: an RGB uint8 image and its class-id mask (255 on object boundaries), both native size."""
    h, w = config.height, config.width
    img = _background(rng, config)
    label = np.zeros((h, w), np.uint8)
    n_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    # Log-uniform sizes from a few pixels to larger than the frame; large ones are drawn first
    # most of the time, so small objects are usually visible but can still be occluded.
    sizes = np.exp(rng.uniform(math.log(config.min_object_px), math.log(1.3 * min(h, w)), size=n_objects))
    order = np.argsort(-sizes + rng.normal(0, 0.25 * sizes.std() + 1e-6, size=n_objects))
    for idx in order:
        _place_object(rng, config, img, label, float(sizes[idx]))
    image = _degrade(rng, img)
    # Boundaries are ambiguous after blur: mark them "ignore", as PASCAL VOC does.
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
    label[edge] = IGNORE_INDEX
    return image, label


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Scene `index` of `split` depends only on (seed, split, index): sets can grow without changing."""
    return np.random.default_rng([seed, {"train": 0, "val": 1, "calib": 2}[split], index])


JPEG_QUALITY = 92


def encode_jpeg(image: np.ndarray) -> bytes:
    """The JPEG `make-scenes` stores for a scene (quality 92, OpenCV's 4:2:0 chroma subsampling)."""
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return jpeg.tobytes()


def stored_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> tuple[np.ndarray, np.ndarray]:
    """A scene as `make-scenes` stores it and training, the bench and scoring read it: the image after the
    JPEG round trip (8x8 blocks, halved chroma resolution), the mask exact. A model trained on the stored
    scenes sees these artefacts at full strength only at large input sizes, so held-out scenes are scored
    in this form, not as rendered."""
    image, mask = generate_scene(rng, config)
    decoded = cv2.imdecode(np.frombuffer(encode_jpeg(image), np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None, "OpenCV decodes the JPEG it encoded"
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), mask


# What make-scenes writes into --out: a folder holding only these is an earlier set, which a rerun replaces.
SET_ENTRIES = ("JPEGImages", "SegmentationClass", "ImageSets", "labels.txt")


def write_voc_dataset(
    out_dir: Path, *, train: int, val: int, seed: int = 0, config: SceneConfig = SceneConfig(),
    progress: bool = True,
) -> Path:
    """Write `train` + `val` scenes in the VOC layout (JPEGImages/, SegmentationClass/, ImageSets/, labels.txt).

    Written into a staging folder beside `out_dir` and published as `out_dir` by one rename at the end: a run
    that fails or is killed midway leaves no half set (and an earlier set whole). `out_dir` may be absent,
    empty, or an earlier set (replaced); anything else is refused before any work, and so is a second run
    into the same folder while this one writes (edgeseg.run_lock)."""
    if train < 0 or val < 0 or train + val == 0:
        raise ConfigError(f"{out_dir}: asked for {train} train and {val} val scenes; need at least one")
    if seed < 0:
        raise ConfigError(f"--seed {seed}: must be 0 or more")
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    ensure_writable_dir(out_dir.parent)
    busy = f"{out_dir}: another make-scenes (pid {{pid}}) is writing it; wait for it to end or choose another folder"
    try:
        with take(lock_path_for(out_dir), busy), staged_folder(out_dir) as staging:
            _write_set(staging, train, val, seed, config, progress, shown=out_dir)
    except OSError as exc:  # a full disk, a folder gone: nothing was published
        raise OutputError(f"{out_dir}: cannot write the scenes ({exc.strerror or exc}); nothing was written "
                          "there") from None
    return out_dir


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a folder")
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in SET_ENTRIES) if out_dir.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"{out_dir}: holds {shown}, which make-scenes did not write; choose a new or empty folder")


def _write_set(folder: Path, train: int, val: int, seed: int, config: SceneConfig, progress: bool,
               shown: Path) -> None:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True)
    # Palette PNGs (class ids as values, VOC colours), written without Pillow: the device install has none.
    palette = voc_palette_rgb()
    ids: dict[str, list[str]] = {"train": [], "val": []}
    jobs = [("train", i) for i in range(train)] + [("val", i) for i in range(val)]
    for split, i in tqdm(jobs, desc=f"scenes -> {shown}", disable=not progress, unit="scene"):
        image, label = generate_scene(scene_rng(seed, split, i), config)
        scene_id = f"{split}_{i:05d}"
        _write(folder / "JPEGImages" / f"{scene_id}.jpg", encode_jpeg(image))
        _write(folder / "SegmentationClass" / f"{scene_id}.png", encode_class_ids_png(label, palette))
        ids[split].append(scene_id)
        crash_point("make-scenes:scene-written")
    for split, names in ids.items():
        _write(folder / "ImageSets" / "Segmentation" / f"{split}.txt", "".join(f"{n}\n" for n in names).encode())
    _write(folder / "labels.txt", "".join(f"{n}\n" for n in SYNTHETIC_LABELS).encode())


def _write(path: Path, data: bytes) -> None:
    """A file of the staged set, on the disk before the set is published (a full disk raises here)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
