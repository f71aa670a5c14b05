# Copyright (c) gskd-mm contributors. All rights reserved.
"""The teacher cache in processes: a cache pass sharded over two processes
and resumed after a kill, and a cached recipe trained through
``tools/train.py`` and ``mim train mmrazor`` with two loader workers,
without loading the teacher's weights."""
import glob
import json
import os
import os.path as osp
import signal
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS as SEG_MODELS

from gskd_mm.analysis.offline import teacher_without_downloads
from gskd_mm.teacher_cache import MissingTeacherCacheError, TeacherCache
from gskd_mm.teacher_cache.cache_pass import run_cache_pass
from gskd_mm.testing import make_cityscapes
from gskd_mm.utils import register_all_modules

from helpers import run_with_deadline, shrink_recipe, spawn_with_deadline

TESTS = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(TESTS)
TRAIN_PY = osp.join(REPO, 'tools', 'train.py')
CACHE_PY = osp.join(REPO, 'tools', 'cache_teacher.py')
MIM = osp.join(osp.dirname(sys.executable), 'mim')
RECIPE = osp.join(
    REPO, 'configs', 'gskd', 'teacher_cache',
    'dist-cache_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_'
    'cityscapes-512x1024.py')
TIMEOUT = 600

pytestmark = pytest.mark.slow


def pointwise_setup(tmp_path):
    """Generated Cityscapes, the pointwise recipe and its teacher weights
    (tests/test_teacher_cache.py)."""
    sys.path.insert(0, TESTS)
    import test_teacher_cache as t
    register_all_modules(init_default_scope=False)
    data_root = make_cityscapes(str(tmp_path / 'cityscapes'), num_train=4,
                                num_val=1, size=(32, 64))
    init_default_scope('mmseg')
    torch.manual_seed(1)
    teacher = SEG_MODELS.build(t.segmentor(1))
    teacher.init_weights()
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    return t, data_root, ckpt


def same_caches(a: str, b: str) -> None:
    """Every view of every image holds the same maps in both caches."""
    ca, cb = TeacherCache(a), TeacherCache(b)
    assert ca.files == cb.files and sorted(ca.views) == sorted(cb.views)
    for i, views in ca.views.items():
        assert len(views) == len(cb.views[i])
        for va, vb in zip(views, cb.views[i]):
            assert (va['scale'], va['flip']) == (vb['scale'], vb['flip'])
            for name in ca.recorders:
                np.testing.assert_array_equal(
                    ca.read(va, name), cb.read(vb, name))


def sharded_worker(rank: int, data_root: str, out: str, ckpt: str) -> None:
    sys.path.insert(0, TESTS)
    import test_teacher_cache as t
    from gskd_mm.teacher_cache import storage
    register_all_modules(init_default_scope=False)
    close = storage.ShardWriter.close

    def logged_close(self):
        close(self)
        with open(osp.join(out, f'rank{rank}.log'), 'a') as f:
            f.write(osp.basename(self.final) + '\n')

    storage.ShardWriter.close = logged_close
    run_cache_pass(t.pointwise_recipe(data_root), out, checkpoint=ckpt,
                   shard_size=1)


def test_cache_pass_sharded_over_two_processes(tmp_path):
    t, data_root, ckpt = pointwise_setup(tmp_path)
    out = str(tmp_path / 'two')
    spawn_with_deadline(sharded_worker, (data_root, out, ckpt), nprocs=2,
                        timeout=TIMEOUT)
    made = {}
    for rank in (0, 1):
        with open(osp.join(out, f'rank{rank}.log')) as f:
            made[rank] = f.read().split()
    assert made == {0: ['shard_00000', 'shard_00002'],
                    1: ['shard_00001', 'shard_00003']}
    one = str(tmp_path / 'one')
    run_cache_pass(t.pointwise_recipe(data_root), one, checkpoint=ckpt,
                   shard_size=1)
    same_caches(out, one)


KILLED_PASS = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from gskd_mm.utils import register_all_modules
register_all_modules(init_default_scope=False)
import test_teacher_cache as t
from gskd_mm.teacher_cache import storage
from gskd_mm.teacher_cache.cache_pass import run_cache_pass
add = storage.ShardWriter.add
def killed_in_shard_1(self, *args, **kwargs):
    if self.final.endswith('shard_00001'):
        os.kill(os.getpid(), signal.SIGKILL)
    return add(self, *args, **kwargs)
storage.ShardWriter.add = killed_in_shard_1
run_cache_pass(t.pointwise_recipe(sys.argv[1]), sys.argv[2],
               checkpoint=sys.argv[3], shard_size=2)
