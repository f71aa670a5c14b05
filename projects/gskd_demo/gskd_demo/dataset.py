# Copyright (c) gskd-mm contributors. All rights reserved.
"""Synthetic Scenes on disk: generated once into a cache, read by MMSeg.

The scenes are drawn by :func:`.scenes.render_scene`; this module writes
them (deterministic, idempotent, guarded by a file lock across processes),
registers the MMSeg dataset that generates them on first use, and reads
statistics back. On disk the layout is MMSeg's::

    data_root/
        img_dir/{train,val}/{train,val}_NNNNN.png  # RGB
        ann_dir/{train,val}/{train,val}_NNNNN.png  # uint8 label map
        splits/{train,val}.txt                     # basenames
        meta.json                                  # written last
"""
import contextlib
import copy
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmseg.datasets import BaseSegDataset
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS
from PIL import Image

from .scenes import CLASSES, IGNORE_INDEX, PALETTE, render_scene

try:  # POSIX only; elsewhere concurrent generation is simply not guarded.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    'default_cache_dir', 'generate_synthetic_scenes', 'class_pixel_counts',
    'split_names', 'SyntheticScenesDataset'
]

FORMAT_NAME = 'gskd_mm.synthetic_scenes'
# Bump whenever the rendering changes, so that caches are regenerated.
FORMAT_VERSION = 1
META_FILE = 'meta.json'
# Seed-sequence salt per split, so that train and val images differ.
_SPLIT_KEYS = dict(train=0, val=1)


def default_cache_dir() -> str:
    """Directory where gskd-mm caches generated data.

    Returns:
        str: ``$GSKD_MM_CACHE`` if set, else ``~/.cache/gskd_mm``.
    """
    cache = os.environ.get('GSKD_MM_CACHE')
    if not cache:
        cache = osp.join('~', '.cache', 'gskd_mm')
    return osp.expanduser(cache)


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
        _write_split(data_root, split, count, params, update)

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


def _write_split(data_root: str, split: str, count: int, params: dict,
                 update: Callable[[], None]) -> None:
    """Render and write the ``count`` images of a split, their labels and
    the split's list (``update`` after each image)."""
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
    on colour; see :mod:`.scenes`.

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

    What the pipeline's leading loading transforms (``LoadImageFromFile``,
    ``LoadAnnotations``) make of an image and its labels depends on the
    files alone, so it is computed once per process and file and kept
    (the demo trains hundreds of runs in a process on the same few hundred
    images); the transforms after them (the random flip, packing) run on a
    copy every time, as before, so the samples and the random draws are
    the same as without the cache.
    """
    METAINFO = dict(classes=CLASSES, palette=PALETTE)
    #: The transforms whose output depends on the files alone.
    FILE_LOADERS = (LoadImageFromFile, LoadAnnotations)

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

    def prepare_data(self, idx: int) -> Optional[dict]:
        """The pipeline's output for a sample, its file loading kept."""
        transforms = self.pipeline.transforms
        count = 0
        while count < len(transforms) and isinstance(transforms[count],
                                                     self.FILE_LOADERS):
            count += 1
        info = self.get_data_info(idx)
        key = (info['img_path'], info.get('seg_map_path'),
               os.stat(info['img_path']).st_mtime_ns, count)
        if key not in _LOADED:
            results = info
            for transform in transforms[:count]:
                results = transform(results)
            _LOADED[key] = results
        results = copy.deepcopy(_LOADED[key])
        for transform in transforms[count:]:
            results = transform(results)
            if results is None:
                return None
        return results


# What the file-loading transforms made of each file, in this process.
_LOADED: Dict[tuple, dict] = {}


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
