# Copyright (c) gskd-mm contributors. All rights reserved.
"""A run stopped at any checkpoint and resumed ends at the weights of the
run that was not stopped, to the bit (:class:`ExactResumeHook`).

The in-process tests check the hook's parts on a stand-in loop; the slow
ones train the demo's recipes with ``tools/train.py`` in subprocesses:
DIST + GSKD-row-t1 with the balancer (GSKD's pixel draws, the student's
dropout, the balancer's state) and CIRKD + GSKD (its memory queues), with
``num_workers`` 0 (the pipeline's draws in the main process) and 2, and
validation every ``INTERVAL`` iterations, between the checkpoints. One run
is killed with SIGKILL after a checkpoint and resumed with ``--resume``.
"""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config

from gskd_mm.engine import ExactResumeHook
from gskd_mm.engine.hooks.exact_resume_hook import (CHECKPOINT_KEY,
                                                    random_states)

from helpers import kill_process_group, run_with_deadline

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The demo's configs name their dataset by import path from the repo root.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TRAIN_PY = osp.join(ROOT, 'tools', 'train.py')
ITERS = 30
INTERVAL = 10  # checkpoint and validation
TIMEOUT = 300  # seconds, per training run
METHODS = ['dist_gskd-row-t1-bal', 'cirkd_gskd']


def draws() -> list:
    """A number from each global generator: what training would draw."""
    return [torch.rand(1).item(), np.random.rand(), random.random()]


class StandInLoop:
    """What the hook reads of ``IterBasedTrainLoop``: ``iter`` and a
    dataloader iterator whose batches draw numbers (as a pipeline does with
    ``num_workers=0``)."""

    def __init__(self, resumed_iter: int) -> None:
        self.iter = resumed_iter
        self.dataloader_iterator = iter(draws, None)


class StandInRunner:

    def __init__(self, loop: StandInLoop) -> None:
        self.train_loop = loop
        self.cfg = Config(dict(randomness=dict(seed=0)))


def test_states_come_back_after_the_skip_and_before_the_next_batch():
    hook = ExactResumeHook()
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = draws()  # the batch after the checkpoint, straight through
    # A fresh process, resumed at iteration 3: the states come back only
    # once the loop has skipped 3 batches.
    torch.manual_seed(2)
    hook.after_load_checkpoint(None, checkpoint)
    loop = StandInLoop(resumed_iter=3)
    own_iterator = loop.dataloader_iterator
    hook.before_train(StandInRunner(loop))
    for _ in range(3):
        assert next(loop.dataloader_iterator) != expected
    assert next(loop.dataloader_iterator) == expected
    assert loop.dataloader_iterator is own_iterator  # handed back


def test_a_new_run_restores_nothing():
    """``load_from`` without resuming: iteration 0, the states stay."""
    hook = ExactResumeHook()
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    draws()
    hook.after_load_checkpoint(None, checkpoint)
    loop = StandInLoop(resumed_iter=0)
    own_iterator = loop.dataloader_iterator
    states = random_states()
    hook.before_train(StandInRunner(loop))
    assert loop.dataloader_iterator is own_iterator
    assert torch.equal(random_states()['torch'], states['torch'])


def test_validation_draws_nothing_from_training():
    hook = ExactResumeHook()
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    expected = draws()
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    hook.before_val(None)
    draws()  # a validation dataloader's base seed, say
    hook.after_val(None)
    assert draws() == expected


# ---------------------------------------------------------------------------
# tools/train.py, stopped and resumed


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """A small Synthetic Scenes dataset: its root and generation params."""
    from projects.gskd_demo.gskd_demo.data import DATA_SEED, IMG_SIZE
    from projects.gskd_demo.gskd_demo.dataset import \
        generate_synthetic_scenes
    root = str(tmp_path_factory.mktemp('scenes'))
    generate_cfg = dict(
        num_train=32, num_val=8, img_size=IMG_SIZE, seed=DATA_SEED)
    generate_synthetic_scenes(root, **generate_cfg)
    return root, generate_cfg


