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
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from .storage import DTYPES

__all__ = ['CacheBudget', 'recorder_shapes', 'cache_budget',
           'cache_budget_table']

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
        for name, model_cfg, alone in (('student', online, True),
                                       ('online', online, False),
                                       ('cached', cached_cfg, False)):
            out[name].append(
                time_steps(model_cfg, alone, device=device, repeats=repeats,
                           warmup=2, batch=batch).seconds)
    return out
