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
import glob
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import re
import time
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch
from mmengine.config import Config

from gskd_mm.engine import PREEMPTED_EXIT_CODE, ExactResumeHook
from gskd_mm.engine.hooks import exact_resume_hook
from gskd_mm.utils import descendants
from gskd_mm.engine.hooks.exact_resume_hook import (CHECKPOINT_KEY,
                                                    random_states)

from helpers import (alive, free_port, kill_process_group,
                     run_with_deadline)

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


def test_another_world_size_warns_and_goes_on(monkeypatch):
    """A checkpoint of 2 processes resumed by 1: no states restored (they
    would not make it exact), a warning that names both sizes."""
    hook = ExactResumeHook()
    hook.after_load_checkpoint(
        None, {
            CHECKPOINT_KEY:
            dict(world_size=2, ranks=[random_states(),
                                      random_states()])
        })
    loop = StandInLoop(resumed_iter=3)
    own_iterator = loop.dataloader_iterator
    logged = []
    monkeypatch.setattr(exact_resume_hook, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    hook.before_train(StandInRunner(loop))
    assert loop.dataloader_iterator is own_iterator
    (warning, ) = logged
    assert '2 process(es) (2 saved) and this run has 1' in warning
    assert 'not those of the interrupted run' in warning


def test_a_checkpoint_of_the_single_state_format_still_resumes():
    """Checkpoints saved before every rank's states were: one state dict."""
    hook = ExactResumeHook()
    torch.manual_seed(4)
    old = random_states()
    expected = draws()
    hook.after_load_checkpoint(None, {CHECKPOINT_KEY: old})
    loop = StandInLoop(resumed_iter=1)
    hook.before_train(StandInRunner(loop))
    next(loop.dataloader_iterator)
    torch.manual_seed(5)
    assert next(loop.dataloader_iterator)[0] == expected[0]


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


def write_config(data,
                 method: str,
                 num_workers: int,
                 out_dir: str,
                 iters: int = ITERS,
                 seed: Optional[int] = 0,
                 cpu_ddp: bool = False,
                 **options) -> str:
    """The demo's config of a method, for ``iters`` iterations, validated
    and saved every INTERVAL, every checkpoint kept; an untrained teacher;
    ``options`` merged last. ``cpu_ddp``: the projectors' SyncBN
    (GSKDProjector's default), which DDP refuses on the CPU, becomes BN."""
    from projects.gskd_demo.gskd_demo.methods import (balancer_hook,
                                                      load_config,
                                                      method_spec)
    spec = method_spec(method)
    cfg = load_config(spec.config, *data, iters, 4, 0)
    cfg.randomness = dict(seed=seed)  # None: the recipes' (none)
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
    if cpu_ddp:
        for connector in cfg.model.distiller.get('connectors', {}).values():
            connector.norm_cfg = dict(type='BN')
    cfg.merge_from_dict(options)
    path = osp.join(out_dir, f'{method}_w{num_workers}_{iters}.py')
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
# torchrun is in the interpreter's folder.
ENV['PATH'] = f'{osp.dirname(sys.executable)}{os.pathsep}{ENV["PATH"]}'


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
    returncode, _ = interrupt(
        train_cmd(config, work_dir), work_dir, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    killed_after = f'iter_{stopped_iteration(work_dir)}.pth'
    assert not osp.isfile(osp.join(work_dir, f'iter_{ITERS}.pth'))

    train(config, work_dir, '--resume')
    assert_same_run(work_dir, straight)
    # It went on from the checkpoint it was killed after.
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith(f'iter_{ITERS}.pth')
    assert killed_after != f'iter_{ITERS}.pth'


def start(cmd: List[str], **env) -> subprocess.Popen:
    """A training command in a session of its own, its output piped."""
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=dict(ENV, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True)


def wait_for_checkpoint(process: subprocess.Popen, work_dir: str) -> str:
    """Wait until training wrote ``last_checkpoint``; its content."""
    last_checkpoint = osp.join(work_dir, 'last_checkpoint')
    deadline = time.monotonic() + TIMEOUT
    # AtomicCheckpointHook writes last_checkpoint once the checkpoint is in.
    while not osp.isfile(last_checkpoint):
        assert process.poll() is None, 'training ended before a checkpoint'
        assert time.monotonic() < deadline, 'no checkpoint in time'
        time.sleep(0.1)
    with open(last_checkpoint) as f:
        return f.read().strip()


def interrupt(cmd: List[str], work_dir: str, signum: int,
              **env) -> Tuple[int, str]:
    """Run a training command until its first checkpoint, then signal it.

    Args:
        cmd (list[str]): The command (``tools/train.py`` or
            ``dist_train.sh``, which runs torchrun in its place).
        work_dir (str): Its work dir, watched for ``last_checkpoint``.
        signum (int): SIGKILL kills it with everything it started (the
            ranks too); another signal goes to the command alone.
        **env: More environment variables.

    Returns:
        tuple: Its exit status and its output.
    """
    process = start(cmd, **env)
    try:
        wait_for_checkpoint(process, work_dir)  # iteration INTERVAL
        if signum == signal.SIGKILL:
            kill_process_group(process)
        else:
            process.send_signal(signum)
        output, _ = process.communicate(timeout=TIMEOUT)
    finally:
        kill_process_group(process)
        process.wait()
    return process.returncode, output


def stopped_iteration(work_dir: str) -> int:
    """The iteration of the checkpoint that ``last_checkpoint`` names, which
    must load."""
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        last = f.read().strip()
    torch.load(last, weights_only=False)  # whole
    return int(re.search(r'iter_(\d+)\.pth$', last).group(1))


def test_a_config_with_its_own_custom_hooks_keeps_exact_resume(data, tmp_path):
    """A balanced config that sets ``custom_hooks`` to its balancer alone
    (the list replaces the recipe's) still has ExactResumeHook and the
    atomic checkpoints: they are in ``default_hooks``."""
    config = write_config(data, METHODS[0], 0, str(tmp_path))
    cfg = Config.fromfile(config)
    assert [h['type'] for h in cfg.custom_hooks] == \
        ['GradientShareBalancerHook']
    assert cfg.default_hooks.exact_resume.type == 'ExactResumeHook'
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'


@pytest.mark.slow
def test_a_kill_during_a_save_leaves_the_previous_checkpoint(
        straight_run, data, tmp_path):
    """SIGKILL halfway through writing iter_20.pth: iter_10.pth and
    last_checkpoint are untouched, and ``--resume`` goes on from iter_10 to
    the weights of the uninterrupted run."""
    config, straight = straight_run(METHODS[0], 0)
    killer = write_config(
        data,
        METHODS[0],
        0,
        str(tmp_path),
        custom_imports=dict(
            imports=['gskd_mm', 'helpers.kill_during_save'],
            allow_failed_imports=False))
    cfg = Config.fromfile(killer)
    cfg.custom_hooks.append(dict(type='KillDuringSaveHook', at=2 * INTERVAL))
    cfg.dump(killer)
    work_dir = str(tmp_path / 'killed')
    result = run_with_deadline(
        train_cmd(killer, work_dir),
        TIMEOUT,
        cwd=ROOT,
        env=dict(ENV, PYTHONPATH=f'{ROOT}{os.pathsep}{osp.join(ROOT, "tests")}'))
    assert result.returncode == -signal.SIGKILL, result.stdout[-3000:]
    # Half a file was written, beside the checkpoint, never in its place.
    assert not osp.exists(osp.join(work_dir, f'iter_{2 * INTERVAL}.pth'))
    (partial, ) = [f for f in os.listdir(work_dir) if f.endswith('.tmp')]
    assert partial.startswith(f'.iter_{2 * INTERVAL}.pth.')
    previous = osp.join(work_dir, f'iter_{INTERVAL}.pth')
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == previous
    torch.load(previous, weights_only=False)  # whole

    train(config, work_dir, '--resume')
    assert_same_run(work_dir, straight)


@pytest.mark.slow
def test_a_run_without_a_seed_resumes_exactly(data, tmp_path):
    """No ``randomness.seed`` (as the recipes ship), loader workers: the
    run resumed from a checkpoint gets the seed it was trained with back
    before the sampler and the workers are seeded (tools/train.py)."""
    config = write_config(data, METHODS[1], 2, str(tmp_path), seed=None)
    straight = str(tmp_path / 'straight')
    train(config, straight)
    resumed = str(tmp_path / 'resumed')
    checkpoint = osp.join(straight, f'iter_{INTERVAL}.pth')
    result = run_with_deadline(
        train_cmd(config, resumed, '--resume', '--cfg-options',
                  f'load_from={checkpoint}'),
        TIMEOUT,
        cwd=ROOT,
        env=ENV)
    assert result.returncode == 0, result.stdout[-5000:]
    seed = torch.load(checkpoint, weights_only=False)['meta']['seed']
    assert f"checkpoint's ({seed})" in result.stdout
    assert 'sets no `randomness.seed`' not in result.stdout  # no warning
    assert_same_run(resumed, straight)


@pytest.mark.slow
def test_sigusr1_stops_with_a_checkpoint_and_the_requeue_code(
        straight_run, tmp_path):
    """SIGUSR1 (``#SBATCH --signal``) between two checkpoints: a checkpoint
    of the current iteration, exit status 75 (what slurm_train.sh requeues
    on); ``--resume`` ends at the uninterrupted run's weights."""
    config, straight = straight_run(METHODS[0], 0)
    work_dir = str(tmp_path / 'stopped')
    returncode, output = interrupt(
        train_cmd(config, work_dir), work_dir, signal.SIGUSR1)
    assert returncode == PREEMPTED_EXIT_CODE == 75, output[-3000:]
    stopped_at = stopped_iteration(work_dir)
    assert INTERVAL < stopped_at < ITERS  # mid-interval
    assert f'SIGUSR1 received: training stops after iteration {stopped_at}' \
        in output

    train(config, work_dir, '--resume')
    assert_same_run(work_dir, straight)


# ---------------------------------------------------------------------------
# Two processes (gloo) through tools/dist_train.sh

DDP_ITERS = 2 * INTERVAL
COLLECTIVE_TIMEOUT = 60  # seconds
DIST_TRAIN_SH = osp.join(ROOT, 'tools', 'dist_train.sh')
DDP_OPTIONS = [
    'env_cfg.dist_cfg.backend=gloo',
    f'env_cfg.dist_cfg.timeout={COLLECTIVE_TIMEOUT}',
    'randomness.diff_rank_seed=True'
]


def dist_train_cmd(config: str, work_dir: str, *options: str,
                   resume: bool = False) -> List[str]:
    return [
        'bash', DIST_TRAIN_SH, config, '2', '--work-dir', work_dir,
        *(['--resume'] if resume else []), '--cfg-options', *DDP_OPTIONS,
        *options
    ]


def dist_train(config: str, work_dir: str, resume: bool = False) -> str:
    result = run_with_deadline(
        dist_train_cmd(config, work_dir, resume=resume),
        2 * TIMEOUT,
        cwd=ROOT,
        env=dict(ENV, PORT=str(free_port())))
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout


@pytest.fixture(scope='module')
def ddp_straight_run(data, tmp_path_factory):
    """The uninterrupted 2-rank run of a method and worker count."""
    runs = {}

    def get(method: str, num_workers: int):
        if (method, num_workers) not in runs:
            out_dir = str(
                tmp_path_factory.mktemp(f'ddp_{method}_w{num_workers}'))
            config = write_config(
                data, method, num_workers, out_dir, iters=DDP_ITERS,
                cpu_ddp=True)
            work_dir = osp.join(out_dir, 'straight')
            dist_train(config, work_dir)
            runs[method, num_workers] = config, work_dir
        return runs[method, num_workers]

    return get


def rank_pids(launcher: subprocess.Popen) -> dict:
    """Rank -> pid of the processes torchrun started (their RANK)."""
    pids = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/stat') as f:
                parent = int(f.read().rsplit(')', 1)[1].split()[1])
            if parent != launcher.pid:
                continue
            with open(f'/proc/{pid}/environ', 'rb') as f:
                env = dict(
                    item.split(b'=', 1) for item in f.read().split(b'\0')
                    if b'=' in item)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b'RANK' in env:
            pids[int(env[b'RANK'])] = int(pid)
    return pids


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize('num_workers', [0, 2])
@pytest.mark.parametrize('method', METHODS)
def test_two_ranks_killed_resume_to_the_same_weights(ddp_straight_run, method,
                                                     num_workers, tmp_path):
    """2 gloo ranks, each with its own seed (``diff_rank_seed``), killed
    with SIGKILL after the first checkpoint and resumed: every rank's
    states come back, and the run ends at the uninterrupted run's weights."""
    config, straight = ddp_straight_run(method, num_workers)
    ref = torch.load(
        osp.join(straight, f'iter_{DDP_ITERS}.pth'),
        weights_only=False)[CHECKPOINT_KEY]
    assert ref['world_size'] == 2
    # Each rank's own: restoring rank 0's on both would not be this run.
    assert not torch.equal(ref['ranks'][0]['torch'], ref['ranks'][1]['torch'])

    work_dir = str(tmp_path / 'killed')
    returncode, _ = interrupt(
        dist_train_cmd(config, work_dir),
        work_dir,
        signal.SIGKILL,
        PORT=str(free_port()))
    assert returncode == -signal.SIGKILL
    assert stopped_iteration(work_dir) == INTERVAL
    assert not osp.exists(osp.join(work_dir, f'iter_{DDP_ITERS}.pth'))

    dist_train(config, work_dir, resume=True)
    assert_same_run(work_dir, straight, f'iter_{DDP_ITERS}.pth')


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_saves_that_iteration_and_resumes_exactly(
        ddp_straight_run, tmp_path):
    """SIGTERM to torchrun between two checkpoints (it passes the signal to
    the ranks): both ranks finish the iteration and a checkpoint of it is
    saved; the run resumed from it ends at the uninterrupted run's
    weights."""
    config, straight = ddp_straight_run(METHODS[0], 0)
    work_dir = str(tmp_path / 'stopped')
    returncode, output = interrupt(
        dist_train_cmd(config, work_dir),
        work_dir,
        signal.SIGTERM,  # to torchrun (dist_train.sh execs it)
        PORT=str(free_port()))
    assert returncode != 0, output[-3000:]
    stopped_at = stopped_iteration(work_dir)
    assert INTERVAL < stopped_at < DDP_ITERS  # mid-interval
    logs = ''
    for log in glob.glob(osp.join(work_dir, '*', '*.log')):
        with open(log) as f:
            logs += f.read()
    assert f'training stops after iteration {stopped_at} on every rank' \
        in logs

    dist_train(config, work_dir, resume=True)
    assert_same_run(work_dir, straight, f'iter_{DDP_ITERS}.pth')


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_killed_rank_ends_the_run_naming_it_and_leaves_no_process(
        data, tmp_path):
    """SIGKILL of rank 1 (loader workers running): within the collective
    timeout the launcher exits with an error that names rank 1, and no
    process of the run is left."""
    config = write_config(
        data, METHODS[0], 2, str(tmp_path), iters=10 * INTERVAL, cpu_ddp=True)
    work_dir = str(tmp_path / 'run')
    process = start(
        dist_train_cmd(config, work_dir), PORT=str(free_port()))
    try:
        wait_for_checkpoint(process, work_dir)
        ranks = rank_pids(process)
        assert sorted(ranks) == [0, 1]
        started = descendants(process.pid)  # ranks and loader workers
        assert len(started) >= 2 + 2 * 2
        killed = time.monotonic()
        os.kill(ranks[1], signal.SIGKILL)
        output, _ = process.communicate(timeout=COLLECTIVE_TIMEOUT)
        took = time.monotonic() - killed
        # Given a few seconds to exit (a loader worker polls its parent).
        deadline = time.monotonic() + 10
        while any(map(alive, started)) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in started if alive(pid)]
    finally:
        kill_process_group(process)
        process.wait()
    assert process.returncode != 0
    assert took < COLLECTIVE_TIMEOUT
    assert re.search(r'rank\s*:\s*1 \(local_rank: 1\)', output), \
        output[-3000:]
    assert 'SIGKILL' in output
    assert left == [], f'processes left behind: {left}'
