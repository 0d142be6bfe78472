"""PASCAL VOC's class names and colour map, written once: the labels a VOC-layout folder without
labels.txt is taken to have, and the colours of every mask edgeseg draws or writes (class 0 black,
1 maroon, 2 green, ...; 256 distinct entries, so a palette PNG's indices read back exactly)."""

from __future__ import annotations

import numpy as np

VOC_LABELS = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette_rgb() -> np.ndarray:
    """The PASCAL VOC colour map, 256 x 3 uint8 RGB: bit k of a class id's red, green and blue thirds
    lights bit 7 - k of that channel."""
    ids = np.arange(256)
    rgb = np.zeros((256, 3), np.int64)
    for shift in range(7, -1, -1):
        for channel in range(3):
            rgb[:, channel] |= ((ids >> channel) & 1) << shift
        ids = ids >> 3
    return rgb.astype(np.uint8)


def voc_palette_bgr() -> np.ndarray:
    """The same colour map in OpenCV's BGR order (contiguous)."""
    return np.ascontiguousarray(voc_palette_rgb()[:, ::-1])
