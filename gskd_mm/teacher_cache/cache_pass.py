# Copyright (c) gskd-mm contributors. All rights reserved.
"""The cache pass: run a recipe's teacher once over its training set."""
import json
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.utils import ProgressBar
from mmrazor.registry import MODELS
from mmseg.registry import DATASETS, TRANSFORMS

from .settings import (cache_settings, checkpoint_identity, dataset_files,
                       default_flips, default_scales, online_config,
                       recorder_specs, resize_spec, teacher_config,
                       train_pipeline)
from .storage import (FILES, MANIFEST, DTYPES, ShardWriter, build_manifest,
                      compare_manifests, shard_dir, _read_json, _write_json)

__all__ = ['TeacherRunner', 'run_cache_pass', 'plan_cache']


def _flip(img: np.ndarray, direction: Optional[str]) -> np.ndarray:
    if direction is None:
        return img
    if direction == 'horizontal':
        return img[:, ::-1]
    if direction == 'vertical':
        return img[::-1]
    if direction == 'diagonal':
        return img[::-1, ::-1]
    raise ValueError(f'unknown flip direction {direction!r}')


class TeacherRunner:
    """A recipe's teacher, run as the online algorithm runs it.

    Builds the recipe's online distillation algorithm (student, teacher
    with its weights, recorders), in eval mode, and gives, for an image,
    what the teacher recorders record: logits, auxiliary logits,
    features, whatever the recipe records.

    Args:
        cfg (Config): A recipe (cached or online).
        checkpoint (str, optional): The teacher's weights instead of the
            recipe's ``teacher_ckpt``. Defaults to None.
        device (str): Defaults to 'cpu'.
    """

    def __init__(self,
                 cfg: Config,
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu') -> None:
        online = online_config(cfg)
        if checkpoint is not None:
            online.model.teacher_ckpt = checkpoint
        self.cfg = online
        self.checkpoint = online.model.get('teacher_ckpt')
        self.recorders = recorder_specs(online.model)
        if not self.checkpoint:
            print_log(
                'the teacher has no checkpoint (teacher_ckpt, --checkpoint): '
                'its weights are its initialisation (seed 0)',
                logger='current', level=logging.WARNING)
        scope = online.get('default_scope', 'mmseg')
        init_default_scope(scope)
        # The same initialisation in every process (weights not loaded
        # from a checkpoint stay at it).
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope(scope):
            self.model = MODELS.build(online.model)
        self.model.to(device).eval()
        self.device = device

    def preprocess(self, img: np.ndarray) -> torch.Tensor:
        """Normalise one (h, w, 3) image as the recipe's data preprocessor
        does, without padding it to the crop.

        Returns:
            Tensor: (1, 3, h, w).
        """
        tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(
            2, 0, 1))).contiguous()
        data = self.model.data_preprocessor(
            dict(inputs=[tensor]), training=False)
        return data['inputs'].to(self.device)

    @torch.no_grad()
    def record(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The teacher recorders' records of a batch.

        Args:
            inputs (Tensor): Preprocessed (N, 3, h, w) images.

        Returns:
            dict[str, Tensor]: (N, C, h', w') per recorder.
        """
        distiller = self.model.distiller
        distiller.set_deliveries_override(False)
        with distiller.teacher_recorders, distiller.deliveries:
            self.model._teacher_forward(inputs, None)
        records = {}
        for name in self.recorders:
            data = distiller.teacher_recorders.get_recorder(
                name).get_record_data(0)
            if isinstance(data, (tuple, list)):
                data = data[0]
            records[name] = data.detach().float()
        return records


def _loaders(pipeline: Sequence[dict]) -> List:
    """The pipeline's image loading transforms (built)."""
    out = []
    for t in pipeline:
        kind = str(t.get('type', '')).split('.')[-1]
        if kind.startswith('Load') and 'Annotation' not in kind:
            out.append(TRANSFORMS.build(t))
    if not out:
        raise ValueError('the training pipeline loads no image '
                         '(LoadImageFromFile)')
    return out


def _resize(results: dict, spec: Optional[dict], ratio: float) -> dict:
    """Resize as the pipeline's ``RandomResize`` does at ``ratio``."""
    results = dict(results)
    if spec is None:
        h, w = results['img'].shape[:2]
        results['scale_factor'] = (1.0, 1.0)
        results['img_shape'] = (h, w)
        return results
    scale = (int(spec['scale'][0] * ratio), int(spec['scale'][1] * ratio))
    resize = TRANSFORMS.build(
        dict(type=spec['resize_type'], scale=scale,
             keep_ratio=spec['keep_ratio']))
    return resize(results)


class _DenseViews:
    """The dense views of an image: full image, each scale and flip."""

    def __init__(self, runner: TeacherRunner, cfg: Config,
                 plan: dict) -> None:
        self.runner = runner
        self.loaders = _loaders(train_pipeline(cfg))
        self.plan = plan

    def __call__(self, dataset, index: int):
        results = dict(dataset.get_data_info(index))
        for load in self.loaders:
            results = load(results)
        ori = results['img'].shape[:2]
        for ratio in self.plan['scales']:
            resized = _resize(results, self.plan['resize'], ratio)
            img = resized['img']
            factor = [float(f) for f in resized['scale_factor']]
            for flip in self.plan['flips']:
                records = self.runner.record(
                    self.runner.preprocess(_flip(img, flip)))
                yield dict(scale=ratio, flip=flip, ori_shape=list(ori),
                           img_shape=list(img.shape[:2]),
                           scale_factor=factor), records


class _ReplayViews:
    """The replayed views of an image: the training pipeline's draws
    under each view's seed, padded as a training batch."""

    def __init__(self, runner: TeacherRunner, cfg: Config,
                 replay: dict) -> None:
        from gskd_mm.datasets import ReplayAugmentations
        from gskd_mm.datasets.teacher_view_dataset import patch_dataset_cfg
        self.runner = runner
        self.num_views = replay['num_views']
        dataset_cfg = patch_dataset_cfg(
            cfg.train_dataloader.dataset, dict(mode='replay', **replay))
        scope = cfg.get('default_scope', 'mmseg')
        with DefaultScope.overwrite_default_scope(scope):
            self.dataset = DATASETS.build(dataset_cfg)
        self.replay = next(
            t for t in self.dataset.pipeline.transforms
            if isinstance(t, ReplayAugmentations))

    def __call__(self, dataset, index: int):
        from mmengine.dataset import pseudo_collate
        preprocessor = self.runner.model.data_preprocessor
        for k in range(self.num_views):
            self.replay.view = k
            try:
                sample = self.dataset[index]
            finally:
                self.replay.view = None
            data = preprocessor(pseudo_collate([sample]), True)
            records = self.runner.record(data['inputs'].to(
                self.runner.device))
            view = dict(sample['data_samples'].teacher_view)
            view['input_shape'] = list(data['inputs'].shape[-2:])
            view.pop('img_path', None)
            yield json.loads(json.dumps(view, default=list)), records


def _training_set(online: Config):
    """The online recipe's training set, built in its default scope."""
    scope = online.get('default_scope', 'mmseg')
    init_default_scope(scope)
    with DefaultScope.overwrite_default_scope(scope):
        return DATASETS.build(online.train_dataloader.dataset)


def plan_cache(cfg: Config,
               scales: Optional[Sequence[float]] = None,
               dtype: str = 'fp16',
               dtypes: Optional[Dict[str, str]] = None,
               checkpoint: Optional[str] = None,
               shard_size: int = 16,
               replay: Optional[dict] = None) -> dict:
    """Everything a cache pass is asked to do, as its manifest.

    Args:
        cfg (Config): The recipe.
        replay (dict, optional): ``num_views`` and ``seed`` of a replay
            cache (no scales or flips: the views are the pipeline's own
            draws); None: dense. Defaults to None.
        scales (Sequence[float], optional): Resize ratios; None: 3 over the
            pipeline's ``RandomResize`` range (:func:`default_scales`).
        dtype (str): Storage dtype of every recorder. Defaults to 'fp16'.
        dtypes (dict, optional): Per recorder dtypes overriding ``dtype``.
        checkpoint (str, optional): The teacher's weights instead of the
            recipe's. Defaults to None.
        shard_size (int): Images per shard. Defaults to 16.

    Returns:
        dict: The manifest, plus ``_files`` (the file list) and
        ``_dataset`` (the built training set).
    """
    online = online_config(cfg)
    pipeline = train_pipeline(online)
    dataset = _training_set(online)
    files = dataset_files(dataset)
    recorders = {
        name: dict(spec, dtype=(dtypes or {}).get(name, dtype))
        for name, spec in recorder_specs(online.model).items()
    }
    ckpt = checkpoint if checkpoint is not None else online.model.get(
        'teacher_ckpt')
    if replay:
        extra = dict(replay=dict(replay))
        scales, flips = [], []
    else:
        extra = {}
        scales = list(scales) if scales else default_scales(pipeline)
        flips = default_flips(pipeline)
    manifest = build_manifest(
        mode='replay' if replay else 'dense',
        teacher=teacher_config(online.model.teacher),
        checkpoint=checkpoint_identity(ckpt),
        files=files,
        scales=scales,
        flips=flips,
        recorders=recorders,
        shard_size=shard_size,
        resize=resize_spec(pipeline),
        teacher_auxiliary=bool(online.model.get('teacher_auxiliary')),
        **extra)
    manifest['_files'] = files
    manifest['_dataset'] = dataset
    return manifest


def run_cache_pass(cfg: Config,
                   out: Optional[str] = None,
                   checkpoint: Optional[str] = None,
                   scales: Optional[Sequence[float]] = None,
                   dtype: str = 'fp16',
                   dtypes: Optional[Dict[str, str]] = None,
                   shard_size: int = 16,
                   device: str = 'cpu',
                   mode: Optional[str] = None,
                   num_views: Optional[int] = None,
                   seed: Optional[int] = None) -> str:
    """Run the recipe's teacher once over its training set into a cache.

    Dense mode: every view (scale x flip, :func:`plan_cache`) of every
    full image; replay mode: ``num_views`` pipeline draws per image
    (:class:`~gskd_mm.datasets.ReplayAugmentations`), padded as the data
    preprocessor pads. The teacher runs in eval mode, no grad; its
    records go to :class:`ShardWriter`. Rank ``r`` makes shards
    ``r::world_size``; shards of an earlier (killed) pass are kept.

    Args:
        cfg (Config): The recipe (cached or online).
        out (str, optional): The cache directory; None: the recipe's
            ``model.teacher_cache.root``.
        checkpoint (str, optional): Teacher weights instead of the
            recipe's ``teacher_ckpt``.
        scales (Sequence[float], optional): Resize ratios (see
            :func:`plan_cache`).
        dtype (str): 'fp16', 'fp32' or 'int8' (a scale per map).
            Defaults to 'fp16'.
        dtypes (dict, optional): Per recorder dtypes.
        shard_size (int): Images per shard. Defaults to 16.
        device (str): Defaults to 'cpu'.
        mode (str, optional): 'dense' or 'replay'; None: the recipe's
            ``model.teacher_cache.mode`` (default 'dense').
        num_views (int, optional): K of the replay mode (default: the
            recipe's ``teacher_cache.num_views``).
        seed (int, optional): Seed of the replayed views (default: the
            recipe's, else 0).

    Returns:
        str: The cache directory.

    Raises:
        ValueError: ``out`` holds a cache begun with other settings.
    """
    out = _cache_dir(cfg, out, dtype)
    rank, world_size = get_dist_info()
    replay = _replay_of(cfg, mode, num_views, seed)
    plan = plan_cache(cfg, scales, dtype, dtypes, checkpoint, shard_size,
                      replay)
    files, dataset = plan.pop('_files'), plan.pop('_dataset')
    plan = json.loads(json.dumps(plan, default=str))  # as stored
    _start_cache(out, plan, files, rank)
    todo = _shards_to_make(out, plan, rank, world_size)
    views = _view_maker(cfg, checkpoint, device, plan, replay)
    _fill_shards(out, plan, files, dataset, views, todo, rank, world_size)
    barrier()
    return out


def _cache_dir(cfg: Config, out: Optional[str], dtype: str) -> str:
    """The pass's cache directory, with its storage dtype checked."""
    if dtype not in DTYPES:
        raise ValueError(f'dtype {dtype!r}: one of {sorted(DTYPES)}')
    out = out or cache_settings(cfg).get('root')
    if not out:
        raise ValueError('no cache directory: pass --out, or set '
                         'model.teacher_cache.root in the recipe')
    return out


def _shards_to_make(out: str, plan: dict, rank: int,
                    world_size: int) -> List[int]:
    """This rank's shards (``rank::world_size``) not yet in ``out``."""
    return [
        s for s in range(plan['num_shards'])[rank::world_size]
        if not osp.isdir(shard_dir(out, s))
    ]


def _view_maker(cfg: Config, checkpoint: Optional[str], device: str,
                plan: dict, replay: Optional[dict]):
    """The teacher, run over each image's dense or replayed views."""
    runner = TeacherRunner(cfg, checkpoint, device)
    if replay:
        return _ReplayViews(runner, online_config(cfg), replay)
    return _DenseViews(runner, online_config(cfg), plan)


def _replay_of(cfg: Config, mode: Optional[str], num_views: Optional[int],
               seed: Optional[int]) -> Optional[dict]:
    """The replay settings of a pass (None: dense), checked."""
    settings = cache_settings(cfg)
    mode = mode or settings.get('mode', 'dense')
    replay = None
    if mode == 'replay':
        replay = dict(
            num_views=num_views or settings.get('num_views'),
            seed=seed if seed is not None else settings.get('seed', 0))
        if not replay['num_views']:
            raise ValueError('replay mode needs the number of views per '
                             'image: --num-views K (or '
                             'teacher_cache.num_views)')
    elif mode != 'dense':
        raise ValueError(f"mode {mode!r}: 'dense' or 'replay'")
    return replay


def _check_resumable(out: str, plan: dict) -> None:
    """Raise if ``out`` holds a cache begun with settings other than
    ``plan``'s."""
    manifest_path = osp.join(out, MANIFEST)
    if not osp.isfile(manifest_path):
        return
    diffs = compare_manifests(
        _read_json(manifest_path), plan,
        ('format', 'mode', 'teacher', 'checkpoint', 'files', 'recorders',
         'scales', 'flips', 'shard_size', 'resize', 'replay'))
    found = _read_json(manifest_path)['recorders']
    diffs += [
        f'dtype of {n}: the cache has {found[n]["dtype"]}, this pass '
        f'asks {r["dtype"]}' for n, r in plan['recorders'].items()
        if n in found and found[n]['dtype'] != r['dtype']
    ]
    if diffs:
        raise ValueError(
            f'{out} holds a cache begun with other settings:\n  ' +
            '\n  '.join(diffs) +
            '\nmake this one in another directory (--out), or delete '
            f'{out} to start over')


def _start_cache(out: str, plan: dict, files: List[str], rank: int) -> None:
    """Check ``out`` against the plan, then (rank 0) write the file list
    and the manifest."""
    _check_resumable(out, plan)
    barrier()
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        _write_json(osp.join(out, FILES), files)
        _write_json(osp.join(out, MANIFEST), plan)
    barrier()


def _fill_shards(out: str, plan: dict, files: List[str], dataset, views,
                 todo: List[int], rank: int, world_size: int) -> None:
    """Write the shards ``todo``: each image's views and their records."""
    shard_size = plan['shard_size']
    dtypes_of = {n: r['dtype'] for n, r in plan['recorders'].items()}
    n_images = sum(
        min(shard_size, len(files) - s * shard_size) for s in todo)
    print_log(
        f'teacher cache {out}: {len(files)} images x '
        f'{len(plan["scales"])} scales {plan["scales"]} x '
        f'{len(plan["flips"])} flips {plan["flips"]}; this process '
        f'(rank {rank} of {world_size}) makes {len(todo)} shards '
        f'({n_images} images)', logger='current')
    bar = ProgressBar(n_images) if rank == 0 and n_images else None
    for s in todo:
        writer = ShardWriter(out, s, dtypes_of)
        for index in range(s * shard_size,
                           min((s + 1) * shard_size, len(files))):
            for view, records in views(dataset, index):
                writer.add(index, view,
                           {n: r[0].cpu().numpy()
                            for n, r in records.items()})
            if bar is not None:
                bar.update()
        writer.close()
