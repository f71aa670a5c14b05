# Copyright (c) gskd-mm contributors. All rights reserved.
"""Distillation from a teacher cache: the teacher's records come from disk."""
import math
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from mmrazor.registry import MODELS

from .adversarial_distill import AdversarialEvalTeacherDistill
from .eval_teacher_distill import EvalTeacherDistill

__all__ = ['CachedTeacherDistill', 'CachedAdversarialTeacherDistill']

#: Strides tried first when telling a cached map's stride from its size.
_STRIDES = (1, 2, 4, 8, 16, 32, 64)


class TeacherStub(BaseModel):
    """Empty modules at the teacher recorders' sources.

    Recorders are prepared on it as on the teacher (their hooks never
    fire: the cache fills their records), so that no teacher weight is
    built or loaded.

    Args:
        sources (list[str]): Dotted module names.
        auxiliary (bool): The teacher's ``with_auxiliary_head``.
    """

    def __init__(self, sources: List[str], auxiliary: bool) -> None:
        super().__init__()
        for source in sources:
            parent = self
            for part in source.split('.'):
                if part not in parent._modules:
                    parent.add_module(part, nn.Module())
                parent = parent._modules[part]
        self.with_auxiliary_head = auxiliary
        self._is_init = True

    def forward(self, *args, **kwargs):
        raise RuntimeError('a cached teacher does not run')


def _map_stride(img_shape: Tuple[int, int], map_shape: Tuple[int,
                                                              int]) -> int:
    """The stride at which a network gives ``map_shape`` for ``img_shape``
    (``ceil(size / stride)`` on both axes)."""
    for s in _STRIDES:
        if all(math.ceil(i / s) == m for i, m in zip(img_shape, map_shape)):
            return s
    return max(1, round(max(i / m for i, m in zip(img_shape, map_shape))))


