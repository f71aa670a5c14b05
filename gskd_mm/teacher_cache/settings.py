# Copyright (c) gskd-mm contributors. All rights reserved.
"""What a recipe asks of its teacher cache, read from its config."""
import copy
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config, ConfigDict

from ..models.algorithms.eval_teacher_distill import teacher_model_config
from .storage import (TeacherCache, file_list_digest, sha256_file)

__all__ = [
    'CACHED_TYPES', 'ONLINE_TYPES', 'cache_settings', 'online_config',
    'default_scales', 'default_flips', 'resize_spec', 'recorder_specs',
    'teacher_config', 'checkpoint_identity', 'dataset_files',
    'check_dataset', 'train_pipeline'
]

#: The cached algorithm of each online one.
CACHED_TYPES = {
    'EvalTeacherDistill': 'CachedTeacherDistill',
    'AdversarialEvalTeacherDistill': 'CachedAdversarialTeacherDistill',
}
#: The online algorithm of each cached one.
ONLINE_TYPES = {v: k for k, v in CACHED_TYPES.items()}
#: Recorders whose records a cache can hold: (N, C, h, w) tensors of
#: modules' outputs or single inputs.
RECORDER_TYPES = ('ModuleOutputs', 'ModuleInputs')


def _bare(kind: str) -> str:
    return str(kind).split('.')[-1]


def cache_settings(cfg: Config) -> ConfigDict:
    """A cached recipe's ``model.teacher_cache``.

    Args:
        cfg (Config): A recipe.

    Returns:
        ConfigDict: ``root`` and the other settings, empty if none.
    """
    return ConfigDict(cfg.model.get('teacher_cache') or {})


def train_dataset_cfg(cfg: Config) -> ConfigDict:
    """The training set's config, a :class:`TeacherViewDataset` unwrapped."""
    dataset = cfg.train_dataloader.dataset
    if _bare(dataset.get('type')) == 'TeacherViewDataset':
        dataset = dataset.dataset
    return dataset


def train_pipeline(cfg: Config) -> List[dict]:
    """The transforms of the recipe's training set (wrappers walked)."""
    node = train_dataset_cfg(cfg)
    while 'pipeline' not in node and isinstance(node.get('dataset'), dict):
        node = node.dataset
    if 'pipeline' not in node and node.get('datasets'):
        node = node.datasets[0]
    return list(node.get('pipeline', []))


def online_config(cfg: Config) -> Config:
    """The online recipe of a cached one (itself if online).

    Args:
        cfg (Config): A recipe.

    Returns:
        Config: A copy whose model runs the teacher, without the
        training set's :class:`TeacherViewDataset`.
    """
    cfg = copy.deepcopy(cfg)
    kind = _bare(cfg.model.get('type'))
    if kind in ONLINE_TYPES:
        cfg.model.type = ONLINE_TYPES[kind]
    elif kind not in CACHED_TYPES:
        raise ValueError(
            f'model.type {cfg.model.get("type")!r} is not a distillation '
            f'algorithm a teacher cache knows ({sorted(CACHED_TYPES)} '
            f'and their cached {sorted(ONLINE_TYPES)})')
    cfg.model.pop('teacher_cache', None)
    cfg.train_dataloader.dataset = train_dataset_cfg(cfg)
    return cfg


def resize_spec(pipeline: Sequence[dict]) -> Optional[dict]:
    """The training resize: ``scale``, ``ratio_range``, ``keep_ratio``,
    ``resize_type`` of its ``RandomResize`` (or fixed ``Resize``), None
    without one."""
    for t in pipeline:
        kind = _bare(t.get('type'))
        if kind == 'RandomResize':
            if isinstance(t.get('scale'), list) or not t.get('ratio_range'):
                raise ValueError(
                    'RandomResize without ratio_range (a list of scales) '
                    'is not supported by the teacher cache yet')
            return dict(
                scale=tuple(t['scale']),
                ratio_range=tuple(t['ratio_range']),
                keep_ratio=t.get('keep_ratio', False),
                resize_type=t.get('resize_type', 'Resize'))
        if kind == 'Resize' and t.get('scale'):
            return dict(
                scale=tuple(t['scale']),
                ratio_range=(1.0, 1.0),
                keep_ratio=t.get('keep_ratio', False),
                resize_type='Resize')
    return None


