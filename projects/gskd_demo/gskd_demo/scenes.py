# Copyright (c) gskd-mm contributors. All rights reserved.
"""Synthetic Scenes, a small procedural segmentation dataset for CPU
demos: the renderer that draws one scene (image and label map).

Every image is a 'landscape' of textured regions. The class of a region is
given by its texture and, for one pair of classes, by what surrounds it;
never by its colour: every region, whatever its class, draws its colours
from the same shared set (:data:`RENDER_COLOURS`). A network therefore has
to look at texture over a neighbourhood of pixels, and at context over a
wider one, which is what lets a larger network clearly beat a smaller one
even on tiny (64x64) images.

Classes (index: name, texture):

* 0 ``background``: smooth low-frequency noise blending two colours.
* 1 ``water``: large regions of smooth, wavy ripples.
* 2 ``tiles``: checkerboard.
* 3 ``tent``: straight sharp stripes, on land (never touching water).
* 4 ``boat``: the same stripes (period, orientation and size drawn from
  the same distributions) lying inside water, with water all around.
  Stripe regions never touch each other.
* 5 ``flowers``: a jittered grid of small dots on a plain colour (rare).
* 6 ``gravel``: per-pixel (high-frequency) noise (rarest).

A quarter of the images carry an unlabelled band or patch (label 255):
the image content is there, the annotation is not, as in real datasets.

:mod:`.dataset` writes the scenes to disk and reads them into MMSeg.
"""
from typing import Callable, Dict, Tuple

import numpy as np

from .shapes import dilate, random_shape, rotated, shift, touches_border

__all__ = [
    'CLASSES', 'PALETTE', 'RENDER_COLOURS', 'IGNORE_INDEX', 'render_scene'
]

CLASSES = ('background', 'water', 'tiles', 'tent', 'boat', 'flowers', 'gravel')
BACKGROUND, WATER, TILES, TENT, BOAT, FLOWERS, GRAVEL = range(len(CLASSES))
# Colours to visualise the label maps (not the image colours).
PALETTE = [[0, 0, 0], [0, 90, 200], [220, 160, 40], [200, 40, 40],
           [240, 240, 240], [200, 60, 200], [80, 200, 80]]
IGNORE_INDEX = 255

# The colours images are painted with, shared by all classes: each region
# draws two different ones, so colour says nothing about the class.
RENDER_COLOURS = np.array(
    [[200, 60, 50], [60, 160, 70], [50, 90, 200], [220, 190, 60],
     [150, 70, 170], [60, 180, 190], [230, 130, 50], [125, 125, 125],
     [235, 235, 225], [40, 40, 45]],
    dtype=np.float32)
# Reference size: the shapes below are sized for 64x64 images.
_REF_SIZE = 64.0


# ---------------------------------------------------------------- textures
# Each texture maps pixel grids (yy, xx) to a blend weight in [0, 1]
# between the region's two colours. Orientations and phases are random.


def _smooth_noise(rng: np.random.Generator, size: int,
                  cells: int) -> np.ndarray:
    """Bilinear upsampling of a ``(cells + 1) ** 2`` random grid."""
    grid = rng.random((cells + 1, cells + 1))
    pos = np.linspace(0, cells, size, endpoint=False)
    i = np.minimum(pos.astype(int), cells - 1)
    f = pos - i
    # Interpolate rows, then columns.
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None] + rows[:, i + 1] * f[None]


def _texture_background(rng, yy, xx):
    size = yy.shape[0]
    noise = (0.65 * _smooth_noise(rng, size, 3) +
             0.35 * _smooth_noise(rng, size, 6))
    # Stretch to [0, 1] so that the two colours really both show.
    noise -= noise.min()
    return noise / max(noise.max(), 1e-6)


def _texture_water(rng, yy, xx):
    # Smooth sinusoidal ripples, bent by a slower wave: wavy, not straight,
    # and soft, not sharp-edged like the stripes.
    u, v = rotated(yy, xx, rng.uniform(-np.pi / 6, np.pi / 6))
    period = rng.uniform(6.0, 9.0)
    amplitude, wavelength = rng.uniform(2.0, 3.5), rng.uniform(10.0, 18.0)
    phase, bend_phase = rng.uniform(0, 2 * np.pi, 2)
    bend = amplitude * np.sin(2 * np.pi * u / wavelength + bend_phase)
    return 0.5 + 0.5 * np.sin(2 * np.pi * v / period + bend + phase)