def write_config(data, method: str, num_workers: int, out_dir: str) -> str:
    """The demo's config of a method, for ITERS iterations, validated and
    saved every INTERVAL, every checkpoint kept; an untrained teacher."""
    from projects.gskd_demo.gskd_demo.methods import (balancer_hook,
                                                      load_config,
                                                      method_spec)
    spec = method_spec(method)
    cfg = load_config(spec.config, *data, ITERS, 4, 0)
    if spec.loss_gskd is not None:
        cfg.model.distiller.distill_losses.loss_gskd.update(spec.loss_gskd)
    balancer = balancer_hook(spec, cfg)
    if balancer is not None:
        # A config's own custom_hooks, written the usual MMEngine way (the
        # list replaces the recipe's): exact resume is in default_hooks.
        cfg.custom_hooks = [balancer]
    cfg.train_cfg.val_interval = INTERVAL
    cfg.default_hooks.checkpoint.update(interval=INTERVAL, max_keep_ckpts=-1)
    cfg.train_dataloader.num_workers = num_workers
    path = osp.join(out_dir, f'{method}_w{num_workers}.py')
    cfg.dump(path)
    return path


@pytest.fixture(scope='module')
def straight_run(data, tmp_path_factory):
    """The uninterrupted run of a method and worker count (trained once):
    its config and work dir."""
    runs = {}

    def get(method: str, num_workers: int):
        if (method, num_workers) not in runs:
            out_dir = str(tmp_path_factory.mktemp(f'{method}_w{num_workers}'))
            config = write_config(data, method, num_workers, out_dir)
            work_dir = osp.join(out_dir, 'straight')
            train(config, work_dir)
            runs[method, num_workers] = config, work_dir
        return runs[method, num_workers]

    return get


def train_cmd(config: str, work_dir: str, *extra: str) -> list:
    return [sys.executable, TRAIN_PY, config, '--work-dir', work_dir, *extra]


ENV = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')


def train(config: str, work_dir: str, *extra: str) -> None:
    result = run_with_deadline(
        train_cmd(config, work_dir, *extra), TIMEOUT, cwd=ROOT, env=ENV)
    assert result.returncode == 0, result.stdout[-5000:]


def assert_same_run(work_dir: str, expected_dir: str,
                    last: str = f'iter_{ITERS}.pth') -> None:
    """The last checkpoints hold the same weights, buffers (BN statistics,
    CIRKD's queues) and every rank's random states, to the bit."""
    ckpt = torch.load(osp.join(work_dir, last), weights_only=False)
    ref = torch.load(osp.join(expected_dir, last), weights_only=False)
    assert ckpt['state_dict'].keys() == ref['state_dict'].keys()
    for name, value in ref['state_dict'].items():
        assert torch.equal(ckpt['state_dict'][name], value), name
    saved, ref_saved = ckpt[CHECKPOINT_KEY], ref[CHECKPOINT_KEY]
    assert saved['world_size'] == ref_saved['world_size'] == len(
        saved['ranks'])
    for states, ref_states in zip(saved['ranks'], ref_saved['ranks']):
        assert torch.equal(states['torch'], ref_states['torch'])
        assert np.array_equal(states['numpy'][1], ref_states['numpy'][1])
        assert states['python'] == ref_states['python']


@pytest.mark.slow
@pytest.mark.parametrize('num_workers', [0, 2])
@pytest.mark.parametrize('method', METHODS)
def test_resumed_from_every_checkpoint_ends_at_the_same_weights(
        straight_run, method, num_workers, tmp_path):
    config, straight = straight_run(method, num_workers)
    for it in range(INTERVAL, ITERS, INTERVAL):
        resumed = str(tmp_path / f'from_{it}')
        train(config, resumed, '--resume', '--cfg-options',
              f'load_from={osp.join(straight, f"iter_{it}.pth")}')
        assert_same_run(resumed, straight)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_weights(straight_run, tmp_path):
    """SIGKILL once the first checkpoint is written, then ``--resume``."""
    config, straight = straight_run(METHODS[0], 0)

    work_dir = str(tmp_path / 'killed')
    last_checkpoint = osp.join(work_dir, 'last_checkpoint')
    process = subprocess.Popen(
        train_cmd(config, work_dir),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        # CheckpointHook writes last_checkpoint once the checkpoint is saved.
        while not osp.isfile(last_checkpoint):
            assert process.poll() is None, 'training ended before a kill'
            assert time.monotonic() < deadline, 'no checkpoint in time'
            time.sleep(0.1)
        kill_process_group(process)
    finally:
        kill_process_group(process)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    with open(last_checkpoint) as f:
        killed_after = osp.basename(f.read().strip())
    assert not osp.isfile(osp.join(work_dir, f'iter_{ITERS}.pth'))

    train(config, work_dir, '--resume')
    assert_same_run(work_dir, straight)
    # It went on from the checkpoint it was killed after.
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith(f'iter_{ITERS}.pth')
    assert killed_after != f'iter_{ITERS}.pth'
