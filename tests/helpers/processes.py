# Copyright (c) gskd-mm contributors. All rights reserved.
"""Subprocesses and multi-process (gloo) runs that cannot hang a test run."""
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Sequence

import pytest
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_with_deadline(cmd: Sequence[str],
                      timeout: float,
                      python: bool = False,
                      **kwargs) -> subprocess.CompletedProcess:
    """Run a command, its stderr merged into its stdout (text).

    Args:
        cmd (Sequence[str]): The command.
        timeout (float): Seconds before it is killed
            (``subprocess.TimeoutExpired``).
        python (bool): Prepend this interpreter (``sys.executable``).
            Defaults to False.
        **kwargs: More arguments of ``subprocess.run`` (``cwd``, ``env``).

    Returns:
        subprocess.CompletedProcess: The finished process; its return code
        is not checked.
    """
    cmd = [sys.executable, *cmd] if python else list(cmd)
    return subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        **kwargs)


def spawn_with_deadline(worker: Callable[..., None],
                        args: Sequence[Any],
                        nprocs: int = 2,
                        timeout: float = 300,
                        port: Optional[int] = None) -> None:
    """Run ``worker(rank, port, *args)`` in ``nprocs`` processes.

    The workers set up their own process group (gloo on a CPU) on
    ``127.0.0.1:port``. A worker's exception fails the test with its
    traceback; workers still running after ``timeout`` seconds (a
    collective waiting for a rank that died, or a deadlock) are killed and
    the test fails instead of hanging the run.

    Args:
        worker (Callable): Module-level function ``(rank, port, *args)``.
        args (Sequence): Its arguments after ``rank`` and ``port``.
        nprocs (int): Number of processes. Defaults to 2.
        timeout (float): Seconds for all of them. Defaults to 300.
        port (int, optional): Rendezvous port. Defaults to a free one.
    """
    port = free_port() if port is None else port
    context = mp.spawn(
        worker, args=(port, *args), nprocs=nprocs, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=max(deadline - time.monotonic(), 1)):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f'workers still running after {timeout} s')
