# Copyright (c) gskd-mm contributors. All rights reserved.
"""How far a teacher cache's targets are from the online teacher's.

Draws training samples through the recipe's real pipeline and, on each
crop, compares the targets the cache serves
(:class:`~gskd_mm.models.CachedTeacherDistill`) with those the teacher
computes online on the same padded batch: per-pixel argmax agreement and
the KL divergence of the softened logits (at the temperature of the
recipe's losses on them), the cosine of features, and each distillation
loss's value with online and with cached targets (the student's records
shared). Cells of padding are left out. Results by scale and flip.
"""
import copy
import math
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.utils import ProgressBar
from mmrazor.registry import MODELS
from mmseg.registry import DATASETS

from .cache_pass import TeacherRunner
from .settings import CACHED_TYPES, online_config
from .storage import FIDELITY, _write_json

__all__ = [
    'use_teacher_cache', 'cache_fidelity', 'fidelity_table', 'save_fidelity'
]


def use_teacher_cache(cfg: Config, root: str, **settings) -> Config:
    """A recipe switched to the teacher cache at ``root``.

    The model becomes the cached algorithm of its online one and the
    training set is wrapped in ``TeacherViewDataset`` (what the recipes of
    ``configs/gskd/teacher_cache/`` write in their config).

    Args:
        cfg (Config): An online or cached recipe.
        root (str): The cache directory.
        **settings: Other ``teacher_cache`` settings (``mode``,
            ``num_views``, ``seed``, ``off_scale``).

    Returns:
        Config: A copy.
    """
    cfg = online_config(cfg)
    cache = dict(dict(mode='dense'), **settings, root=root)
    cfg.model.type = CACHED_TYPES[cfg.model.type.split('.')[-1]]
    cfg.model.teacher_cache = cache
    cfg.train_dataloader.dataset = dict(
        type='TeacherViewDataset',
        dataset=cfg.train_dataloader.dataset,
        cache=cache)
    return cfg


def _temperatures(distiller: dict) -> Dict[str, float]:
    """Per teacher recorder, the temperature of the first loss on it."""
    out = {}
    for loss_name, mapping in distiller.loss_forward_mappings.items():
        tau = distiller.distill_losses[loss_name].get('tau', 1.0)
        for record in mapping.values():
            if not record.get('from_student', True):
                out.setdefault(record['recorder'], float(tau))
    return out


def _valid(view: dict, shape: Tuple[int, int],
           input_hw: Tuple[int, int]) -> torch.Tensor:
    """Cells of a (h, w) map whose centre lies in the crop (not padding)."""
    y1, y2, x1, x2 = view['crop_bbox']
    masks = []
    for cells, size, extent in ((shape[0], input_hw[0], y2 - y1),
                                (shape[1], input_hw[1], x2 - x1)):
        stride = size / cells
        centre = (torch.arange(cells, dtype=torch.float64) + 0.5) * stride
        masks.append(centre - 0.5 <= extent - 0.5)
    return masks[0][:, None] & masks[1][None, :]


def _group(model, view: dict) -> str:
    """The scale and flip of a sample, as its result group."""
    flip = view.get('flip_direction') if view.get('flip') else 'none'
    if getattr(model, 'cache_mode', 'dense') == 'replay':
        return f'replay, flip {flip}'
    index = model.teacher_cache.index_of(view['img_path'],
                                         view.get('sample_idx'))
    cached = model._choose_view(index, view)
    fw, fh = view['scale_factor']
    exact = abs(math.log(cached['scale_factor'][1] / fh)) <= \
        model.scale_tolerance
    where = 'cached scale' if exact else 'nearest scale'
    return f'{where} {cached["scale"]:g}, flip {flip}'


def _records(manager, names) -> Dict[str, object]:
    return {n: manager.get_recorder(n).data_buffer[0] for n in names}


def _tensor(record) -> torch.Tensor:
    return record[0] if isinstance(record, (tuple, list)) else record


@torch.no_grad()
def cache_fidelity(cfg: Config,
                   root: str,
                   num_samples: int = 32,
                   checkpoint: Optional[str] = None,
                   seed: int = 0,
                   device: str = 'cpu',
                   **settings) -> Dict[str, Dict[str, float]]:
    """Compare cached and online teacher targets on drawn training crops.

    Args:
        cfg (Config): The recipe (online or cached).
        root (str): The cache directory (made from this recipe).
        num_samples (int): Samples drawn (with the pipeline's randomness,
            seeded). Defaults to 32.
        checkpoint (str, optional): The teacher's weights instead of the
            recipe's ``teacher_ckpt`` (as given to the cache pass).
        seed (int): Seed of the draws. Defaults to 0. (The losses' student
            side is the recipe's student at its initialisation, seed 0.)
        device (str): Defaults to 'cpu'.
        **settings: ``teacher_cache`` settings (``mode``, ``num_views``,
            ``seed`` of a replay cache).

    Returns:
        dict[str, dict[str, float]]: Per group (``'all'`` and each scale /
        flip), the mean of each measure over its samples, and ``samples``.
    """
    cached_cfg = use_teacher_cache(cfg, root, **settings)
    if checkpoint is not None:
        cached_cfg.model.teacher_ckpt = checkpoint
    online = TeacherRunner(cfg, checkpoint, device)
    cached, dataset = _cached_model(cached_cfg, device)
    model = online.model
    taus = _temperatures(cached_cfg.model.distiller)
    rng = np.random.default_rng(seed)
    np.random.seed(seed)
    sums: Dict[str, Dict[str, List[float]]] = defaultdict(
        lambda: defaultdict(list))
    bar = ProgressBar(num_samples)
    for _ in range(num_samples):
        index = int(rng.integers(len(dataset)))
        data = model.data_preprocessor(pseudo_collate([dataset[index]]),
                                       True)
        inputs = data['inputs'].to(device)
        samples = data['data_samples']
        view = samples[0].teacher_view
        from_cache = _cached_records(cached, inputs, samples)
        from_teacher = _online_records(model, inputs, samples, from_cache)
        measures = _target_measures(from_teacher, from_cache, view,
                                    inputs.shape[-2:], taus)
        measures.update(_loss_measures(model, inputs, samples, from_cache))
        for group in ('all', _group(cached, view)):
            for key, value in measures.items():
                sums[group][key].append(value)
        bar.update()
    return _means(sums)


