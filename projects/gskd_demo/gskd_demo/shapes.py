# Copyright (c) gskd-mm contributors. All rights reserved.
"""Region shapes and binary-mask geometry of the Synthetic Scenes renderer
(:func:`.scenes.render_scene`): random shapes, and masks rotated, dilated
and shifted on a pixel grid."""
from typing import Tuple

import numpy as np

__all__ = ['rotated', 'random_shape', 'dilate', 'shift', 'touches_border']


def rotated(yy: np.ndarray, xx: np.ndarray,
            angle: float) -> Tuple[np.ndarray, np.ndarray]:
    """Coordinates (u along ``angle``, v across it)."""
    c, s = np.cos(angle), np.sin(angle)
    return xx * c + yy * s, -xx * s + yy * c


def random_shape(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
                 cy: float, cx: float, radius: float) -> np.ndarray:
    """A random ellipse, polygon or blob centred at (cy, cx).

    Every shape lies within ``1.2 * radius`` of its centre.
    """
    kind = rng.integers(3)
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # rotated ellipse
        a = radius * rng.uniform(0.75, 1.0)
        b = radius * rng.uniform(0.5, 1.0)
        u, v = rotated(dy, dx, rng.uniform(0, np.pi))
        return (u / a)**2 + (v / b)**2 <= 1.0
    if kind == 1:  # polygon, vertices at sorted random angles
        n = rng.integers(4, 8)
        angles = np.sort(
            np.arange(n) * 2 * np.pi / n + rng.uniform(0, 2 * np.pi / n, n))
        radii = radius * rng.uniform(0.7, 1.1, n)
        py, px = cy + radii * np.sin(angles), cx + radii * np.cos(angles)
        inside = np.zeros(yy.shape, dtype=bool)
        for k in range(n):  # even-odd rule, one edge at a time
            y1, x1, y2, x2 = py[k], px[k], py[k - 1], px[k - 1]
            crosses = (y1 > yy) != (y2 > yy)
            with np.errstate(divide='ignore', invalid='ignore'):
                x_cross = (x2 - x1) * (yy - y1) / (y2 - y1) + x1
            inside ^= crosses & (xx < x_cross)
        return inside
    # blob: radius modulated by a few low harmonics of the angle
    phi = np.arctan2(dy, dx)
    r = np.ones_like(phi)
    for k in (2, 3, 4):
        weight, phase = rng.uniform(-0.15, 0.15), rng.uniform(0, 2 * np.pi)
        r += weight * np.cos(k * phi + phase)
    return dy**2 + dx**2 <= (radius * r)**2


def dilate(mask: np.ndarray, r: int, outside: bool = False) -> np.ndarray:
    """Binary dilation by a (2r+1)-square.

    ``outside`` is the value assumed beyond the image border.
    """
    h, w = mask.shape
    padded = np.pad(mask, r, constant_values=outside)
    rows = padded[:, :w].copy()  # separable: a max along rows...
    for shift in range(1, 2 * r + 1):
        rows |= padded[:, shift:shift + w]
    out = rows[:h].copy()  # ... then along columns
    for shift in range(1, 2 * r + 1):
        out |= rows[shift:shift + h]
    return out


def shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx); what leaves the image is lost."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def touches_border(mask: np.ndarray, r: int) -> bool:
    """Whether ``mask`` comes within ``r`` pixels of the image border."""
    return bool(mask[:r].any() or mask[-r:].any() or mask[:, :r].any()
                or mask[:, -r:].any())
