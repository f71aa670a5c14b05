# Copyright (c) gskd-mm contributors. All rights reserved.
"""Synthetic Scenes: a small procedural segmentation dataset for CPU demos.

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

On disk the layout is MMSeg's::

    data_root/
        img_dir/{train,val}/{train,val}_NNNNN.png  # RGB
        ann_dir/{train,val}/{train,val}_NNNNN.png  # uint8 label map
        splits/{train,val}.txt                     # basenames
        meta.json                                  # written last
"""
import contextlib
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS
from PIL import Image

try:  # POSIX only; elsewhere concurrent generation is simply not guarded.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    'CLASSES', 'PALETTE', 'RENDER_COLOURS', 'IGNORE_INDEX',
    'default_cache_dir', 'generate_synthetic_scenes', 'render_scene',
    'class_pixel_counts', 'split_names', 'SyntheticScenesDataset'
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

FORMAT_NAME = 'gskd_mm.synthetic_scenes'
# Bump whenever the rendering changes, so that caches are regenerated.
FORMAT_VERSION = 1
META_FILE = 'meta.json'
# Seed-sequence salt per split, so that train and val images differ.
_SPLIT_KEYS = dict(train=0, val=1)
# Reference size: the shapes below are sized for 64x64 images.
_REF_SIZE = 64.0


def default_cache_dir() -> str:
    """Directory where gskd-mm caches generated data.

    Returns:
        str: ``$GSKD_MM_CACHE`` if set, else ``~/.cache/gskd_mm``.
    """
    cache = os.environ.get('GSKD_MM_CACHE')
    if not cache:
        cache = osp.join('~', '.cache', 'gskd_mm')
    return osp.expanduser(cache)


# ---------------------------------------------------------------- textures
# Each texture maps pixel grids (yy, xx) to a blend weight in [0, 1]
# between the region's two colours. Orientations and phases are random.


def _rotated(yy: np.ndarray, xx: np.ndarray,
             angle: float) -> Tuple[np.ndarray, np.ndarray]:
    """Coordinates (u along ``angle``, v across it)."""
    c, s = np.cos(angle), np.sin(angle)
    return xx * c + yy * s, -xx * s + yy * c


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
    u, v = _rotated(yy, xx, rng.uniform(-np.pi / 6, np.pi / 6))
    period = rng.uniform(6.0, 9.0)
    amplitude, wavelength = rng.uniform(2.0, 3.5), rng.uniform(10.0, 18.0)
    phase, bend_phase = rng.uniform(0, 2 * np.pi, 2)
    bend = amplitude * np.sin(2 * np.pi * u / wavelength + bend_phase)
    return 0.5 + 0.5 * np.sin(2 * np.pi * v / period + bend + phase)


def _texture_stripes(rng, yy, xx):
    # Shared by ``tent`` and ``boat``: only the context tells them apart.
    _, v = _rotated(yy, xx, rng.uniform(0, np.pi))
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

# ------------------------------------------------------------------ shapes


def _shape(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float,
           cx: float, radius: float) -> np.ndarray:
    """A random ellipse, polygon or blob centred at (cy, cx).

    Every shape lies within ``1.2 * radius`` of its centre.
    """
    kind = rng.integers(3)
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # rotated ellipse
        a = radius * rng.uniform(0.75, 1.0)
        b = radius * rng.uniform(0.5, 1.0)
        u, v = _rotated(dy, dx, rng.uniform(0, np.pi))
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


def _dilate(mask: np.ndarray, r: int, outside: bool = False) -> np.ndarray:
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


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx); what leaves the image is lost."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _touches_border(mask: np.ndarray, r: int) -> bool:
    """Whether ``mask`` comes within ``r`` pixels of the image border."""
    return bool(mask[:r].any() or mask[-r:].any() or mask[:, :r].any()
                or mask[:, -r:].any())


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
    size = int(img_size)
    scale = size / _REF_SIZE
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    label = np.zeros((size, size), dtype=np.uint8)
    image = np.zeros((size, size, 3), dtype=np.float64)

    def paint(mask: np.ndarray, cls: int) -> None:
        # Two different shared colours, jittered per region.
        i, j = rng.choice(len(RENDER_COLOURS), size=2, replace=False)
        c0 = RENDER_COLOURS[i] + rng.normal(0, 10, 3)
        c1 = RENDER_COLOURS[j] + rng.normal(0, 10, 3)
        t = _TEXTURES[cls](rng, yy, xx)[mask][:, None]
        image[mask] = c0 * (1 - t) + c1 * t
        label[mask] = cls

    def centres(cls: int) -> Tuple[np.ndarray, np.ndarray]:
        # Pixels that may centre a region of ``cls``. For boats and tents
        # this is only a proposal, which drops the centres too close to
        # the wrong context so that fewer tries fail; ``fits`` decides.
        margin = _CONTEXT_RING + 2
        if cls == BOAT:  # deep in the water, away from the border
            return np.nonzero(~_dilate(label != WATER, margin, True))
        if cls == TENT:
            return np.nonzero(~_dilate(label == WATER, margin))
        return np.nonzero(np.ones((size, size), dtype=bool))

    def fits(cls: int, mask: np.ndarray) -> bool:
        if not mask.any():
            return False
        if cls not in (TENT, BOAT):
            return True
        near = label[_dilate(mask, _CONTEXT_RING)]
        if cls == TENT:
            # No water near a tent; no other stripes either: merged
            # stripe regions would look unlike boats, which never touch.
            return not np.isin(near, (WATER, TENT, BOAT)).any()
        # A boat: water all around, and the whole ring inside the image.
        return (not _touches_border(mask, _CONTEXT_RING)
                and (near == WATER).all())

    def place(cls: int, radii: Tuple[float, float]) -> None:
        ys, xs = centres(cls)
        if len(ys) == 0:
            return
        # Draw the shape first and only then look for a spot: retrying
        # with new shapes would favour small boats over small tents.
        mid = size // 2
        template = _shape(rng, yy, xx, mid, mid, rng.uniform(*radii) * scale)
        for _ in range(_MAX_TRIES):  # rejection sampling of the position
            k = rng.integers(len(ys))
            mask = _shift(template, ys[k] - mid, xs[k] - mid)
            if fits(cls, mask):
                paint(mask, cls)
                return

    paint(np.ones((size, size), dtype=bool), BACKGROUND)
    # Lakes (none in a fifth of the scenes): a few overlapping shapes, so
    # that they are large and wide enough to hold boats.
    for _ in range(rng.choice(3, p=[0.2, 0.5, 0.3])):
        cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
        lake = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(2, 4)):
            radius = rng.uniform(14, 22) * scale
            oy, ox = rng.normal(0, 0.5 * radius, 2)
            lake |= _shape(rng, yy, xx, cy + oy, cx + ox, radius)
        paint(lake, WATER)
    # Texture-only classes, anywhere (also over water, so that lying in
    # water is not by itself a cue), with imbalanced frequencies.
    for cls, counts, radii in _TEXTURE_ONLY:
        for _ in range(rng.choice(len(counts), p=counts)):
            place(cls, radii)
    # Stripes, with the same texture and size distributions on land
    # (tent) and in water (boat): only the surroundings tell them apart.
    for _ in range(rng.choice(4, p=[0.1, 0.3, 0.35, 0.25])):
        place(TENT, (5, 9))
    for _ in range(rng.choice(4, p=[0.05, 0.25, 0.4, 0.3])):
        place(BOAT, (5, 9))

    # Sensor noise on everything: binary textures are not pure colours.
    image += rng.normal(0, 5, image.shape)
    # An unlabelled band or patch in a quarter of the scenes; the image
    # content stays, only the annotation is missing.
    if rng.random() < 0.25:
        kind = rng.integers(3)
        width = max(int(round(rng.uniform(3, 7) * scale)), 1)
        start = rng.integers(0, size - width + 1)
        if kind == 0:  # horizontal band
            label[start:start + width] = IGNORE_INDEX
        elif kind == 1:  # vertical band
            label[:, start:start + width] = IGNORE_INDEX
        else:  # rectangular patch
            h, w = (rng.uniform(8, 20, 2) * scale).astype(int) + 1
            y0 = rng.integers(0, size - h + 1)
            x0 = rng.integers(0, size - w + 1)
            label[y0:y0 + h, x0:x0 + w] = IGNORE_INDEX
    return np.clip(np.round(image), 0, 255).astype(np.uint8), label


