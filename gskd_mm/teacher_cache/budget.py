# Copyright (c) gskd-mm contributors. All rights reserved.
"""What a teacher cache costs: its storage and its one-off pass.

For a recipe, the teacher recorders a cache holds (those its losses read)
have a width (channels) and a stride, found by one teacher forward on a
small input. A dense cache holds, per image, each recorder's map at every
cached scale and flip; a replay cache, K maps at the padded crop. The
one-off pass runs the teacher once per view: it is counted in teacher
forwards of a training crop (the pixels of the view over the crop's; the
teacher's FLOPs grow with pixels), against the online recipe's one per
image of every step (iterations x batch x processes).
"""
import math
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from ..analysis.budget import ITERS_MULTIPLE
from ..analysis.offline import offline_recipe, recipe_crop
from ..analysis.step_cost import matched_iters
from .settings import (ONLINE_TYPES, _bare, cache_settings, default_flips,
                       default_scales, online_config, train_dataset_cfg,
                       train_pipeline)
from .storage import DTYPES

__all__ = [
    'CacheBudget', 'CachedRecipeBudget', 'DATASET_IMAGES', 'recorder_shapes',
    'cache_budget', 'cache_budget_table', 'is_cached_recipe', 'dataset_images',
    'recipe_processes', 'recipe_cache_views', 'cached_recipe_budget',
    'storage_table'
]

#: Training images and a typical image's (h, w) at ratio 1 of the
#: recipes' ``RandomResize`` (Cityscapes 2048 x 1024; ADE20K and VOC aug
#: 2048 x 512, keep ratio, of 4:3 images), by dataset type.
DATASET_IMAGES = {
    'CityscapesDataset': (2975, (1024, 2048)),
    'ADE20KDataset': (20210, (512, 683)),
    'PascalVOCDataset': (10582, (512, 683)),  # VOC 2012 train + aug
}
#: The caches of :func:`storage_table`: dense at these resize ratios with
#: both flips, and replay of ``STORAGE_VIEWS`` views, in these dtypes.
STORAGE_FACTORS = (0.5, 1.0, 2.0)
STORAGE_FLIPS = 2
STORAGE_VIEWS = 8
STORAGE_DTYPES = ('fp16', 'int8')

#: Bytes per stored value, by dtype (int8 also stores one float per map).
BYTES = {k: v(0).itemsize for k, v in DTYPES.items()}


@dataclass
class CacheBudget:
    """Storage and one-off cost of a recipe's teacher cache.

    Attributes:
        mode (str): 'dense' or 'replay'.
        dtype (str): Storage dtype.
        images (int): Training images.
        views (int): Views per image.
        bytes_per_image (float): Stored bytes per image (all views).
        pass_forwards (float): Teacher forwards of the cache pass, in
            training-crop equivalents (view pixels / crop pixels).
        online_forwards (int): Teacher forwards of the online run (its
            iterations x images per step).
    """
    mode: str
    dtype: str
    images: int
    views: int
    bytes_per_image: float
    pass_forwards: float
    online_forwards: int

    @property
    def total_gb(self) -> float:
        """The whole cache, in GB (10^9 bytes)."""
        return self.bytes_per_image * self.images / 1e9

    @property
    def pass_share(self) -> float:
        """The cache pass as a share of the online run's teacher work."""
        return self.pass_forwards / self.online_forwards


def recorder_shapes(cfg: Config,
                    probe: Tuple[int, int] = (64, 128)) -> Dict[str, tuple]:
    """(channels, stride) of each teacher recorder a cache would hold.

    Builds the recipe's online algorithm (the teacher at its
    initialisation: no checkpoint is read) and records one forward of a
    ``probe``-sized input.

    Args:
        cfg (Config): The recipe (after ``offline_recipe`` for no
            downloads).
        probe (tuple[int, int]): (h, w) of the probe input.

    Returns:
        dict[str, tuple]: Per recorder, (channels, stride).
    """
    from .cache_pass import TeacherRunner
    runner = TeacherRunner(cfg)
    records = runner.record(torch.zeros(1, 3, *probe))
    return {
        name: (int(r.shape[1]), round(probe[0] / r.shape[2]))
        for name, r in records.items()
    }