def _texture_stripes(rng, yy, xx):
    # Shared by ``tent`` and ``boat``: only the context tells them apart.
    _, v = rotated(yy, xx, rng.uniform(0, np.pi))
    period = rng.uniform(4.0, 6.0)
    phase = rng.uniform(0, period)
    return (np.mod(v + phase, period) < period / 2).astype(np.float64)


def _texture_tiles(rng, yy, xx):
    cell = rng.integers(3, 6)
    oy, ox = rng.integers(0, cell, size=2)
    return (((yy + oy) // cell + (xx + ox) // cell) % 2).astype(np.float64)


def _texture_flowers(rng, yy, xx):
    # Dots on a jittered grid; 0 is the plain ground, 1 the dots.
    step = rng.uniform(4.0, 5.5)
    radius = rng.uniform(0.9, 1.4)
    oy, ox = rng.uniform(0, step, size=2)
    gy, gx = np.round((yy - oy) / step), np.round((xx - ox) / step)
    # A fixed jitter per grid node, from a small table.
    jitter = rng.uniform(-0.8, 0.8, size=(2, 64, 64))
    jy = jitter[0][gy.astype(int) % 64, gx.astype(int) % 64]
    jx = jitter[1][gy.astype(int) % 64, gx.astype(int) % 64]
    dy = yy - (gy * step + oy + jy)
    dx = xx - (gx * step + ox + jx)
    return (dy**2 + dx**2 <= radius**2).astype(np.float64)


def _texture_gravel(rng, yy, xx):
    return rng.random(yy.shape)


_TEXTURES: Dict[int, Callable] = {
    BACKGROUND: _texture_background,
    WATER: _texture_water,
    TILES: _texture_tiles,
    TENT: _texture_stripes,
    BOAT: _texture_stripes,
    FLOWERS: _texture_flowers,
    GRAVEL: _texture_gravel,
}

# ------------------------------------------------------------------- scene

# Width of the ring around a boat that is all water, and around a tent
# that has no water (the context that tells them apart).
_CONTEXT_RING = 3
# Tries to find a spot where a shape fits its context before giving up.
_MAX_TRIES = 20
# Classes that may lie anywhere: (class, probabilities of drawing 0, 1,
# ... regions of it, range of the shape radius at 64x64).
_TEXTURE_ONLY = (
    (TILES, (0.2, 0.4, 0.4), (8, 14)),
    (FLOWERS, (0.4, 0.4, 0.2), (5, 9)),
    (GRAVEL, (0.6, 0.4), (5, 8)),
)


class _Canvas:
    """A scene being drawn: its image, its labels and its randomness.

    Args:
        rng (np.random.Generator): Source of randomness (one per image).
        img_size (int): Height and width in pixels.
    """

    def __init__(self, rng: np.random.Generator, img_size: int) -> None:
        self.rng = rng
        self.size = size = int(img_size)
        self.scale = size / _REF_SIZE
        self.yy, self.xx = np.mgrid[:size, :size].astype(np.float64)
        self.label = np.zeros((size, size), dtype=np.uint8)
        self.image = np.zeros((size, size, 3), dtype=np.float64)

    def paint(self, mask: np.ndarray, cls: int) -> None:
        """Give a region its class and texture."""
        rng = self.rng
        # Two different shared colours, jittered per region.
        i, j = rng.choice(len(RENDER_COLOURS), size=2, replace=False)
        c0 = RENDER_COLOURS[i] + rng.normal(0, 10, 3)
        c1 = RENDER_COLOURS[j] + rng.normal(0, 10, 3)
        t = _TEXTURES[cls](rng, self.yy, self.xx)[mask][:, None]
        self.image[mask] = c0 * (1 - t) + c1 * t
        self.label[mask] = cls

    def centres(self, cls: int) -> Tuple[np.ndarray, np.ndarray]:
        """Pixels that may centre a region of ``cls``.

        For boats and tents this is only a proposal, which drops the
        centres too close to the wrong context so that fewer tries fail;
        :meth:`fits` decides.
        """
        margin = _CONTEXT_RING + 2
        if cls == BOAT:  # deep in the water, away from the border
            return np.nonzero(~dilate(self.label != WATER, margin, True))
        if cls == TENT:
            return np.nonzero(~dilate(self.label == WATER, margin))
        return np.nonzero(np.ones((self.size, self.size), dtype=bool))

    def fits(self, cls: int, mask: np.ndarray) -> bool:
        """Whether a region of ``cls`` may lie at ``mask``."""
        if not mask.any():
            return False
        if cls not in (TENT, BOAT):
            return True
        near = self.label[dilate(mask, _CONTEXT_RING)]
        if cls == TENT:
            # No water near a tent; no other stripes either: merged
            # stripe regions would look unlike boats, which never touch.
            return not np.isin(near, (WATER, TENT, BOAT)).any()
        # A boat: water all around, and the whole ring inside the image.
        return (not touches_border(mask, _CONTEXT_RING)
                and (near == WATER).all())

    def place(self, cls: int, radii: Tuple[float, float]) -> None:
        """Paint a region of ``cls`` where it fits, if a try finds one."""
        ys, xs = self.centres(cls)
        if len(ys) == 0:
            return
        # Draw the shape first and only then look for a spot: retrying
        # with new shapes would favour small boats over small tents.
        mid = self.size // 2
        template = random_shape(self.rng, self.yy, self.xx, mid, mid,
                                self.rng.uniform(*radii) * self.scale)
        for _ in range(_MAX_TRIES):  # rejection sampling of the position
            k = self.rng.integers(len(ys))
            mask = shift(template, ys[k] - mid, xs[k] - mid)
            if self.fits(cls, mask):
                self.paint(mask, cls)
                return

    def add_lakes(self) -> None:
        """Lakes (none in a fifth of the scenes): a few overlapping shapes,
        so that they are large and wide enough to hold boats."""
        rng, size = self.rng, self.size
        for _ in range(rng.choice(3, p=[0.2, 0.5, 0.3])):
            cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
            lake = np.zeros((size, size), dtype=bool)
            for _ in range(rng.integers(2, 4)):
                radius = rng.uniform(14, 22) * self.scale
                oy, ox = rng.normal(0, 0.5 * radius, 2)
                lake |= random_shape(rng, self.yy, self.xx, cy + oy, cx + ox,
                                     radius)
            self.paint(lake, WATER)

    def unlabel_part(self) -> None:
        """Drop the labels of a band or a patch (the image content
        stays)."""
        rng, size, label = self.rng, self.size, self.label
        kind = rng.integers(3)
        width = max(int(round(rng.uniform(3, 7) * self.scale)), 1)
        start = rng.integers(0, size - width + 1)
        if kind == 0:  # horizontal band
            label[start:start + width] = IGNORE_INDEX
        elif kind == 1:  # vertical band
            label[:, start:start + width] = IGNORE_INDEX
        else:  # rectangular patch
            h, w = (rng.uniform(8, 20, 2) * self.scale).astype(int) + 1
            y0 = rng.integers(0, size - h + 1)
            x0 = rng.integers(0, size - w + 1)
            label[y0:y0 + h, x0:x0 + w] = IGNORE_INDEX


def render_scene(rng: np.random.Generator,
                 img_size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one scene.

    Args:
        rng (np.random.Generator): Source of randomness (one per image).
        img_size (int): Height and width in pixels. Defaults to 64.

    Returns:
        tuple[np.ndarray, np.ndarray]: The (h, w, 3) uint8 RGB image and
        its (h, w) uint8 label map (class indices, 255 where unlabelled).
    """
    canvas = _Canvas(rng, img_size)
    canvas.paint(np.ones((canvas.size, canvas.size), dtype=bool), BACKGROUND)
    canvas.add_lakes()
    # Texture-only classes, anywhere (also over water, so that lying in
    # water is not by itself a cue), with imbalanced frequencies.
    for cls, counts, radii in _TEXTURE_ONLY:
        for _ in range(rng.choice(len(counts), p=counts)):
            canvas.place(cls, radii)
    # Stripes, with the same texture and size distributions on land
    # (tent) and in water (boat): only the surroundings tell them apart.
    for _ in range(rng.choice(4, p=[0.1, 0.3, 0.35, 0.25])):
        canvas.place(TENT, (5, 9))
    for _ in range(rng.choice(4, p=[0.05, 0.25, 0.4, 0.3])):
        canvas.place(BOAT, (5, 9))
    # Sensor noise on everything: binary textures are not pure colours.
    canvas.image += rng.normal(0, 5, canvas.image.shape)
    # An unlabelled band or patch in a quarter of the scenes.
    if rng.random() < 0.25:
        canvas.unlabel_part()
    image = np.clip(np.round(canvas.image), 0, 255).astype(np.uint8)
    return image, canvas.label
