# Copyright (c) gskd-mm contributors. All rights reserved.
"""No test or run can hang on its processes: the process group's teardown
names what keeps a DDP wrapper alive, and a subprocess's deadline kills
everything it started."""
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from gskd_mm.utils import descendants, kill_process_tree

from helpers import alive, run_with_deadline, spawn_with_deadline

KEPT = []


def leaking_worker(rank: int) -> None:
    """Keeps its DDP wrapper beyond its return, as a runner would."""
    model = DistributedDataParallel(nn.Linear(2, 2))
    KEPT.append(SimpleNamespace(model=model))


def releasing_worker(rank: int, out: str) -> None:
    runner = SimpleNamespace(model=DistributedDataParallel(nn.Linear(2, 2)))
    runner.loop = SimpleNamespace(runner=runner)  # a cycle, as MMEngine's
    with open(os.path.join(out, f'rank{rank}'), 'w') as f:
        f.write('done')


@pytest.mark.slow
@pytest.mark.multiprocess
def test_teardown_names_what_keeps_a_ddp_wrapper():
    with pytest.raises(Exception, match=r'DDP wrapper outlives training: '
                       r'DistributedDataParallel held by SimpleNamespace'
                       r'\.model'):
        spawn_with_deadline(leaking_worker, (), nprocs=1, timeout=120)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_teardown_frees_a_wrapper_in_a_reference_cycle(tmp_path):
    spawn_with_deadline(releasing_worker, (str(tmp_path), ), timeout=120)
    assert sorted(os.listdir(tmp_path)) == ['rank0', 'rank1']


def test_deadline_kills_what_the_command_started():
    # The shell starts a background sleep (a rank, a pool worker) and
    # waits for it; the deadline must kill both.
    with pytest.raises(pytest.fail.Exception, match='still running') as info:
        run_with_deadline(
            ['bash', '-c', 'sleep 300 & echo "child $!"; wait'], timeout=2)
    pid = int(re.search(r'child (\d+)', str(info.value)).group(1))
    deadline = time.monotonic() + 10  # SIGKILL is delivered, not awaited
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_a_process_tree_dies_whole_across_sessions(tmp_path):
    """A launcher whose child leads a session of its own (as torchrun
    starts each rank): killing the launcher's group alone would leave the
    child; kill_process_tree kills both."""
    child_pid = tmp_path / 'child'
    launcher = subprocess.Popen(
        [sys.executable, '-c',
         'import subprocess, sys, time\n'
         'p = subprocess.Popen([sys.executable, "-c", '
         '"import time; time.sleep(60)"], start_new_session=True)\n'
         f'open({str(child_pid)!r}, "w").write(str(p.pid))\n'
         'time.sleep(60)'],
        start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not child_pid.exists() or not child_pid.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = int(child_pid.read_text())
        assert descendants(launcher.pid) == [child]
        kill_process_tree(launcher.pid)
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        kill_process_tree(launcher.pid)
        launcher.wait()