# ------------------------------------------------------------- generation


def _params(num_train: int, num_val: int, img_size: int, seed: int) -> dict:
    return dict(
        num_train=int(num_train),
        num_val=int(num_val),
        img_size=int(img_size),
        seed=int(seed))


def _read_meta(data_root: str) -> Optional[dict]:
    try:
        with open(osp.join(data_root, META_FILE)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_current(meta: Optional[dict], params: dict) -> bool:
    return (meta is not None and meta.get('format') == FORMAT_NAME
            and meta.get('version') == FORMAT_VERSION
            and meta.get('params') == params)


def _progress(total: int) -> Callable[[], None]:
    """An ``update()`` callable for a progress bar (a no-op without one)."""
    try:
        from mmengine.utils import ProgressBar
    except ImportError:  # pragma: no cover
        return lambda: None
    return ProgressBar(total).update


def generate_synthetic_scenes(data_root: str,
                              num_train: int = 300,
                              num_val: int = 60,
                              img_size: int = 64,
                              seed: int = 0) -> str:
    """Write the Synthetic Scenes dataset in MMSeg's layout.

    Deterministic: image ``i`` of a split depends only on ``seed``, the
    split and ``i`` (not on how many images are drawn). Idempotent: if
    ``data_root/meta.json`` records the same parameters (and rendering
    version), nothing is written. ``meta.json`` is written last, so an
    interrupted generation is redone rather than taken as complete.

    Args:
        data_root (str): Directory to write into (created if needed).
        num_train (int): Number of training images. Defaults to 300.
        num_val (int): Number of validation images. Defaults to 60.
        img_size (int): Height and width of the images. Defaults to 64.
        seed (int): Base random seed. Defaults to 0.

    Returns:
        str: ``data_root``.
    """
    params = _params(num_train, num_val, img_size, seed)
    if params['num_train'] < 0 or params['num_val'] < 0:
        raise ValueError('num_train and num_val must not be negative, got '
                         f'{num_train} and {num_val}')
    if params['img_size'] < 16:
        raise ValueError(f'img_size must be at least 16, got {img_size}')
    old_meta = _read_meta(data_root)
    if _is_current(old_meta, params):
        return data_root
    meta_path = osp.join(data_root, META_FILE)
    if old_meta is not None and old_meta.get('format') == FORMAT_NAME:
        # Ours, with other parameters: drop it, so that no stale image
        # survives (only directories this function writes are removed).
        os.remove(meta_path)
        for sub in ('img_dir', 'ann_dir', 'splits'):
            shutil.rmtree(osp.join(data_root, sub), ignore_errors=True)

    counts = dict(train=params['num_train'], val=params['num_val'])
    os.makedirs(osp.join(data_root, 'splits'), exist_ok=True)
    update = _progress(sum(counts.values()))
    for split, count in counts.items():
        img_dir = osp.join(data_root, 'img_dir', split)
        ann_dir = osp.join(data_root, 'ann_dir', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        names = []
        for i in range(count):
            # One generator per image, keyed by (seed, split, index).
            key = [params['seed'], _SPLIT_KEYS[split], i]
            rng = np.random.default_rng(key)
            image, label = render_scene(rng, params['img_size'])
            name = f'{split}_{i:05d}'
            Image.fromarray(image).save(osp.join(img_dir, name + '.png'))
            Image.fromarray(label).save(osp.join(ann_dir, name + '.png'))
            names.append(name)
            update()
        with open(osp.join(data_root, 'splits', f'{split}.txt'), 'w') as f:
            f.write(''.join(n + '\n' for n in names))

    meta = dict(
        format=FORMAT_NAME,
        version=FORMAT_VERSION,
        params=params,
        classes=list(CLASSES),
        palette=PALETTE,
        ignore_index=IGNORE_INDEX)
    tmp_path = meta_path + f'.tmp{os.getpid()}'
    with open(tmp_path, 'w') as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp_path, meta_path)  # atomic: present means complete
    return data_root


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'a') as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _ensure_generated(data_root: str, generate_cfg: dict) -> None:
    """Generate into ``data_root`` once, even from several processes."""
    params = _params(**{**_params(300, 60, 64, 0), **generate_cfg})
    if _is_current(_read_meta(data_root), params):
        return  # fast path: no lock needed to read a complete dataset
    root = osp.abspath(data_root)
    # The lock sits next to data_root, which generation may empty.
    lock = osp.join(osp.dirname(root), f'.{osp.basename(root)}.lock')
    with _file_lock(lock):
        # Another process may have finished while we waited.
        generate_synthetic_scenes(root, **params)