class TeacherCacheMixin:
    """Fill the teacher recorders from a :class:`TeacherCache`.

    Put before the online algorithm in the bases; see
    :class:`CachedTeacherDistill` for the arguments.
    """

    def __init__(self,
                 teacher: dict,
                 teacher_cache: dict,
                 teacher_ckpt: Optional[str] = None,
                 teacher_auxiliary: bool = False,
                 distiller: Optional[dict] = None,
                 **kwargs) -> None:
        sources = [
            rec['source']
            for rec in (distiller.get('teacher_recorders') or {}).values()
        ]
        super().__init__(
            teacher=TeacherStub(sources, teacher_auxiliary),
            teacher_ckpt=None,
            teacher_auxiliary=teacher_auxiliary,
            distiller=distiller,
            **kwargs)
        self._init_teacher_cache(teacher, teacher_ckpt, teacher_cache,
                                 distiller,
                                 getattr(self, 'teacher_logits', None))

    def _init_teacher_cache(self, teacher: dict, teacher_ckpt: Optional[str],
                            teacher_cache: dict, distiller: dict,
                            teacher_logits: Optional[str] = None) -> None:
        from gskd_mm.teacher_cache import (TeacherCache, checkpoint_identity,
                                           config_digest, recorder_specs,
                                           teacher_config)
        settings = dict(teacher_cache)
        root = settings.pop('root', None)
        if not root:
            raise ValueError('teacher_cache.root is not set: the directory '
                             'tools/cache_teacher.py wrote the cache to')
        self.off_scale = settings.pop('off_scale', 'nearest')
        if self.off_scale not in ('nearest', 'error'):
            raise ValueError(f"teacher_cache.off_scale={self.off_scale!r}: "
                             "'nearest' (with a warning) or 'error'")
        self.scale_tolerance = settings.pop('scale_tolerance', 1e-3)
        self.cache_mode = settings.pop('mode', 'dense')
        expected = dict(mode=self.cache_mode)
        if self.cache_mode == 'replay':
            expected['replay'] = dict(
                num_views=settings.pop('num_views', None),
                seed=settings.pop('seed', 0))
        elif self.cache_mode != 'dense':
            raise ValueError(f'teacher_cache.mode={self.cache_mode!r}: '
                             "'dense' or 'replay'")
        if settings:
            raise TypeError(f'unknown teacher_cache settings {settings}')
        if distiller.get('distill_deliveries'):
            raise ValueError(
                'the distiller has deliveries, which a cached teacher '
                'cannot replay: train this recipe with the online teacher')
        self.teacher_cache = TeacherCache(root)
        self.teacher_cache.check(
            dict(
                expected,
                teacher=dict(digest=config_digest(teacher_config(teacher))),
                checkpoint=checkpoint_identity(teacher_ckpt),
                recorders=recorder_specs(
                    dict(
                        distiller=distiller,
                        type='Adversarial' if teacher_logits else '',
                        teacher_logits=teacher_logits))))
        self._recorder_types = {
            name: spec['type']
            for name, spec in self.teacher_cache.recorders.items()
        }
        self._warned_scales = set()

    def _choose_view(self, index: int, view: dict) -> dict:
        """The cached view of the nearest scale, flipped as the crop if
        the cache has that flip."""
        views = self.teacher_cache.views[index]
        fw, fh = view['scale_factor']

        def distance(v):
            return abs(math.log(v['scale_factor'][1] / fh)) + abs(
                math.log(v['scale_factor'][0] / fw))

        best = min(distance(v) for v in views)
        if best > self.scale_tolerance:
            scales = sorted({v['scale'] for v in views})
            measured = self.teacher_cache.measured_fidelity()
            fidelity = (f'measured fidelity of these targets: {measured}'
                        if measured else 'measure what that costs with '
                        'tools/analysis_tools/cache_fidelity.py')
            message = (
                f'a training view at scale factor {fh:.4g} is not in the '
                f'teacher cache (scales {scales} of the resize ratio): '
                f'served from the nearest cached scale; {fidelity}; or '
                'cache more scales (tools/cache_teacher.py --scales)')
            if self.off_scale == 'error':
                raise ValueError(message.replace(
                    'served from the nearest cached scale',
                    'refused (teacher_cache.off_scale=error)'))
            if 'off_scale' not in self._warned_scales:
                warnings.warn(message)
                self._warned_scales.add('off_scale')
        near = [v for v in views if distance(v) <= best + 1e-12]
        direction = view.get('flip_direction') if view.get('flip') else None
        for v in near:
            if v.get('flip') == direction:
                return v
        for v in near:
            if v.get('flip') is None:
                return v
        raise ValueError(f'the teacher cache has no unflipped view of '
                         f'{view.get("img_path")}')

    def _replayed_view(self, index: int, view: dict,
                       input_shape: Tuple[int, int]) -> dict:
        """The cached view a replayed sample shows, checked to be it."""
        from gskd_mm.teacher_cache import StaleTeacherCacheError
        k = view.get('replay_view')
        if k is None:
            raise KeyError(
                'the data samples carry no replay_view: the training '
                "pipeline must replay the cache's views (TeacherViewDataset "
                "with teacher_cache mode='replay')")
        cached = next(
            (v for v in self.teacher_cache.views[index]
             if v.get('replay_view') == k), None)
        if cached is None or cached['digest'] != view['digest']:
            raise StaleTeacherCacheError(
                f'view {k} of {view["img_path"]} differs from the one the '
                f'teacher cache at {self.teacher_cache.root} holds (image '
                'digest): the training pipeline, its randomness or the '
                'images changed since the cache was made; make it again')
        if tuple(cached['input_shape']) != tuple(input_shape):
            raise ValueError(
                f'the batch is padded to {tuple(input_shape)}, the replay '
                f'cache to {tuple(cached["input_shape"])}: pad as the '
                'recipe the cache was made from (data_preprocessor.size)')
        return cached

    def _fill_teacher_recorders(
            self, batch_inputs: torch.Tensor,
            data_samples: Optional[List[BaseDataElement]]) -> None:
        """Put the cached records of the batch's crops into the teacher
        recorders, as the teacher's forward would have recorded them."""
        from gskd_mm.teacher_cache.geometry import output_size, sample_view
        if not data_samples or 'teacher_view' not in data_samples[0]:
            raise KeyError(
                'the data samples carry no teacher_view: the training '
                'pipeline must record each crop (wrap the training set in '
                "TeacherViewDataset, as configs/gskd/_base_/teacher_cache/"
                'dense.py does)')
        height, width = batch_inputs.shape[-2:]
        per_recorder: Dict[str, List[torch.Tensor]] = {
            n: []
            for n in self._recorder_types
        }
        for sample in data_samples:
            view = sample.teacher_view
            index = self.teacher_cache.index_of(view['img_path'],
                                                view.get('sample_idx'))
            if self.cache_mode == 'replay':
                cached = self._replayed_view(index, view, (height, width))
                for name in per_recorder:
                    per_recorder[name].append(
                        torch.from_numpy(
                            self.teacher_cache.read(cached, name)))
                continue
            cached = self._choose_view(index, view)
            for name in per_recorder:
                entry = cached['maps'][name]
                shape = entry['shape']
                stride = _map_stride(cached['img_shape'], shape[1:])
                out_hw = (output_size(height, stride),
                          output_size(width, stride))
                target, _ = sample_view(
                    lambda rows, c=cached, n=name: self.teacher_cache.read(
                        c, n, rows), shape, stride, out_hw, view, cached)
                per_recorder[name].append(target)
        manager = self.distiller.teacher_recorders
        for name, maps in per_recorder.items():
            batch = torch.stack(maps).to(batch_inputs.device)
            recorder = manager.get_recorder(name)
            if self._recorder_types[name] == 'ModuleInputs':
                recorder.data_buffer.append((batch, ))
            else:
                recorder.data_buffer.append(batch)

    def _teacher_forward(
            self, batch_inputs: torch.Tensor,
            data_samples: Optional[List[BaseDataElement]]) -> None:
        """Fill the teacher recorders from the cache (no teacher runs)."""
        self._fill_teacher_recorders(batch_inputs, data_samples)