def default_scales(pipeline: Sequence[dict], num: int = 3) -> List[float]:
    """``num`` resize ratios spread geometrically over the pipeline's
    ``RandomResize`` range (its ends included), ``[1.0]`` without one.

    Args:
        pipeline (Sequence[dict]): The training transforms.
        num (int): Scales. Defaults to 3.

    Returns:
        list[float]: The ratios, e.g. ``[0.5, 1.0, 2.0]`` for 0.5-2.0.
    """
    spec = resize_spec(pipeline)
    if spec is None:
        return [1.0]
    low, high = spec['ratio_range']
    if low == high or num == 1:
        return [float(math.sqrt(low * high))]
    step = (math.log(high) - math.log(low)) / (num - 1)
    return [round(math.exp(math.log(low) + i * step), 6) for i in range(num)]


def default_flips(pipeline: Sequence[dict]) -> List[Optional[str]]:
    """None (not flipped) and every direction the pipeline flips in."""
    flips: List[Optional[str]] = [None]
    for t in pipeline:
        if _bare(t.get('type')) == 'RandomFlip' and t.get('prob'):
            direction = t.get('direction', 'horizontal')
            for d in [direction] if isinstance(direction, str) else direction:
                if d not in flips:
                    flips.append(d)
    return flips


def recorder_specs(model: dict) -> Dict[str, dict]:
    """The teacher recorders a cache holds: name -> ``type``, ``source``.

    Those a distillation loss reads (``loss_forward_mappings``), and the
    teacher logits an adversarial algorithm's discriminator scores; other
    recorders of the distiller (e.g. the features a DIST recipe records
    but no loss reads) are not cached, and stay empty in cached training.

    Args:
        model (dict): The recipe's ``model`` (``distiller``, ``type``).

    Returns:
        dict[str, dict]: ``type`` (registry name) and ``source``.

    Raises:
        ValueError: A recorder whose records a cache cannot hold.
    """
    distiller = model['distiller']
    used = {
        record['recorder']
        for mapping in (distiller.get('loss_forward_mappings') or
                        {}).values() for record in mapping.values()
        if not record.get('from_student', True)
    }
    if 'Adversarial' in str(model.get('type', '')):
        used.add(model.get('teacher_logits', 'logits'))
    recorders = distiller.get('teacher_recorders') or {}
    specs = {}
    for name, rec in recorders.items():
        if name not in used:
            continue
        kind = _bare(rec['type'])
        if kind not in RECORDER_TYPES:
            raise ValueError(
                f'teacher recorder {name!r} is a {kind}: a teacher cache '
                f'holds {RECORDER_TYPES} records only')
        specs[name] = dict(type=kind, source=rec['source'])
    return specs


def teacher_config(teacher: dict) -> dict:
    """The teacher's model config, as the online algorithm builds it."""
    teacher = dict(teacher)
    if 'cfg_path' in teacher and not teacher.get('type'):
        teacher = teacher_model_config(teacher)
    return ConfigDict(teacher).to_dict()


def checkpoint_identity(path: Optional[str]) -> Optional[dict]:
    """``path`` and ``sha256`` of a teacher checkpoint.

    A URL's file is hashed where MMEngine downloads it (torch hub's
    ``checkpoints``), if it is there; else its ``sha256`` is None and
    caches compare by the URL.

    Args:
        path (str, optional): The checkpoint (file or URL).

    Returns:
        dict | None: None without a checkpoint.
    """
    if not path:
        return None
    local = path
    if '://' in path:
        import torch.hub
        local = osp.join(torch.hub.get_dir(), 'checkpoints',
                         osp.basename(path.split('?')[0]))
    digest = sha256_file(local) if osp.isfile(local) else None
    return dict(path=path, sha256=digest)


def dataset_files(dataset) -> List[str]:
    """The ordered image files of a dataset, relative to their common
    directory (so that a moved data root matches).

    Args:
        dataset: A built dataset (``get_data_info`` with ``img_path``).

    Returns:
        list[str]: One path per sample, '/'-separated.
    """
    paths = [
        str(dataset.get_data_info(i)['img_path'])
        for i in range(len(dataset))
    ]
    if not paths:
        raise ValueError('the training set is empty')
    base = osp.commonpath([osp.dirname(osp.abspath(p)) for p in paths])
    return [
        osp.relpath(osp.abspath(p), base).replace(osp.sep, '/')
        for p in paths
    ]


def check_dataset(root: str, dataset, replay: Optional[dict] = None) -> None:
    """Refuse a cache made for another file list than ``dataset``'s (or
    other replayed views).

    Args:
        root (str): The cache directory.
        dataset: The built training set.
        replay (dict, optional): ``num_views`` and ``seed`` of a replay
            cache; None: a dense one.

    Raises:
        StaleTeacherCacheError: Naming the difference.
    """
    files = dataset_files(dataset)
    expected = dict(
        mode='replay' if replay else 'dense',
        files=dict(digest=file_list_digest(files), count=len(files)))
    if replay:
        expected['replay'] = dict(replay)
    TeacherCache(root).check(expected, 'this training set')
