# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run a measurement in a child process, and measure peak memory.

The benchmark tools measure each variant in a fresh process, so that its
peak memory is its own: :func:`run_measurement` runs the child, and
:class:`PeakMemory` is the one way they measure memory.
"""
import json
import os
import signal
import subprocess
import sys
from typing import Optional, Sequence, Tuple

import torch

from ..utils.process_group import kill_process_tree

#: Seconds one isolated measurement may take before its process group is
#: killed and :class:`MeasurementError` raised.
MEASUREMENT_TIMEOUT = 3600.0


class MeasurementError(RuntimeError):
    """A measurement's child process failed, overran its time or printed no
    JSON line."""


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


def run_in_session(cmd: Sequence[str],
                   timeout: float,
                   merge_stderr: bool = False,
                   **kwargs) -> Tuple[subprocess.CompletedProcess, bool]:
    """Run a command that leads a new session, and kill its whole process
    group when it overruns ``timeout`` and on the way out.

    Args:
        cmd (Sequence[str]): The command.
        timeout (float): Seconds before its process group is killed.
        merge_stderr (bool): Merge its stderr into its stdout. Defaults to
            False.
        **kwargs: More arguments of ``subprocess.Popen`` (``cwd``, ``env``).

    Returns:
        tuple[CompletedProcess, bool]: The finished process (text output,
        its return code unchecked) and whether it overran ``timeout``.
    """
    process = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs)
    timed_out = False
    with process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_process_group(process)
            stdout, stderr = process.communicate()
        finally:
            kill_process_group(process)
    return subprocess.CompletedProcess(
        list(cmd), process.returncode, stdout, stderr), timed_out


def run_measurement(args: Sequence[str],
                    timeout: float = MEASUREMENT_TIMEOUT,
                    env: Optional[dict] = None) -> dict:
    """Run ``python *args`` in a new session and read back the JSON object
    that it prints last.

    Args:
        args (Sequence[str]): The script and its arguments; this
            interpreter (``sys.executable``) runs them.
        timeout (float): Seconds before the child's whole process group is
            killed. Defaults to :data:`MEASUREMENT_TIMEOUT`.
        env (dict, optional): The child's environment. Defaults to this
            process's.

    Returns:
        dict: The last line of the child's stdout, parsed as JSON.

    Raises:
        MeasurementError: The child overran ``timeout``, exited with an
            error or its last line is not JSON; the message holds the end of
            its stderr.

    Note:
        Whatever ends the call (the timeout, an interrupt) kills the
        child's process group, so no worker outlives the measurement.
    """
    cmd = [sys.executable, *map(str, args)]
    result, timed_out = run_in_session(cmd, timeout, env=env)
    if timed_out:
        raise MeasurementError(f'{" ".join(cmd)} still running after '
                               f'{timeout:g} s; its process group was '
                               'killed')
    stdout, stderr = result.stdout, result.stderr
    if result.returncode != 0:
        raise MeasurementError(
            f'{" ".join(cmd)} exited with {result.returncode}:\n'
            f'{stderr[-4000:]}')
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise MeasurementError(
            f'{" ".join(cmd)} printed no JSON line last:\n{stdout[-2000:]}'
            f'\n{stderr[-2000:]}') from None


def _proc_status_mb(field: str) -> float:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), MB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise MeasurementError(f'/proc/self/status has no {field}')


class PeakMemory:
    """Measure the peak memory of the block it wraps.

    On CUDA the peak is ``torch.cuda.max_memory_allocated``; on a CPU it is
    the process's peak resident memory (Linux's ``VmHWM``, reset at entry
    through ``/proc/self/clear_refs``).

    Args:
        device (str): The torch device measured. Defaults to ``'cpu'``.

    Attributes:
        start_mb (float): Memory held at entry, MB.
        peak_mb (float): Peak memory during the block, MB (after the exit).
        growth_mb (float): ``peak_mb - start_mb``: what the block added to
            what the process held before it (its inputs, say).

    Examples:
        >>> with PeakMemory('cpu') as memory:
        ...     run_the_step()
        >>> memory.growth_mb
    """

    def __init__(self, device: str = 'cpu') -> None:
        self.cuda = str(device).startswith('cuda')
        self.start_mb = self.peak_mb = 0.0

    def __enter__(self) -> 'PeakMemory':
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_mb = torch.cuda.memory_allocated() / 2**20
        else:
            try:  # '5' resets the peak resident set size (Linux >= 4.0)
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
            except OSError as error:
                raise MeasurementError(
                    f'cannot reset the peak resident memory ({error}): '
                    'peak memory on a CPU needs Linux\'s '
                    '/proc/self/clear_refs') from None
            self.start_mb = _proc_status_mb('VmRSS')
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.peak_mb = _proc_status_mb('VmHWM')

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb
