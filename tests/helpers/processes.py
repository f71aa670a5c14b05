# Copyright (c) gskd-mm contributors. All rights reserved.
"""Subprocesses and multi-process (gloo) runs that cannot hang a test run.

A subprocess runs in a session of its own, and every way out (its
deadline, a failure, pytest-timeout's) kills that whole process group:
torchrun and its ranks, a worker pool, whatever the command started. The
workers of :func:`spawn_with_deadline` run in a process group that
:func:`run_in_process_group` starts with a collective timeout and tears
down in the one safe order.
"""
import datetime
import faulthandler
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Optional, Sequence

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from gskd_mm.utils import destroy_process_group, kill_process_tree


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def kill_process_group(process: subprocess.Popen) -> None:
    """Kill the process group that ``process`` leads, if any is left, and
    every process it started in sessions of their own (torchrun starts
    each rank so: a kill of its group alone would orphan the ranks)."""
    if process.poll() is None:
        kill_process_tree(process.pid)
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_with_deadline(cmd: Sequence[str],
                      timeout: float,
                      python: bool = False,
                      **kwargs) -> subprocess.CompletedProcess:
    """Run a command, its stderr merged into its stdout (text).

    The command leads a new session: when it overruns ``timeout`` (or the
    test is interrupted, e.g. by pytest-timeout) its whole process group is
    killed, and so is anything of that group still running after it
    exited, so no rank, launcher or worker pool outlives the test.

    Args:
        cmd (Sequence[str]): The command.
        timeout (float): Seconds before its process group is killed and the
            test fails with the output so far.
        python (bool): Prepend this interpreter (``sys.executable``).
            Defaults to False.
        **kwargs: More arguments of ``subprocess.Popen`` (``cwd``, ``env``).

    Returns:
        subprocess.CompletedProcess: The finished process; its return code
        is not checked.
    """
    cmd = [sys.executable, *cmd] if python else list(cmd)
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs)
    with process:
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process_group(process)
            stdout, _ = process.communicate()
            pytest.fail(f'{" ".join(cmd)} still running after {timeout} s; '
                        f'its process group was killed. Output:\n'
                        f'{stdout[-6000:]}')
        finally:
            kill_process_group(process)
    return subprocess.CompletedProcess(cmd, process.returncode, stdout)


def run_in_process_group(rank: int, worker: Callable[..., None], port: int,
                         world_size: int, timeout: float, deadline: float,
                         args: Sequence[Any]) -> None:
    """Run ``worker(rank, *args)`` in a gloo process group, then tear the
    group down in the one safe order.

    The group is started with a collective timeout of ``timeout`` seconds,
    so a collective that waits for a rank that died or deadlocked raises on
    the ranks still alive. When the worker returns (or raises: its
    traceback's frames are cleared) its locals, the DDP wrapper among
    them, are gone; the teardown then fails if any DDP wrapper is still
    alive, naming what holds it (:func:`gskd_mm.utils.ddp_wrapper_holders`),
    and otherwise waits at a barrier and destroys the group.

    Args:
        rank (int): This process's rank.
        worker (Callable): Module-level function ``(rank, *args)``.
        port (int): Rendezvous port on 127.0.0.1.
        world_size (int): Number of processes.
        timeout (float): Collective timeout in seconds.
        deadline (float): Seconds after which a worker still running prints
            where each of its threads is (to stderr, which the test shows),
            just before :func:`spawn_with_deadline` kills it.
        args (Sequence): The worker's arguments after ``rank``.
    """
    faulthandler.dump_traceback_later(deadline, exit=False)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group(
        'gloo',
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout))
    try:
        worker(rank, *args)
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)
        raise
    finally:
        destroy_process_group()
        faulthandler.cancel_dump_traceback_later()


def spawn_with_deadline(worker: Callable[..., None],
                        args: Sequence[Any],
                        nprocs: int = 2,
                        timeout: float = 300,
                        collective_timeout: float = 60,
                        port: Optional[int] = None) -> None:
    """Run ``worker(rank, *args)`` in ``nprocs`` processes of one gloo
    process group (:func:`run_in_process_group`).

    A worker's exception fails the test with its traceback; workers still
    running after ``timeout`` seconds are killed and the test fails instead
    of hanging the run. Every worker is killed and joined on the way out,
    whatever ends the test.

    Args:
        worker (Callable): Module-level function ``(rank, *args)``. It must
            not keep a DDP wrapper beyond its return (in a global, say):
            the teardown fails, naming the holder.
        args (Sequence): Its arguments after ``rank``.
        nprocs (int): Number of processes. Defaults to 2.
        timeout (float): Seconds for all of them. Defaults to 300.
        collective_timeout (float): Seconds a collective may wait for the
            other ranks. Defaults to 60.
        port (int, optional): Rendezvous port. Defaults to a free one.
    """
    port = free_port() if port is None else port
    context = mp.spawn(
        run_in_process_group,
        args=(worker, port, nprocs, collective_timeout, max(timeout - 5, 1),
              tuple(args)),
        nprocs=nprocs,
        join=False)
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=max(deadline - time.monotonic(), 1)):
            if time.monotonic() > deadline:
                pytest.fail(f'workers still running after {timeout} s')
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
        for process in context.processes:
            process.join()