def _cached_model(cached_cfg: Config, device: str):
    """The cached recipe's algorithm (eval mode) and training set."""
    scope = cached_cfg.get('default_scope', 'mmseg')
    with DefaultScope.overwrite_default_scope(scope):
        cached = MODELS.build(copy.deepcopy(cached_cfg.model)).to(device)
        dataset = DATASETS.build(cached_cfg.train_dataloader.dataset)
    cached.eval()
    return cached, dataset


def _cached_records(cached, inputs: torch.Tensor,
                    samples) -> Dict[str, object]:
    """What the cached algorithm's teacher recorders record."""
    with cached.distiller.teacher_recorders:
        cached._teacher_forward(inputs, samples)
    return _records(cached.distiller.teacher_recorders,
                    cached._recorder_types)


def _online_records(model, inputs: torch.Tensor, samples,
                    names) -> Dict[str, object]:
    """What the online teacher records, for the recorders ``names``."""
    distiller = model.distiller
    distiller.set_deliveries_override(False)
    with distiller.teacher_recorders, distiller.deliveries:
        model._teacher_forward(inputs, samples)
    return _records(distiller.teacher_recorders, names)


def _target_measures(from_teacher: Dict[str, object],
                     from_cache: Dict[str, object], view: dict,
                     input_shape, taus: Dict[str, float]) -> Dict[str, float]:
    """How close each cached target is to the online one, on the valid
    pixels: argmax agreement and KL of logits, cosine of features."""
    measures = {}
    for name, record in from_teacher.items():
        t = _tensor(record).float()
        c = _tensor(from_cache[name]).float().to(t.device)
        valid = _valid(view, t.shape[-2:], input_shape).to(t.device)
        if 'logits' in name:
            tau = taus.get(name, 1.0)
            agree = (t.argmax(1) == c.argmax(1))[0][valid]
            measures[f'{name} argmax agreement %'] = float(
                agree.float().mean()) * 100
            kl = (F.softmax(t / tau, 1) *
                  (F.log_softmax(t / tau, 1) -
                   F.log_softmax(c / tau, 1))).sum(1)[0][valid]
            measures[f'{name} KL (tau {tau:g})'] = float(kl.mean())
        else:
            cos = F.cosine_similarity(t, c, dim=1)[0][valid]
            measures[f'{name} cosine'] = float(cos.mean())
    return measures


def _loss_measures(model, inputs: torch.Tensor, samples,
                   from_cache: Dict[str, object]) -> Dict[str, float]:
    """Each loss with the student's records and either target."""
    distiller = model.distiller
    distiller.set_deliveries_override(True)
    with distiller.student_recorders, distiller.deliveries:
        model.student(inputs, samples, mode='loss')
    losses_online = distiller.compute_distill_losses()
    for name, record in from_cache.items():
        distiller.teacher_recorders.get_recorder(name)._data_buffer = [
            record
        ]
    losses_cached = distiller.compute_distill_losses()
    measures = {}
    for name, value in losses_online.items():
        measures[f'{name} online'] = float(value)
        measures[f'{name} cached'] = float(losses_cached[name])
    return measures


def _means(sums: Dict[str, Dict[str, List[float]]]
           ) -> Dict[str, Dict[str, float]]:
    """Per group, the mean of each measure and the number of samples."""
    out = {}
    for group, values in sums.items():
        out[group] = {k: float(np.mean(v)) for k, v in values.items()}
        out[group]['samples'] = len(next(iter(values.values())))
    return out


def fidelity_table(results: Dict[str, Dict[str, float]]) -> str:
    """The results as a Markdown table, one row per group.

    Args:
        results (dict): Output of :func:`cache_fidelity`.

    Returns:
        str: The table.
    """
    groups = ['all'] + sorted(g for g in results if g != 'all')
    keys = [k for k in results['all'] if k != 'samples']
    lines = ['| group | samples | ' + ' | '.join(keys) + ' |',
             '|---' * (len(keys) + 2) + '|']
    for g in groups:
        row = results[g]
        lines.append(f'| {g} | {row["samples"]} | ' + ' | '.join(
            f'{row[k]:.4g}' for k in keys) + ' |')
    return '\n'.join(lines)


def save_fidelity(root: str, results: Dict[str, Dict[str, float]]) -> str:
    """Keep fidelity results with the cache (``<root>/fidelity.json``).

    Args:
        root (str): The cache directory.
        results (dict): Output of :func:`cache_fidelity`.

    Returns:
        str: The file written.
    """
    path = osp.join(root, FIDELITY)
    _write_json(path, results)
    return path