@MODELS.register_module()
class CachedTeacherDistill(TeacherCacheMixin, EvalTeacherDistill):
    """:class:`EvalTeacherDistill` whose teacher records come from a cache.

    The teacher is neither built nor loaded: empty modules stand at its
    recorders' sources, and each step fills the teacher recorders with the
    cached maps cut to the batch's crops
    (:func:`~gskd_mm.teacher_cache.geometry.sample_view`): each map is
    sampled over the crop's region of the original image, at the cached
    scale nearest the crop's (flipped as the crop where the cache holds
    that flip), with MMSeg's resize alignment, zero on padding. The
    distillation losses and connectors then run unchanged. The cache is
    made by ``tools/cache_teacher.py`` from the same recipe; it is refused
    if made from another teacher config, checkpoint, recorder set or file
    list. The training set must record each crop's geometry
    (:class:`~gskd_mm.datasets.TeacherViewDataset`).

    Args:
        teacher (dict): The recipe's teacher (its config is compared with
            the cache's; it is not built).
        teacher_cache (dict): ``root`` (the cache directory), ``mode``
            ('dense', the default, or 'replay' with ``num_views`` and
            ``seed``: the views the cache holds, replayed by
            :class:`~gskd_mm.datasets.ReplayAugmentations`, whose targets
            are served as they are); dense only: ``off_scale``
            ('nearest': crops at a scale the cache lacks use the nearest
            cached one, with one warning; 'error': refuse them) and
            ``scale_tolerance`` (relative difference of scale factors
            counted as the same scale, default 1e-3).
        teacher_ckpt (str, optional): The recipe's teacher checkpoint (its
            sha256 is compared with the cache's; it is not loaded).
        teacher_auxiliary (bool): As in :class:`EvalTeacherDistill`.
        **kwargs: Other arguments of :class:`EvalTeacherDistill`.
    """


@MODELS.register_module()
class CachedAdversarialTeacherDistill(TeacherCacheMixin,
                                      AdversarialEvalTeacherDistill):
    """:class:`AdversarialEvalTeacherDistill` with a teacher cache (see
    :class:`CachedTeacherDistill`): the discriminator scores the cached
    teacher logits.

    Args:
        teacher (dict): The recipe's teacher (compared, not built).
        teacher_cache (dict): See :class:`CachedTeacherDistill`.
        teacher_ckpt (str, optional): Compared, not loaded.
        teacher_auxiliary (bool): As in :class:`EvalTeacherDistill`.
        **kwargs: Other arguments of :class:`AdversarialEvalTeacherDistill`.
    """
