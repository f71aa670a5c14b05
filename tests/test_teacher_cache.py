# Copyright (c) gskd-mm contributors. All rights reserved.
"""The teacher cache: storage, refusal of stale caches, exact crop mapping.

The mapping is checked where it must be exact: with a pointwise teacher
(1x1 convolutions) the teacher's output on a crop is the crop of its
output on the full image, for every flip and at the cached scales, so the
cached-and-sampled targets must equal the online teacher's.
"""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import BaseModule
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS as RAZOR_MODELS
from mmseg.registry import DATASETS
from mmseg.registry import MODELS as SEG_MODELS

from gskd_mm.teacher_cache.fidelity import (cache_fidelity, save_fidelity,
                                             use_teacher_cache)
from gskd_mm.teacher_cache import (MissingTeacherCacheError, ShardWriter,
                                   StaleTeacherCacheError, TeacherCache,
                                   build_manifest, online_config)
from gskd_mm.teacher_cache.cache_pass import TeacherRunner, run_cache_pass
from gskd_mm.teacher_cache.storage import FILES, MANIFEST, _write_json
from gskd_mm.testing import make_cityscapes
from gskd_mm.utils import register_all_modules

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PIECES = osp.join(REPO, 'configs', 'gskd', '_base_', 'distill_pieces.py')
NUM_CLASSES = 19


