# Copyright (c) gskd-mm contributors. All rights reserved.
"""A dataset wrapper that makes a recipe's training pipeline record each
crop's geometry for a teacher cache."""
import copy
from typing import Any, List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset
from mmseg.registry import DATASETS

__all__ = [
    'TeacherViewDataset', 'patch_dataset_cfg', 'replay_settings',
    'teacher_view_pipeline'
]

#: Transforms that move pixels in ways a dense cache cannot follow.
UNSUPPORTED = ('RandomRotate', 'RandomRotFlip', 'RandomMosaic',
               'RandomCutOut', 'Albu')
#: ``PackSegInputs``'s default ``meta_keys`` (MMSeg 1.x).
PACK_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape',
                  'pad_shape', 'scale_factor', 'flip', 'flip_direction',
                  'reduce_zero_label')


def teacher_view_pipeline(pipeline: Sequence[dict],
                          replay: Optional[dict] = None) -> List[dict]:
    """A training pipeline that records each crop's geometry.

    ``RandomCrop`` becomes :class:`RandomCropWithBox` (same draws),
    :class:`RecordTeacherView` goes before ``PackSegInputs``, whose
    ``meta_keys`` get ``'teacher_view'``. With ``replay``, the transforms
    between the loading ones and ``PackSegInputs`` run inside
    :class:`ReplayAugmentations` instead. Applying it twice changes
    nothing more.

    Args:
        pipeline (Sequence[dict]): Transform configs.
        replay (dict, optional): ``num_views`` and ``seed`` of the replay
            mode. Defaults to None (dense mode).

    Returns:
        list[dict]: The new pipeline (the input is not changed).

    Raises:
        ValueError: A transform the cache cannot follow (rotations,
            mosaics), or no ``PackSegInputs``.
    """
    pipeline = copy.deepcopy(list(pipeline))
    if any(t.get('type') == 'ReplayAugmentations' for t in pipeline):
        return pipeline
    out = _with_view_record(pipeline, dense=replay is None)
    if replay is not None:
        out = _inside_replay(out, replay)
    return out


def _with_view_record(pipeline: List[dict], dense: bool) -> List[dict]:
    """The pipeline (changed in place) with ``RandomCropWithBox`` and
    :class:`RecordTeacherView` before ``PackSegInputs``, checked."""
    out = []
    for transform in pipeline:
        kind = str(transform.get('type', '')).split('.')[-1]
        if kind in UNSUPPORTED and dense:
            raise ValueError(
                f'the training pipeline has {kind}, which a dense teacher '
                'cache cannot follow (it cuts axis-aligned crops of '
                'resized, flipped images): drop it or train with the '
                'online teacher')
        if kind == 'RandomCrop':
            transform['type'] = 'RandomCropWithBox'
        if kind == 'RecordTeacherView':
            continue
        if kind == 'PackSegInputs':
            out.append(dict(type='RecordTeacherView'))
            keys = list(transform.get('meta_keys', PACK_META_KEYS))
            if 'teacher_view' not in keys:
                keys.append('teacher_view')
            transform['meta_keys'] = tuple(keys)
        out.append(transform)
    if not any(t.get('type') == 'RecordTeacherView' for t in out):
        raise ValueError('the training pipeline has no PackSegInputs, '
                         'after which a teacher cache looks for each '
                         "crop's geometry")
    return out


def _inside_replay(out: List[dict], replay: dict) -> List[dict]:
    """The loading transforms, then the others inside
    :class:`ReplayAugmentations`, then the last (``PackSegInputs``)."""
    loads = [
        t for t in out
        if str(t.get('type', '')).split('.')[-1].startswith('Load')
    ]
    pack = out[-1]
    augment = [t for t in out[:-1] if t not in loads]
    return loads + [
        dict(
            type='ReplayAugmentations',
            transforms=augment,
            num_views=replay['num_views'],
            seed=replay.get('seed', 0)), pack
    ]


def replay_settings(cache: Optional[dict]) -> Optional[dict]:
    """``num_views`` and ``seed`` of a replay-mode cache, else None."""
    if not cache or cache.get('mode', 'dense') == 'dense':
        return None
    if cache['mode'] != 'replay':
        raise ValueError(f"teacher_cache.mode={cache['mode']!r}: 'dense' "
                         "or 'replay'")
    if not cache.get('num_views'):
        raise ValueError('a replay teacher cache needs '
                         'teacher_cache.num_views (K views per image)')
    return dict(num_views=cache['num_views'], seed=cache.get('seed', 0))


def patch_dataset_cfg(cfg: dict, cache: Optional[dict] = None) -> dict:
    """Patch every ``pipeline`` of a dataset config (wrappers walked) with
    :func:`teacher_view_pipeline`.

    Args:
        cfg (dict): A dataset config.
        cache (dict, optional): The ``teacher_cache`` settings (their mode).

    Returns:
        dict: The patched copy.
    """
    cfg = copy.deepcopy(cfg)
    if 'pipeline' in cfg:
        cfg['pipeline'] = teacher_view_pipeline(cfg['pipeline'],
                                                replay_settings(cache))
    if isinstance(cfg.get('dataset'), dict):
        cfg['dataset'] = patch_dataset_cfg(cfg['dataset'], cache)
    if isinstance(cfg.get('datasets'), (list, tuple)):
        cfg['datasets'] = [patch_dataset_cfg(d, cache)
                           for d in cfg['datasets']]
    return cfg


@DATASETS.register_module()
class TeacherViewDataset:
    """A training set whose pipeline records each crop's geometry.

    Builds the wrapped dataset with :func:`teacher_view_pipeline` applied to
    its pipeline (and those of datasets it wraps), so that a recipe
    switches to a teacher cache without rewriting its pipeline; with
    ``cache`` it also checks, once built, that the cache was made for this
    file list. Samples, length and metainfo are the wrapped dataset's.

    Args:
        dataset (dict): The training set's config.
        cache (dict, optional): The ``teacher_cache`` settings: ``root``
            (None: no check), ``mode`` ('dense' or 'replay', with
            ``num_views`` and ``seed``). Defaults to None (dense, no
            check).
        lazy_init (bool): Defer the wrapped dataset's ``full_init`` (and
            the check). Defaults to False.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 cache: Optional[dict] = None,
                 lazy_init: bool = False) -> None:
        if not isinstance(dataset, dict):
            raise TypeError(
                'TeacherViewDataset wraps a dataset config (its pipeline '
                f'is changed before it is built), got {type(dataset)}')
        self.dataset = DATASETS.build(patch_dataset_cfg(dataset, cache))
        self.cache = cache
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        """The wrapped dataset's metainfo."""
        return copy.deepcopy(self.dataset.metainfo)

    def full_init(self) -> None:
        """Initialise the wrapped dataset and check the cache's file list."""
        if self._fully_initialized:
            return
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        if self.cache and self.cache.get('root'):
            from gskd_mm.teacher_cache import check_dataset
            check_dataset(self.cache['root'], self.dataset,
                          replay_settings(self.cache))
        self._fully_initialized = True

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Any:
        return self.dataset[idx]

    def get_data_info(self, idx: int) -> dict:
        """The wrapped dataset's data info of a sample."""
        return self.dataset.get_data_info(idx)