"""


def test_killed_cache_pass_resumes_its_unfinished_shards(tmp_path):
    t, data_root, ckpt = pointwise_setup(tmp_path)
    out = str(tmp_path / 'cache')
    result = run_with_deadline(
        [sys.executable, '-c', KILLED_PASS.format(tests=TESTS), data_root,
         out, ckpt], TIMEOUT, cwd=REPO, env=dict(os.environ))
    assert result.returncode == -signal.SIGKILL, result.stdout[-3000:]
    assert osp.isdir(osp.join(out, 'shard_00000'))
    assert osp.isdir(osp.join(out, 'shard_00001.partial'))
    with pytest.raises(MissingTeacherCacheError, match='1 of 2 shards'):
        TeacherCache(out)
    done = os.stat(osp.join(out, 'shard_00000', 'index.json'))
    run_cache_pass(t.pointwise_recipe(data_root), out, checkpoint=ckpt,
                   shard_size=2)
    again = os.stat(osp.join(out, 'shard_00000', 'index.json'))
    assert (again.st_ino, again.st_mtime_ns) == (done.st_ino,
                                                  done.st_mtime_ns)
    assert not glob.glob(osp.join(out, '*.partial'))
    clean = str(tmp_path / 'clean')
    run_cache_pass(t.pointwise_recipe(data_root), clean, checkpoint=ckpt,
                   shard_size=2)
    same_caches(out, clean)


def run(cmd):
    result = run_with_deadline(cmd, TIMEOUT, cwd=REPO, env=dict(os.environ))
    assert result.returncode == 0, (
        f'{" ".join(cmd)} exited with {result.returncode}:\n'
        f'{result.stdout[-6000:]}')
    return result


def test_cached_recipe_trains_without_the_teacher(tmp_path, monkeypatch):
    """The cache made by tools/cache_teacher.py; training by tools/train.py
    and ``mim train mmrazor``, two loader workers, no teacher weights."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    register_all_modules(init_default_scope=False)
    data_root = make_cityscapes(str(tmp_path / 'cityscapes'), num_train=4,
                                num_val=1)
    cfg = shrink_recipe(Config.fromfile(RECIPE), data_root=data_root)
    cache = str(tmp_path / 'cache')
    cfg.model.teacher_cache.root = cache
    cfg.train_dataloader.dataset.cache.root = cache
    # The teacher's weights (its initialisation), as a checkpoint.
    init_default_scope('mmseg')
    teacher = SEG_MODELS.build(teacher_without_downloads(cfg.model.teacher))
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    cfg.model.teacher_ckpt = ckpt
    path = str(tmp_path / 'recipe.py')
    cfg.dump(path)
    run([sys.executable, CACHE_PY, path, '--scales', '0.5', '1.0', '2.0'])
    manifest = TeacherCache(cache).manifest
    assert manifest['checkpoint']['path'] == ckpt
    assert manifest['flips'] == [None, 'horizontal']
    # What DIST's losses read (not the features it records).
    assert sorted(manifest['recorders']) == ['aux_logits', 'logits']
    options = [
        '--cfg-options', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=2',
        'train_dataloader.persistent_workers=True', 'train_cfg.max_iters=2',
        'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1'
    ]
    for name, cmd in (('train', [sys.executable, TRAIN_PY, path]),
                      ('mim', [MIM, 'train', 'mmrazor', path])):
        work_dir = str(tmp_path / name)
        result = run(cmd + ['--work-dir', work_dir] + options)
        assert f'from path: {ckpt}' not in result.stdout  # never loaded
        (scalars, ) = glob.glob(
            osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
        with open(scalars) as f:
            records = [json.loads(line) for line in f if line.strip()]
        train = [r for r in records if 'loss' in r]
        assert [r['step'] for r in train] == [1, 2]
        for r in train:
            for key in ('distill.loss_dist', 'distill.loss_dist_aux'):
                assert np.isfinite(r[key]) and r[key] > 0, (key, r)
        assert any('mIoU' in r for r in records)
        for pth in glob.glob(osp.join(work_dir, '*.pth')):
            keys = torch.load(pth, map_location='cpu',
                              weights_only=False)['state_dict']
            assert not any(k.startswith('teacher.') for k in keys)
            os.remove(pth)
    assert not glob.glob(str(tmp_path / 'torch_home' / '**' / '*.pth'),
                         recursive=True)


@pytest.mark.parametrize('name', [
    'dist-cache_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_'
    'cityscapes-512x1024.py',
    'cwd-cache_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb2-80k_'
    'cityscapes-512x1024.py',
    'dist-gskd-row-t1-cache_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_'
    'cityscapes-512x1024.py'
])
def test_shipped_cached_recipe_trains_a_step(tmp_path, name):
    """Each cached recipe: a cache of its (initialised) teacher, then a
    training step from it with every distillation loss."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner
    from mmrazor.registry import MODELS
    register_all_modules(init_default_scope=False)
    data_root = make_cityscapes(str(tmp_path / 'cityscapes'), num_train=2,
                                num_val=1)
    cfg = shrink_recipe(
        Config.fromfile(osp.join(osp.dirname(RECIPE), name)),
        data_root=data_root)
    for loss in cfg.model.distiller.distill_losses.values():
        if loss.type == 'GSKDLoss':  # an untrained teacher is right nowhere
            loss.valid_mask = 'labeled'
    cache = str(tmp_path / 'cache')
    cfg.model.teacher_cache.root = cache
    cfg.train_dataloader.dataset.cache.root = cache
    torch.manual_seed(0)
    run_cache_pass(cfg, scales=[1.0])
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    model.train()
    assert not list(model.teacher.parameters())
    cfg.train_dataloader.batch_size = 2
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    with pytest.warns(UserWarning, match='nearest cached scale'):
        losses = model.train_step(
            batch, build_optim_wrapper(model, cfg.optim_wrapper))
    for key in cfg.model.distiller.distill_losses:
        assert torch.isfinite(losses[f'distill.{key}']), key
    if 'discriminator' in cfg.model:
        assert torch.isfinite(losses['distill.loss_adv_d'])


def test_cached_cwd_recipe_with_dist_scripts(tmp_path, monkeypatch):
    """``tools/dist_cache_teacher.sh`` then ``tools/dist_train.sh``: two
    CPU processes (gloo) each, the adversarial recipe under its DDP
    wrapper (every SyncBN made BN: DDP refuses SyncBN on a CPU)."""
    from helpers import free_port
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    register_all_modules(init_default_scope=False)
    data_root = make_cityscapes(str(tmp_path / 'cityscapes'), num_train=4,
                                num_val=1)
    cfg = shrink_recipe(
        Config.fromfile(osp.join(
            osp.dirname(RECIPE),
            'cwd-cache_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb2-80k_'
            'cityscapes-512x1024.py')),
        data_root=data_root,
        sync_bn_to_bn=True)
    assert cfg.model_wrapper_cfg.type == \
        'mmrazor.AdversarialDistillDataParallel'
    cache = str(tmp_path / 'cache')
    cfg.model.teacher_cache.root = cache
    cfg.train_dataloader.dataset.cache.root = cache
    path = str(tmp_path / 'recipe.py')
    cfg.dump(path)
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PATH=f'{osp.dirname(sys.executable)}{os.pathsep}'
               f'{os.environ["PATH"]}')
    scripts = osp.join(REPO, 'tools')
    result = run_with_deadline(
        ['bash', osp.join(scripts, 'dist_cache_teacher.sh'), path, '2',
         '--scales', '1.0', '--shard-size', '1'], TIMEOUT, cwd=REPO,
        env=dict(env, PORT=str(free_port())))
    assert result.returncode == 0, result.stdout[-6000:]
    assert len(TeacherCache(cache).views) == 4
    work_dir = str(tmp_path / 'work_dir')
    result = run_with_deadline(
        ['bash', osp.join(scripts, 'dist_train.sh'), path, '2',
         '--work-dir', work_dir, '--cfg-options',
         'env_cfg.dist_cfg.backend=gloo', 'train_dataloader.batch_size=2',
         'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
         'default_hooks.checkpoint.interval=2',
         'default_hooks.logger.interval=1'], TIMEOUT, cwd=REPO,
        env=dict(env, PORT=str(free_port())))
    assert result.returncode == 0, result.stdout[-6000:]
    (scalars, ) = glob.glob(
        osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        train = [json.loads(line) for line in f if '"loss"' in line]
    assert [r['step'] for r in train] == [1, 2]
    for r in train:
        for key in ('distill.loss_kd', 'distill.loss_cwd_feat',
                    'distill.loss_cwd_logits', 'distill.loss_adv_g',
                    'distill.loss_adv_d'):
            assert np.isfinite(r[key]), (key, r)
    for pth in glob.glob(osp.join(work_dir, '*.pth')):
        os.remove(pth)