def _cells(size: Tuple[float, float], stride: int) -> int:
    return math.ceil(size[0] / stride) * math.ceil(size[1] / stride)


def cache_budget(shapes: Dict[str, tuple],
                 images: int,
                 image_hw: Tuple[int, int],
                 crop: Tuple[int, int],
                 online_forwards: int,
                 factors: Sequence[float] = (1.0, ),
                 flips: int = 2,
                 dtype: str = 'fp16',
                 num_views: Optional[int] = None) -> CacheBudget:
    """Storage and one-off cost of a cache.

    Args:
        shapes (dict): :func:`recorder_shapes`.
        images (int): Training images.
        image_hw (tuple[int, int]): A typical image's (h, w).
        crop (tuple[int, int]): The training crop (padded batch) (h, w).
        online_forwards (int): Teacher forwards of the online run.
        factors (Sequence[float]): Resize factors of the cached scales
            (dense), relative to ``image_hw``.
        flips (int): Views per scale (1 + the flip directions).
        dtype (str): Storage dtype. Defaults to 'fp16'.
        num_views (int, optional): K: a replay cache of K padded crops per
            image instead of a dense one.

    Returns:
        CacheBudget: The budget.
    """
    width = BYTES[dtype]
    extra = 4 if dtype == 'int8' else 0  # the map's scale
    crop_pixels = crop[0] * crop[1]
    if num_views:
        per_view = sum(c * _cells(crop, s) * width + extra
                       for c, s in shapes.values())
        return CacheBudget('replay', dtype, images, num_views,
                           per_view * num_views, images * num_views,
                           online_forwards)
    stored, forwards = 0.0, 0.0
    for f in factors:
        size = (image_hw[0] * f, image_hw[1] * f)
        stored += flips * sum(c * _cells(size, s) * width + extra
                              for c, s in shapes.values())
        forwards += flips * size[0] * size[1] / crop_pixels
    return CacheBudget('dense', dtype, images, flips * len(factors), stored,
                       images * forwards, online_forwards)


def cache_budget_table(rows: Dict[str, CacheBudget]) -> str:
    """Budgets as a Markdown table.

    Args:
        rows (dict[str, CacheBudget]): Budgets by label.

    Returns:
        str: The table.
    """
    lines = [
        '| cache | mode | dtype | views per image | MB per image | '
        'total GB | one-off pass (teacher crop forwards) | '
        'share of the online run\'s teacher forwards |',
        '|---|---|---|---|---|---|---|---|'
    ]
    for label, b in rows.items():
        lines.append(
            f'| {label} | {b.mode} | {b.dtype} | {b.views} | '
            f'{b.bytes_per_image / 1e6:.2f} | {b.total_gb:.1f} | '
            f'{b.pass_forwards:,.0f} | {100 * b.pass_share:.1f} % |')
    return '\n'.join(lines)


def is_cached_recipe(cfg: Config) -> bool:
    """Whether a recipe serves its teacher from a cache."""
    return _bare(cfg.model.get('type')) in ONLINE_TYPES


def dataset_images(cfg: Config) -> Tuple[int, Tuple[int, int]]:
    """Training images and a typical image's (h, w) of a recipe's dataset
    (:data:`DATASET_IMAGES`; wrappers and concatenations walked).

    Args:
        cfg (Config): A recipe.

    Returns:
        tuple: The images and the (h, w).
    """
    node = train_dataset_cfg(cfg)
    while isinstance(node.get('dataset'), dict):
        node = node.dataset
    if node.get('datasets'):
        node = node.datasets[0]
    kind = _bare(node.get('type'))
    if kind not in DATASET_IMAGES:
        raise KeyError(f'no image count and size known for dataset {kind!r} '
                       f'(known: {sorted(DATASET_IMAGES)}): add its own to '
                       'gskd_mm.teacher_cache.budget.DATASET_IMAGES')
    return DATASET_IMAGES[kind]


def recipe_processes(path: str) -> int:
    """The processes (GPUs) a recipe's name assumes, ``4`` in ``_4xb4-``."""
    match = re.search(r'_(\d+)xb\d+-', osp.basename(path))
    if match is None:
        raise ValueError(f'{osp.basename(path)} does not name its GPUs '
                         '(as _4xb4-): give them')
    return int(match.group(1))


def recipe_cache_views(cfg: Config) -> dict:
    """The views a recipe's cache holds, as :func:`cache_budget` takes
    them: ``num_views`` (replay) or ``factors`` and ``flips`` (dense: the
    cache pass's defaults, 3 ratios over the ``RandomResize`` range and
    every flip of the pipeline).

    Args:
        cfg (Config): A cached recipe.

    Returns:
        dict: Keyword arguments of :func:`cache_budget`.
    """
    settings = cache_settings(cfg)
    if settings.get('mode') == 'replay':
        return dict(num_views=settings.get('num_views', STORAGE_VIEWS))
    pipeline = train_pipeline(cfg)
    return dict(factors=tuple(default_scales(pipeline)),
                flips=len(default_flips(pipeline)))


@dataclass
class CachedRecipeBudget:
    """A cached recipe's compute against its student trained alone.

    A step runs the student's forward and backward and no teacher (step
    ratio 1 by FLOPs); the one-off pass runs the teacher over the cached
    views, ``pass_forwards`` forwards of a training crop, worth
    ``pass_forwards x F_t / (3 F_s x images per step)`` student
    iterations.

    Attributes:
        iters (int): The recipe's training iterations.
        images_per_step (int): Batch per process x processes.
        flop_ratio (float): ``F_t / F_s`` at the training crop.
        caches (dict[str, CacheBudget]): The recipe's cache, by dtype.
    """
    iters: int
    images_per_step: int
    flop_ratio: float
    caches: Dict[str, CacheBudget]

    @property
    def pass_forwards(self) -> float:
        """Teacher forwards of the one-off pass, in training crops."""
        return next(iter(self.caches.values())).pass_forwards

    @property
    def pass_student_iters(self) -> float:
        """The one-off pass in student iterations."""
        return (self.pass_forwards * self.flop_ratio /
                (3 * self.images_per_step))

    def student_iters(self, by: str, amortised: bool = True) -> int:
        """The student-only iterations the recipe's compute buys.

        Args:
            by (str): 'flops' (a step of ratio 1, the pass counted by
                FLOPs) or 'iters' (equal iterations: the pass not
                counted).
            amortised (bool): Add the one-off pass (a cache made for this
                run); False: a reused cache. Defaults to True.

        Returns:
            int: ``iters`` (+ the pass), rounded to a multiple of
            ``ITERS_MULTIPLE``.
        """
        if by not in ('flops', 'iters'):
            raise ValueError(f'a cached recipe is budgeted by flops or '
                             f'iters, got {by!r}')
        extra = self.pass_student_iters if by == 'flops' and amortised else 0
        return matched_iters(self.iters, 1 + extra / self.iters,
                             ITERS_MULTIPLE)


def _online_recipe(cfg: Config) -> Config:
    """The online recipe of ``cfg``, built offline at its crop."""
    online = online_config(cfg)
    return offline_recipe(online, None)


def cached_recipe_budget(
        cfg: Config,
        flop_ratio: float,
        processes: int,
        dtypes: Sequence[str] = STORAGE_DTYPES,
        images: Optional[Tuple[int, Tuple[int, int]]] = None,
        shapes: Optional[Dict[str, tuple]] = None) -> CachedRecipeBudget:
    """The budget of a cached recipe: its cache's storage per dtype and
    one-off pass, and what they buy.

    Args:
        cfg (Config): A cached recipe.
        flop_ratio (float): ``F_t / F_s`` of its online recipe
            (:func:`~gskd_mm.analysis.recipe_flops`).
        processes (int): Training processes (GPUs).
        dtypes (Sequence[str]): Storage dtypes to account.
        images (tuple, optional): Training images and a typical (h, w);
            None: :func:`dataset_images`.
        shapes (dict, optional): :func:`recorder_shapes`; None: counted.

    Returns:
        CachedRecipeBudget: The budget.
    """
    images, image_hw = images or dataset_images(cfg)
    shapes = shapes or recorder_shapes(_online_recipe(cfg))
    per_step = cfg.train_dataloader.batch_size * processes
    iters = cfg.train_cfg.max_iters
    caches = {
        dtype:
        cache_budget(shapes,
                     images,
                     image_hw,
                     recipe_crop(cfg),
                     iters * per_step,
                     dtype=dtype,
                     **recipe_cache_views(cfg))
        for dtype in dtypes
    }
    return CachedRecipeBudget(iters, per_step, flop_ratio, caches)