@DATASETS.register_module()
class SyntheticScenesDataset(BaseSegDataset):
    """Synthetic Scenes, generated on first use.

    Classes depend on texture and (``tent`` vs. ``boat``) on context, not
    on colour; see :mod:`.synthetic`.

    Args:
        data_root (str, optional): Dataset directory. Defaults to
            ``<default_cache_dir()>/synthetic_scenes``.
        ann_file (str): Split file, relative to ``data_root``. Defaults
            to ``'splits/train.txt'``.
        data_prefix (dict, optional): ``img_path`` and ``seg_map_path``.
            Defaults to the training split's directories.
        generate (bool): Generate the data into ``data_root`` if it is not
            there yet (or was generated with other parameters). Defaults
            to True.
        generate_cfg (dict, optional): Keyword arguments of
            :func:`generate_synthetic_scenes`. Defaults to None (its
            defaults).
        **kwargs: Other arguments of :class:`BaseSegDataset`.
    """
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self,
                 data_root: Optional[str] = None,
                 ann_file: str = 'splits/train.txt',
                 data_prefix: Optional[dict] = None,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 generate: bool = True,
                 generate_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        if data_root is None:
            data_root = osp.join(default_cache_dir(), 'synthetic_scenes')
        data_root = osp.expanduser(data_root)
        if data_prefix is None:
            data_prefix = dict(
                img_path='img_dir/train', seg_map_path='ann_dir/train')
        if generate:
            _ensure_generated(data_root, dict(generate_cfg or {}))
        super().__init__(
            data_root=data_root,
            ann_file=ann_file,
            data_prefix=data_prefix,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)


def class_pixel_counts(data_root: str, split: str = 'train') -> np.ndarray:
    """Pixels of each class (and, last, of 255) in a generated split.

    Args:
        data_root (str): A generated dataset.
        split (str): ``'train'`` or ``'val'``. Defaults to ``'train'``.

    Returns:
        np.ndarray: ``len(CLASSES) + 1`` counts, the last for ignore.
    """
    counts = np.zeros(len(CLASSES) + 1, dtype=np.int64)
    for name in split_names(data_root, split):
        path = osp.join(data_root, 'ann_dir', split, name + '.png')
        with Image.open(path) as f:
            label = np.asarray(f)
        hist = np.bincount(label.ravel(), minlength=256)
        counts[:-1] += hist[:len(CLASSES)]
        counts[-1] += hist[IGNORE_INDEX]
    return counts


def split_names(data_root: str, split: str) -> List[str]:
    """Basenames of the images of a generated split, in order.

    Args:
        data_root (str): A generated dataset.
        split (str): ``'train'`` or ``'val'``.

    Returns:
        list[str]: Names listed in ``splits/<split>.txt``.
    """
    with open(osp.join(data_root, 'splits', f'{split}.txt')) as f:
        return [line.strip() for line in f if line.strip()]
