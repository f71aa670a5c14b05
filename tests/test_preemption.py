# Copyright (c) gskd-mm contributors. All rights reserved.
"""The parts of a clean stop, in one process: atomic writes, the
checkpoint hook's backend, PreemptionHook's signals and agreement,
``enable_preemption`` and the seed of a resumed run.

The end-to-end runs (signals to ``tools/train.py`` and to torchrun, a kill
during a save) are in ``tests/test_exact_resume.py``.
"""
import os
import os.path as osp
import signal

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import get_file_backend

from gskd_mm.utils import checkpoint as checkpoint_io
from gskd_mm.engine import (AtomicCheckpointHook, PreemptionHook,
                            enable_preemption)
from gskd_mm.utils import (AtomicLocalBackend, restore_drawn_seed,
                           write_atomically)


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = str(tmp_path / 'iter_2.pth')
    write_atomically(b'previous', path)

    def write_half_then_fail(file, data):
        file.write(data[:len(data) // 2])
        raise KeyboardInterrupt  # what a signal's exception would be

    monkeypatch.setattr(checkpoint_io, '_write', write_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(b'the new checkpoint', path)
    with open(path, 'rb') as f:
        assert f.read() == b'previous'
    assert os.listdir(tmp_path) == ['iter_2.pth']  # no temporary left


def test_a_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    path = str(tmp_path / 'sub' / 'last_checkpoint')
    write_atomically('a', path)
    write_atomically('b', path)
    with open(path) as f:
        assert f.read() == 'b'
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(osp.dirname(path)) == ['last_checkpoint']


def test_the_checkpoint_hook_writes_through_the_atomic_backend(tmp_path):
    hook = AtomicCheckpointHook(interval=1, by_epoch=False)
    backend = get_file_backend(str(tmp_path), backend_args=hook.backend_args)
    assert isinstance(backend, AtomicLocalBackend)
    # A remote out_dir keeps its own backend; so do explicit backend_args.
    assert AtomicCheckpointHook(out_dir='s3://bucket/run').backend_args \
        is None
    assert AtomicCheckpointHook(backend_args=dict(backend='local')) \
        .backend_args == dict(backend='local')


class StandInLoop:
    iter = 4
    max_iters = 10
    stop_training = False


class StandInRunner:
    train_loop = StandInLoop()
    iter = 4
    max_iters = 10


def test_a_signal_stops_training_after_the_iteration():
    before = signal.getsignal(signal.SIGUSR1)
    hook = PreemptionHook()
    runner = StandInRunner()
    try:
        hook.after_train_iter(runner, 0)
        assert not runner.train_loop.stop_training
        os.kill(os.getpid(), signal.SIGUSR1)  # handled: the test goes on
        assert hook.received == signal.SIGUSR1
        hook.after_train_iter(runner, 0)
        assert runner.train_loop.stop_training
        assert hook.stopped_at == runner.iter + 1
        # At the last iteration a signal changes nothing: the run ends.
        last = PreemptionHook()
        runner.iter = runner.max_iters - 1
        runner.train_loop = StandInLoop()
        os.kill(os.getpid(), signal.SIGUSR1)
        last.after_train_iter(runner, 0)
        assert not runner.train_loop.stop_training
        assert last.stopped_at is None
        last.after_run(runner)
    finally:
        hook.after_run(runner)
    assert signal.getsignal(signal.SIGUSR1) is before


def test_an_unknown_signal_is_refused():
    with pytest.raises(ValueError, match='SIGNOPE'):
        PreemptionHook(signals=('SIGTERM', 'SIGNOPE'))


def test_enable_preemption_adds_the_hook_and_the_atomic_checkpoints():
    cfg = Config(
        dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook'))))
    enable_preemption(cfg)
    assert cfg.default_hooks.preemption == dict(type='PreemptionHook')
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    # Turned off by a config: kept off.
    cfg = Config(dict(default_hooks=dict(preemption=None)))
    enable_preemption(cfg)
    assert cfg.default_hooks.preemption is None


def save_with_seed(work_dir: str, seed: int) -> str:
    path = osp.join(work_dir, 'iter_10.pth')
    torch.save(dict(meta=dict(seed=seed, iter=10), state_dict={}), path)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(path)
    return path


def test_a_resumed_run_without_a_seed_gets_its_checkpoints(tmp_path):
    save_with_seed(str(tmp_path), 1234)
    cfg = Config(dict(work_dir=str(tmp_path), resume=True, load_from=None))
    assert restore_drawn_seed(cfg) == 1234
    assert cfg.randomness.seed == 1234
    # A config's own seed stands; a new run is left alone.
    cfg = Config(
        dict(work_dir=str(tmp_path), resume=True, randomness=dict(seed=7)))
    assert restore_drawn_seed(cfg) is None
    assert cfg.randomness.seed == 7
    cfg = Config(dict(work_dir=str(tmp_path), resume=False))
    assert restore_drawn_seed(cfg) is None
    assert 'randomness' not in cfg


def test_the_seed_comes_from_load_from_when_resuming_from_it(tmp_path):
    other = tmp_path / 'other'
    other.mkdir()
    path = save_with_seed(str(other), 99)
    cfg = Config(
        dict(
            work_dir=str(tmp_path),
            resume=True,
            load_from=path,
            randomness=dict(seed=None, diff_rank_seed=True)))
    assert restore_drawn_seed(cfg) == 99
    assert cfg.randomness == dict(seed=99, diff_rank_seed=True)