def storage_table(
        recipes: Dict[str, Config],
        processes: Dict[str, int]) -> Tuple[List[str], List[List[str]]]:
    """Storage and one-off pass of the caches of recipes (cached or
    online): dense, :data:`STORAGE_FACTORS` x :data:`STORAGE_FLIPS`
    views, and replay of :data:`STORAGE_VIEWS`, in each of
    :data:`STORAGE_DTYPES`.

    Args:
        recipes (dict[str, Config]): Recipes by label.
        processes (dict[str, int]): Their training processes, by label.

    Returns:
        tuple: The header and the rows.
    """
    header = ['recipe', 'images', 'cache', 'views per image'
              ] + [f'storage, {dtype} (GB)' for dtype in STORAGE_DTYPES] + [
                  'one-off pass (teacher crop forwards)',
                  'share of the online run\'s teacher forwards'
              ]
    rows = []
    for label, cfg in recipes.items():
        images, image_hw = dataset_images(cfg)
        shapes = recorder_shapes(_online_recipe(cfg))
        online = (cfg.train_cfg.max_iters * cfg.train_dataloader.batch_size *
                  processes[label])
        views = {
            f'dense, {len(STORAGE_FACTORS)} scales x {STORAGE_FLIPS} flips':
            dict(factors=STORAGE_FACTORS, flips=STORAGE_FLIPS),
            f'replay, K={STORAGE_VIEWS}':
            dict(num_views=STORAGE_VIEWS),
        }
        for name, kwargs in views.items():
            budgets = [
                cache_budget(shapes,
                             images,
                             image_hw,
                             recipe_crop(cfg),
                             online,
                             dtype=dtype,
                             **kwargs) for dtype in STORAGE_DTYPES
            ]
            rows.append([
                label, f'{images} at {image_hw[0]} x {image_hw[1]}', name,
                str(budgets[0].views)
            ] + [f'{b.total_gb:.1f}' for b in budgets] + [
                f'{budgets[0].pass_forwards:,.0f}',
                f'{100 * budgets[0].pass_share:.1f} %'
            ])
    return header, rows


def time_cached_steps(cfg: Config,
                      root: str,
                      batch_size: Optional[int] = None,
                      rounds: int = 3,
                      repeats: int = 10,
                      device: str = 'cpu',
                      **settings) -> Dict[str, List[float]]:
    """Median training-step seconds of the student alone, the online
    recipe and the cached recipe, on one batch, in alternating rounds.

    Args:
        cfg (Config): The recipe, run offline (its teacher's weights are
            not needed for timing, but the cache must match the recipe).
        root (str): A cache of the recipe.
        batch_size (int, optional): Images per step; None: the recipe's.
        rounds (int): Rounds, each timing the three in turn. Defaults to 3.
        repeats (int): Timed steps per model and round. Defaults to 10.
        device (str): Defaults to 'cpu'.
        **settings: ``teacher_cache`` settings (``mode``, ...).

    Returns:
        dict[str, list[float]]: Per model ('student', 'online', 'cached'),
        the median step of each round.
    """
    import copy

    from mmengine.registry import init_default_scope

    from ..analysis.step_benchmark import first_batch, time_steps
    from .fidelity import use_teacher_cache
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    cached_cfg = use_teacher_cache(cfg, root, **settings)
    if batch_size:
        cached_cfg.train_dataloader.batch_size = batch_size
    batch = first_batch(cached_cfg)  # with each crop's teacher_view
    online = copy.deepcopy(cfg)
    out: Dict[str, List[float]] = {'student': [], 'online': [], 'cached': []}
    for _ in range(rounds):
        for name, model_cfg, alone in (('student', online,
                                        True), ('online', online, False),
                                       ('cached', cached_cfg, False)):
            out[name].append(
                time_steps(model_cfg,
                           alone,
                           device=device,
                           repeats=repeats,
                           warmup=2,
                           batch=batch).seconds)
    return out
