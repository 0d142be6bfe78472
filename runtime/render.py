"""Masks on frames: palette overlay with alpha, class outlines, a legend, a heads-up line.

A `Renderer` is built for one frame size and reuses its buffers for every frame: per-frame work
is table look-ups and in-place OpenCV/numpy calls into arrays allocated once (the frame-sized
buffers are reallocated only when the frame size changes, e.g. a folder of mixed images).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import cv2
import numpy as np

from edgeseg.errors import ConfigError
from edgeseg.palette import voc_palette_bgr

MODES = ("overlay", "mask", "side-by-side")
BACKGROUND_NAMES = ("background", "__background__", "_background_", "bg")
_FONT = cv2.FONT_HERSHEY_SIMPLEX



@dataclass(frozen=True)
class RenderOptions:
    mode: str = "overlay"
    alpha: float = 0.5  # weight of the class colour in the overlay
    outlines: bool = True
    legend: bool = True
    hud: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode}: choose one of {', '.join(MODES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"--alpha {self.alpha}: must be between 0 and 1")


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """The options rendering owns."""
    g = parser.add_argument_group("rendering", "how masks are drawn")
    g.add_argument("--mode", choices=MODES, default="overlay",
                   help="overlay: colours over the frame; mask: the class colours alone; side-by-side: both (default: "
                        "%(default)s)")
    g.add_argument("--alpha", type=float, default=0.5, metavar="A", help="overlay opacity, 0..1 (default: %(default)s)")
    g.add_argument("--no-outlines", action="store_true", help="do not draw class outlines")
    g.add_argument("--no-legend", action="store_true", help="do not draw the legend of classes present")
    g.add_argument("--no-hud", action="store_true", help="do not draw the FPS and per-stage timing line")


def render_options_from_args(args: argparse.Namespace) -> RenderOptions:
    return RenderOptions(mode=args.mode, alpha=args.alpha, outlines=not args.no_outlines,
                         legend=not args.no_legend, hud=not args.no_hud)


class Renderer:
    """Draws class masks onto BGR frames of one size, into buffers it owns.

    `render(frame, mask, hud_text)` returns the canvas (a buffer reused by the next call: copy it
    to keep it). Background classes (named 'background' or similar) are left untinted.
    """

    def __init__(self, labels: tuple[str, ...] | list[str], options: RenderOptions = RenderOptions(), *,
                 palette: np.ndarray | None = None) -> None:
        self.labels = tuple(labels)
        self.options = options
        self.palette = np.ascontiguousarray(palette if palette is not None else voc_palette_bgr(), np.uint8)
        if self.palette.shape != (256, 3):
            raise ConfigError(f"palette must be 256 x 3 BGR, got {self.palette.shape}")
        # Look-up table: 1 for classes that get tinted, 0 for background (a copy mask for cv2.copyTo).
        self.tint_lut = np.ones(256, np.uint8)
        for i, name in enumerate(self.labels):
            if name.lower() in BACKGROUND_NAMES:
                self.tint_lut[i] = 0
        self.palette_lut = np.ascontiguousarray(self.palette.reshape(256, 1, 3))  # cv2.LUT form
        self.alpha = float(options.alpha)
        self.kernel = np.ones((3, 3), np.uint8)
        self.frame_shape: tuple[int, int] | None = None

    # -- buffers --------------------------------------------------------------------------

    def _allocate(self, height: int, width: int) -> None:
        self.frame_shape = (height, width)
        out_width = 2 * width if self.options.mode == "side-by-side" else width
        self.canvas = np.zeros((height, out_width, 3), np.uint8)
        self.colour = np.empty((height, width, 3), np.uint8)  # palette[mask]
        self.blend = np.empty((height, width, 3), np.uint8)
        self.tinted = np.empty((height, width), np.uint8)  # 1 where the class is tinted
        self.grown = np.empty((height, width), np.uint8)
        self.shrunk = np.empty((height, width), np.uint8)
        self.edges = np.empty((height, width), np.uint8)
        # Text size scales with the frame: readable at 320 px and at 1080p.
        self.font_scale = max(0.35, min(1.2, height / 900))
        self.thickness = 1 if height < 720 else 2
        (_, self.line_h), self.baseline = cv2.getTextSize("Ag", _FONT, self.font_scale, self.thickness)
        self.line_step = self.line_h + self.baseline + 6
        self.label_widths = [cv2.getTextSize(name, _FONT, self.font_scale, self.thickness)[0][0]
                             for name in self.labels]

    # -- drawing --------------------------------------------------------------------------

    def render(self, frame: np.ndarray, mask: np.ndarray, hud_text: str | None = None) -> np.ndarray:
        """Frame (BGR uint8 HxWx3) + class mask (uint8 HxW, same size) -> the canvas for this mode."""
        height, width = frame.shape[:2]
        if mask.shape != (height, width):
            raise ValueError(f"mask {mask.shape} does not match frame {frame.shape[:2]}")
        if self.frame_shape != (height, width):
            self._allocate(height, width)
        mode = self.options.mode
        # palette[mask] without numpy's index arrays (np.take would allocate an intp copy of the mask).
        cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR, dst=self.colour)
        cv2.LUT(self.colour, self.palette_lut, dst=self.colour)
        cv2.LUT(mask, self.tint_lut, dst=self.tinted)
        if self.options.outlines:
            # A pixel is on an outline when its 3x3 neighbourhood holds more than one class; only
            # the tinted side is drawn, so the outline hugs the object and leaves background alone.
            cv2.dilate(mask, self.kernel, dst=self.grown)
            cv2.erode(mask, self.kernel, dst=self.shrunk)
            cv2.compare(self.grown, self.shrunk, cv2.CMP_NE, dst=self.edges)  # 255 / 0
            cv2.bitwise_and(self.edges, self.tinted, dst=self.edges)  # -> 1 / 0

        if mode in ("overlay", "side-by-side"):
            left = self.canvas[:, :width]
            self._overlay(frame, left)
        if mode == "mask":
            np.copyto(self.canvas, self.colour)
        elif mode == "side-by-side":
            np.copyto(self.canvas[:, width:], self.colour)

        if self.options.legend:
            self._draw_legend(mask, width)
        if self.options.hud and hud_text:
            self._draw_hud(hud_text)
        return self.canvas

    def _overlay(self, frame: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, frame)
        if self.alpha > 0:
            cv2.addWeighted(frame, 1.0 - self.alpha, self.colour, self.alpha, 0.0, dst=self.blend)
            # Masked copies into a view of the canvas write in place (rows may be strided).
            cv2.copyTo(self.blend, self.tinted, out)
        if self.options.outlines:
            cv2.copyTo(self.colour, self.edges, out)

    def present_classes(self, mask: np.ndarray) -> list[int]:
        """Class ids present in the mask, largest area first (background included)."""
        # calcHist counts in place; np.bincount would first copy the mask to int64.
        counts = cv2.calcHist([mask], [0], None, [256], [0, 256]).ravel()
        present = np.flatnonzero(counts)
        return [int(i) for i in present[np.argsort(-counts[present], kind="stable")]]

    def legend_entries(self, mask: np.ndarray) -> list[tuple[int, str]]:
        """(class id, label) of the tinted classes present in the mask, largest first."""
        entries = []
        for i in self.present_classes(mask):
            if self.tint_lut[i]:
                name = self.labels[i] if i < len(self.labels) else f"class {i}"
                entries.append((i, name))
        return entries

    def _shade(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Darken a box in place so text stays readable on any picture."""
        region = self.canvas[max(0, y0):y1, max(0, x0):x1]
        # In place on the view (numpy's in-place shift of a strided view goes through a temporary).
        cv2.convertScaleAbs(region, dst=region, alpha=0.5)

    def _draw_legend(self, mask: np.ndarray, width: int) -> None:
        entries = self.legend_entries(mask)
        if not entries:
            return
        swatch = self.line_h + 2
        pad = 6
        names_w = max(self.label_widths[i] if i < len(self.label_widths) else
                      cv2.getTextSize(name, _FONT, self.font_scale, self.thickness)[0][0] for i, name in entries)
        box_w = pad * 3 + swatch + names_w
        box_h = pad + len(entries) * self.line_step
        x0 = self.canvas.shape[1] - box_w - 4
        y0 = 4 + (self.line_step + 4 if self.options.hud else 0)
        self._shade(y0, y0 + box_h, x0, x0 + box_w)
        y = y0 + pad
        for class_id, name in entries:
            colour = tuple(int(v) for v in self.palette[class_id])
            cv2.rectangle(self.canvas, (x0 + pad, y), (x0 + pad + swatch, y + swatch), colour, thickness=-1)
            cv2.rectangle(self.canvas, (x0 + pad, y), (x0 + pad + swatch, y + swatch), (255, 255, 255), thickness=1)
            cv2.putText(self.canvas, name, (x0 + 2 * pad + swatch, y + self.line_h), _FONT, self.font_scale,
                        (255, 255, 255), self.thickness, cv2.LINE_AA)
            y += self.line_step

    def _draw_hud(self, text: str) -> None:
        self._shade(0, self.line_step + 4, 0, self.canvas.shape[1])
        cv2.putText(self.canvas, text, (6, 2 + self.line_h + 2), _FONT, self.font_scale, (255, 255, 255),
                    self.thickness, cv2.LINE_AA)

    def hud_box_height(self) -> int:
        """Rows the heads-up line covers at the top of the canvas (for callers that test pixels)."""
        return self.line_step + 4 if self.frame_shape else 0


def hud_line(fps: float, stage_ms: dict[str, float]) -> str:
    """'14.8 FPS | pre 3.1 | infer 61.2 | post 1.9 | render 3.0 ms' for the heads-up line."""
    parts = [f"{fps:5.1f} FPS"] + [f"{name} {ms:.1f}" for name, ms in stage_ms.items()]
    return " | ".join(parts) + " ms"