@SEG_MODELS.register_module(force=True)
class PointwiseBackbone(BaseModule):
    """1x1 convolutions: its output at a pixel depends on that pixel only."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, channels, 1), nn.ReLU(), nn.Conv2d(channels,
                                                            channels, 1))

    def forward(self, x):
        return [self.conv(x)]


def segmentor(seed: int) -> dict:
    """A pointwise MMSeg segmentor (FCN head without convolutions)."""
    return dict(
        type='EncoderDecoder',
        _scope_='mmseg',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255),
        backbone=dict(type='PointwiseBackbone', channels=8),
        decode_head=dict(
            type='FCNHead',
            in_channels=8,
            channels=8,
            num_convs=0,
            concat_input=False,
            kernel_size=1,
            dropout_ratio=0.1,
            num_classes=NUM_CLASSES,
            norm_cfg=dict(type='BN'),
            align_corners=False,
            init_cfg=dict(type='Normal', std=1.0, override=dict(
                name='conv_seg')),
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def pointwise_recipe(data_root: str, ratio_range=(1.0, 2.0),
                     crop=(24, 40), pad=None,
                     photometric: bool = False) -> Config:
    """A DIST recipe of two pointwise segmentors on generated Cityscapes
    (no photometric distortion: a dense cache holds the teacher's output
    on the original colours)."""
    pieces = Config.fromfile(PIECES)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='RandomResize', scale=(64, 32), ratio_range=ratio_range,
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop, cat_max_ratio=1.0),
        dict(type='RandomFlip', prob=0.5,
             direction=['horizontal', 'vertical']),
        dict(type='PackSegInputs'),
    ]
    if photometric:
        pipeline.insert(-1, dict(type='PhotoMetricDistortion'))
    student = segmentor(0)
    student['data_preprocessor']['size'] = pad or crop
    return Config(
        dict(
            default_scope='mmseg',
            model=dict(
                _scope_='mmrazor',
                type='EvalTeacherDistill',
                architecture=student,
                teacher=segmentor(1),
                teacher_ckpt=None,
                distiller=dict(
                    type='ConfigurableDistiller',
                    student_recorders=pieces.student_recorders,
                    teacher_recorders=pieces.teacher_recorders,
                    distill_losses=dict(
                        loss_dist=dict(
                            type='PixelWiseDISTLoss', tau=1.0,
                            loss_weight=1.0, resize_teacher=True),
                        loss_feat=dict(
                            type='ChannelWiseDivergence', tau=4.0,
                            loss_weight=1.0)),
                    loss_forward_mappings=dict(
                        loss_dist=pieces.logits_forward_mapping,
                        loss_feat=dict(
                            preds_S=dict(from_student=True, recorder='feat',
                                         data_idx=0),
                            preds_T=dict(from_student=False,
                                         recorder='feat', data_idx=0))))),
            train_dataloader=dict(
                batch_size=2,
                num_workers=0,
                sampler=dict(type='InfiniteSampler', shuffle=True),
                dataset=dict(
                    type='CityscapesDataset',
                    data_root=data_root,
                    data_prefix=dict(
                        img_path='leftImg8bit/train',
                        seg_map_path='gtFine/train'),
                    pipeline=pipeline))))


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    register_all_modules(init_default_scope=False)
    return make_cityscapes(
        str(tmp_path_factory.mktemp('cityscapes')), num_train=4, num_val=1,
        size=(32, 64))


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    """Weights of the pointwise teacher, saved as a checkpoint."""
    init_default_scope('mmseg')
    torch.manual_seed(1)
    teacher = SEG_MODELS.build(segmentor(1))
    teacher.init_weights()
    path = str(tmp_path_factory.mktemp('ckpt') / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    return path


def write_cache(root, recorders=('logits', ), dtype='fp16', n_images=3,
                shard_size=2, files=None):
    files = files or [f'img_{i}.png' for i in range(n_images)]
    manifest = build_manifest(
        mode='dense',
        teacher=dict(type='EncoderDecoder'),
        checkpoint=dict(path='t.pth', sha256='a' * 64),
        files=files,
        scales=[1.0],
        flips=[None],
        recorders={
            r: dict(type='ModuleOutputs', source=f'decode_head.{r}',
                    dtype=dtype)
            for r in recorders
        },
        shard_size=shard_size)
    import os
    os.makedirs(root, exist_ok=True)
    _write_json(osp.join(root, MANIFEST), manifest)
    _write_json(osp.join(root, FILES), files)
    rng = np.random.default_rng(0)
    maps = {}
    for s in range(manifest['num_shards']):
        writer = ShardWriter(root, s, {r: dtype for r in recorders})
        for i in range(s * shard_size, min((s + 1) * shard_size,
                                           len(files))):
            maps[i] = {
                r: rng.normal(size=(3, 4 + i, 5)).astype(np.float32)
                for r in recorders
            }
            writer.add(i, dict(scale=1.0, flip=None, img_shape=[8, 10],
                               scale_factor=[1.0, 1.0]), maps[i])
        writer.close()
    return manifest, maps


# ---------------------------------------------------------------- storage
@pytest.mark.parametrize('dtype, atol', [('fp32', 0), ('fp16', 2e-3),
                                         ('int8', None)])
def test_write_and_read_round_trip(tmp_path, dtype, atol):
    root = str(tmp_path / 'cache')
    _, maps = write_cache(root, ('logits', 'feat'), dtype)
    cache = TeacherCache(root)
    assert len(cache) == 3 and sorted(cache.views) == [0, 1, 2]
    for i, by_recorder in maps.items():
        (view, ) = cache.views[i]
        for name, expected in by_recorder.items():
            got = cache.read(view, name)
            assert got.shape == expected.shape and got.dtype == np.float32
            # int8: half a quantisation step of the map's own scale.
            tol = atol if atol is not None else (
                np.abs(expected).max() / 127 / 2 + 1e-7)
            np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
            rows = np.array([1, 3])
            np.testing.assert_array_equal(
                cache.read(view, name, rows), got[:, rows])
    # Memory-mapped, not loaded.
    assert all(isinstance(m, np.memmap) for m in cache._maps.values())


def test_missing_and_unfinished_caches_give_the_command(tmp_path):
    root = str(tmp_path / 'none')
    with pytest.raises(MissingTeacherCacheError,
                       match='tools/cache_teacher.py CONFIG --out'):
        TeacherCache(root)
    root = str(tmp_path / 'cache')
    write_cache(root, n_images=3, shard_size=2)
    import shutil
    shutil.move(osp.join(root, 'shard_00001'),
                osp.join(root, 'shard_00001.partial'))
    with pytest.raises(MissingTeacherCacheError,
                       match=r'1 of 2 shards missing.*\(it resumes\)'):
        TeacherCache(root)


def test_stale_cache_refused_naming_the_difference(tmp_path):
    root = str(tmp_path / 'cache')
    manifest, _ = write_cache(root)
    cache = TeacherCache(root)
    cache.check(manifest)  # the same: accepted
    other_ckpt = dict(manifest, checkpoint=dict(path='t.pth',
                                                sha256='b' * 64))
    with pytest.raises(StaleTeacherCacheError,
                       match='teacher checkpoint: the cache has a+'):
        cache.check(other_ckpt)
    other_files = build_manifest(
        'dense', dict(type='EncoderDecoder'), manifest['checkpoint'],
        ['img_0.png', 'img_2.png', 'img_1.png'], [1.0], [None],
        manifest['recorders'], 2)
    with pytest.raises(StaleTeacherCacheError,
                       match='training file list'):
        cache.check(other_files)
    other_recorders = dict(
        manifest,
        recorders=dict(manifest['recorders'],
                       feat=dict(type='ModuleInputs',
                                 source='decode_head.conv_seg')))
    with pytest.raises(StaleTeacherCacheError,
                       match='teacher recorder set'):
        cache.check(other_recorders)
    with pytest.raises(StaleTeacherCacheError,
                       match='teacher config'):
        cache.check(dict(manifest, teacher=dict(digest='0')))
    with pytest.raises(StaleTeacherCacheError, match='another dataset'):
        cache.index_of('/data/other/img_9.png')
    assert cache.index_of('/data/x/img_2.png') == 2


# ------------------------------------------------------------ the mapping
def draw_batch(dataset, indices):
    return pseudo_collate([dataset[i] for i in indices])


def cached_and_online(cfg, root, teacher_ckpt, batches=6, draw_seed=0,
                      **settings):
    """Pairs of (cached, online, valid) teacher records of drawn batches."""
    init_default_scope('mmseg')
    cached_cfg = use_teacher_cache(cfg, root, **settings)
    cached_cfg.model.teacher_ckpt = teacher_ckpt
    model = RAZOR_MODELS.build(cached_cfg.model)
    assert not list(model.teacher.parameters())  # no teacher weights
    online = TeacherRunner(cfg, teacher_ckpt)
    dataset = DATASETS.build(cached_cfg.train_dataloader.dataset)
    np.random.seed(draw_seed)
    out, flips = [], set()
    for b in range(batches):
        data = model.data_preprocessor(
            draw_batch(dataset, [b % len(dataset), (b + 1) % len(dataset)]),
            True)
        inputs, samples = data['inputs'], data['data_samples']
        manager = model.distiller.teacher_recorders
        with manager:
            model._teacher_forward(inputs, samples)
            cached = {
                n: manager.get_recorder(n).get_record_data(0)
                for n in model._recorder_types
            }
        records = online.record(inputs)
        for s in samples:
            flips.add(s.teacher_view['flip_direction'])
        out.append((cached, records, samples))
    return out, flips


@pytest.mark.parametrize('flips', ['cached', 'from the unflipped view'])
@pytest.mark.parametrize('ratio', [1.0, 2.0])
def test_cached_targets_equal_a_pointwise_teachers_exactly(
        tmp_path, data_root, teacher_ckpt, ratio, flips):
    cfg = pointwise_recipe(data_root)
    root = str(tmp_path / 'cache')
    # fp32 storage: fp16 would round the maps (by up to 2**-11 relative).
    run_cache_pass(cfg, root, checkpoint=teacher_ckpt, scales=[1.0, 2.0],
                   dtype='fp32')
    if flips != 'cached':  # the mapping flips the unflipped view
        cache = TeacherCache(root)
        for views in cache.views.values():
            assert {v['flip'] for v in views} == {
                None, 'horizontal', 'vertical'}
        for s in range(cache.manifest['num_shards']):
            path = osp.join(root, f'shard_{s:05d}', 'index.json')
            import json
            with open(path) as f:
                index = json.load(f)
            for image in index['images']:
                index['images'][image] = [
                    v for v in index['images'][image] if v['flip'] is None
                ]
            _write_json(path, index)
    # Training draws exactly the cached ratio.
    cfg.train_dataloader.dataset.pipeline[2].ratio_range = (ratio, ratio)
    pairs, seen = cached_and_online(cfg, root, teacher_ckpt,
                                    off_scale='error')
    assert seen >= {None, 'horizontal', 'vertical'}, seen
    for cached, online, _ in pairs:
        assert set(cached) == {'feat', 'logits'}
        feat = cached['feat'][0]
        assert isinstance(cached['feat'], tuple)
        assert feat.shape == online['feat'].shape
        torch.testing.assert_close(feat, online['feat'], rtol=0, atol=1e-6)
        torch.testing.assert_close(
            cached['logits'], online['logits'], rtol=0, atol=1e-6)


def test_padding_is_zero_and_off_scale_views_are_refused_or_warned(
        tmp_path, data_root, teacher_ckpt):
    # Crops of 32 x 40 padded to 40 x 48 at ratio 1: 8 rows and 8
    # columns of padding.
    cfg = pointwise_recipe(data_root, ratio_range=(1.0, 1.0), crop=(32, 40),
                           pad=(40, 48))
    root = str(tmp_path / 'cache')
    run_cache_pass(cfg, root, checkpoint=teacher_ckpt, dtype='fp32')
    pairs, _ = cached_and_online(cfg, root, teacher_ckpt, batches=2)
    for cached, online, samples in pairs:
        logits = cached['logits']
        assert logits.shape[-2:] == (40, 48)
        assert torch.all(logits[..., 32:, :] == 0)
        assert torch.all(logits[..., :, 40:] == 0)
        torch.testing.assert_close(
            logits[..., :32, :40], online['logits'][..., :32, :40], rtol=0,
            atol=1e-6)
    cfg.train_dataloader.dataset.pipeline[2].ratio_range = (1.3, 1.3)
    with pytest.raises(ValueError, match=r'not in the teacher cache.*'
                       r'refused \(teacher_cache.off_scale=error\)'):
        cached_and_online(cfg, root, teacher_ckpt, batches=1,
                          off_scale='error')
    with pytest.warns(UserWarning, match='nearest cached scale') as record:
        cached_and_online(cfg, root, teacher_ckpt, batches=2)
    assert len([w for w in record if 'nearest' in str(w.message)]) == 1
    # With fidelity measured on the cache, the warning quotes it.
    save_fidelity(root, cache_fidelity(cfg, root, 2, teacher_ckpt))
    with pytest.warns(UserWarning, match=r'measured fidelity of these '
                      r'targets: .*logits argmax agreement % [\d.]+, .* '
                      r'over 2 training samples'):
        cached_and_online(cfg, root, teacher_ckpt, batches=1)


def test_a_cache_of_another_teacher_or_checkpoint_is_refused(
        tmp_path, data_root, teacher_ckpt):
    cfg = pointwise_recipe(data_root)
    root = str(tmp_path / 'cache')
    run_cache_pass(cfg, root, checkpoint=teacher_ckpt, scales=[1.0])
    init_default_scope('mmseg')
    other = str(tmp_path / 'other.pth')
    state = torch.load(teacher_ckpt)
    state['state_dict']['backbone.conv.0.bias'] += 1
    torch.save(state, other)
    cached = use_teacher_cache(cfg, root)
    cached.model.teacher_ckpt = other
    with pytest.raises(StaleTeacherCacheError,
                       match='teacher checkpoint: the cache has'):
        RAZOR_MODELS.build(cached.model)
    cached.model.teacher_ckpt = teacher_ckpt
    cached.model.teacher.backbone.channels = 16
    with pytest.raises(StaleTeacherCacheError, match='teacher config'):
        RAZOR_MODELS.build(cached.model)
    # Another training set: refused when the dataset is built.
    other_root = make_cityscapes(str(tmp_path / 'other'), num_train=3,
                                 num_val=1, size=(32, 64))
    cached = use_teacher_cache(cfg, root)
    cached.train_dataloader.dataset.dataset.data_root = other_root
    with pytest.raises(StaleTeacherCacheError, match='training file list'):
        DATASETS.build(cached.train_dataloader.dataset)
    # The online recipe of a cached one is the recipe.
    assert online_config(use_teacher_cache(cfg, root)).model.type == \
        'EvalTeacherDistill'


# ---------------------------------------------------------------- replay
def test_replayed_views_give_the_online_teachers_targets_exactly(
        tmp_path, data_root, teacher_ckpt):
    """Any scale of the range, photometric distortion, padding: the
    replayed view is the cached one, and so are its targets (bit for bit on
    one thread: with more, the pass's and the step's batches may sum in
    another order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_replayed_views(tmp_path, data_root, teacher_ckpt)
    finally:
        torch.set_num_threads(threads)


def _check_replayed_views(tmp_path, data_root, teacher_ckpt):
    cfg = pointwise_recipe(data_root, ratio_range=(0.5, 2.0), crop=(24, 40),
                           pad=(32, 48), photometric=True)
    root = str(tmp_path / 'cache')
    run_cache_pass(cfg, root, checkpoint=teacher_ckpt, dtype='fp32',
                   mode='replay', num_views=3, seed=7)
    cache = TeacherCache(root)
    assert cache.manifest['replay'] == dict(num_views=3, seed=7)
    assert all(len(v) == 3 for v in cache.views.values())
    settings = dict(mode='replay', num_views=3, seed=7)
    pairs, _ = cached_and_online(cfg, root, teacher_ckpt, batches=6,
                                 **settings)
    seen = set()
    for cached, online, samples in pairs:
        seen.update(s.teacher_view['replay_view'] for s in samples)
        torch.testing.assert_close(
            cached['logits'], online['logits'], rtol=0, atol=0)
        torch.testing.assert_close(
            cached['feat'][0], online['feat'], rtol=0, atol=0)
    assert seen == {0, 1, 2}
    # Another seed replays other views: refused at the dataset, and a
    # changed pipeline by the image digest.
    with pytest.raises(StaleTeacherCacheError, match='replayed views'):
        cached_and_online(cfg, root, teacher_ckpt, batches=1,
                          **dict(settings, seed=8))
    cfg.train_dataloader.dataset.pipeline[3].crop_size = (20, 40)
    with pytest.raises(StaleTeacherCacheError, match='image digest'):
        cached_and_online(cfg, root, teacher_ckpt, batches=1, **settings)
