# Copyright (c) gskd-mm contributors. All rights reserved.
"""The demo's cached methods (``<method>_cached``): on the demo's own
flip-only pipeline the dense cache gives the online teacher's targets; a
cached run trains without loading the teacher's weights."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner.checkpoint import CheckpointLoader

from projects.gskd_demo.gskd_demo.data import prepare_data
from projects.gskd_demo.gskd_demo.methods import MethodKey, method_spec
from projects.gskd_demo.gskd_demo.teacher import SHIPPED_TEACHER
from projects.gskd_demo.gskd_demo.teacher_cache import PASS_FILE, cache_root
from projects.gskd_demo.gskd_demo.training import (RunContext,
                                                   prepare_caches,
                                                   run_config, setup_process,
                                                   student_init_file,
                                                   student_run,
                                                   write_student_init)

NUM_TRAIN, NUM_VAL, BATCH = 12, 4, 4
CACHED = [MethodKey.parse(k) for k in ('dist_cached', 'cwd_cached',
                                       'dist_gskd-row-t1_cached')]


@pytest.fixture(scope='module')
def ctx(tmp_path_factory):
    """A tiny demo setting (its own data and cache directory), the shipped
    teacher, and the caches of every cached method of the study."""
    root = tmp_path_factory.mktemp('cached')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('GSKD_MM_CACHE', str(root / 'cache'))
        setup_process()
        data_root, generate_cfg = prepare_data(NUM_TRAIN, NUM_VAL)
        ctx = RunContext(2, BATCH, str(root / 'out'), data_root, generate_cfg,
                         SHIPPED_TEACHER, 'WARNING')
        passes = prepare_caches(ctx, CACHED)
        again = prepare_caches(ctx, CACHED)
        roots = {
            key: cache_root(SHIPPED_TEACHER, generate_cfg,
                            method_spec(key).config)
            for key in CACHED
        }
        yield ctx, passes, again, roots


def _records(model, names):
    manager = model.distiller.teacher_recorders
    return {n: manager.get_recorder(n).data_buffer[0] for n in names}


def test_caches_are_made_once_and_keyed_by_teacher_data_and_recipe(ctx):
    ctx, passes, again, roots = ctx
    assert set(passes) == set(CACHED)
    for key in CACHED:
        assert passes[key]['made'] and not again[key]['made']
        assert passes[key]['cpu_s'] > 0
        assert passes[key]['images'] == NUM_TRAIN
        assert again[key]['cpu_s'] == passes[key]['cpu_s']
        assert osp.isfile(osp.join(roots[key], PASS_FILE))
    # One directory per recipe, under one teacher-and-data key.
    assert len(set(roots.values())) == len(CACHED)
    assert len({osp.dirname(r) for r in roots.values()}) == 1


@pytest.mark.parametrize('key', CACHED, ids=str)
def test_cached_targets_equal_the_online_teachers(ctx, key):
    """On a training batch of the demo's pipeline (flips), every teacher
    record the recipe's losses read (logits; the neck's features for GSKD)
    is the online teacher's, from the cache."""
    ctx = ctx[0]
    cached_cfg = run_config(ctx, key, 0)
    online_cfg = run_config(ctx, key.online, 0)
    assert cached_cfg.model.type.startswith('Cached')
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import DATASETS
        cached = MODELS.build(copy.deepcopy(cached_cfg.model))
        online = MODELS.build(copy.deepcopy(online_cfg.model))
        dataset = DATASETS.build(cached_cfg.train_dataloader.dataset)
    online.eval(), cached.eval()
    torch.manual_seed(0)
    np.random.seed(0)
    flips = set()
    for start in range(0, NUM_TRAIN, BATCH):
        samples = [dataset[i] for i in range(start, start + BATCH)]
        data = online.data_preprocessor(pseudo_collate(samples), True)
        inputs, data_samples = data['inputs'], data['data_samples']
        flips |= {(s.teacher_view.get('flip'),
                   s.teacher_view.get('flip_direction'))
                  for s in data_samples}
        with cached.distiller.teacher_recorders:
            cached._teacher_forward(inputs, data_samples)
            from_cache = _records(cached, cached._recorder_types)
        with torch.no_grad(), online.distiller.teacher_recorders:
            online._teacher_forward(inputs, data_samples)
            from_teacher = _records(online, from_cache)
        assert from_cache, 'the cache holds no record'
        for name, record in from_teacher.items():
            got = from_cache[name]
            got = got[0] if isinstance(got, tuple) else got
            want = record[0] if isinstance(record, tuple) else record
            assert got.shape == want.shape, name
            torch.testing.assert_close(
                got.float(), want.float(), rtol=1e-4, atol=1e-4, msg=name)
    if key.variant is not None:  # GSKD reads the neck's features
        assert any('logits' not in n for n in from_cache), list(from_cache)
    # The batches crossed more than the unflipped view.
    assert len(flips) > 1, flips


def test_a_cached_run_trains_without_the_teachers_weights(
        ctx, monkeypatch):
    """A cached run trains (its loss falls to a result) and never loads
    the teacher's checkpoint; the online run of the same method does."""
    ctx = ctx[0]
    loaded = []
    load = CheckpointLoader.load_checkpoint.__func__

    def spy(cls, filename, *args, **kwargs):
        loaded.append(filename)
        return load(cls, filename, *args, **kwargs)

    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint',
                        classmethod(spy))
    init = write_student_init(
        run_config(ctx, MethodKey('dist'), 0), 0, student_init_file(ctx, 0))
    key = MethodKey('dist', cached=True)
    result, stored = student_run(ctx, key, 0, None, None)
    assert not stored and result.miou is not None
    assert init in loaded and SHIPPED_TEACHER not in loaded
    loaded.clear()
    student_run(ctx, key.online, 0, None, None)
    assert SHIPPED_TEACHER in loaded
