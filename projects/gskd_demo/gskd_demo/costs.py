# Copyright (c) gskd-mm contributors. All rights reserved.
"""What a training step of each demo method costs, over the student's own.

The compute-matched runs give no KD the iterations a distillation run's
time buys. The ratio is measured once, on the machine the study runs on,
and fixed before the runs (``projects/gskd_demo/step_costs.json``): the
mean CPU time of a whole training iteration (the batch's loading, the
hooks, the step: :attr:`RunResult.iteration_ms`), median over a few seeds,
each run on one CPU thread. CPU time, not wall time: it is the compute a
single-threaded run spends, and other jobs on the machine change it much
less.
"""
import datetime
import platform
import statistics
import tempfile
from typing import Dict, Sequence

import torch

from .methods import NO_KD, MethodKey
from .pipeline import run_demo

#: Seeds and iterations of the measurement.
COST_SEEDS = 3
COST_ITERS = 150


def cpu_name() -> str:
    """The CPU's model name, as the kernel reports it."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_costs(methods: Sequence[MethodKey], work_dir: str,
                  teacher_iters: int, num_train: int, num_val: int) -> Dict:
    """Time every method's training iteration against no KD's.

    Every method trains :data:`COST_ITERS` iterations for seeds
    ``0 .. COST_SEEDS - 1`` in this process, one run at a time, in a fresh
    directory (no stored run is reused: their times may come from a busy
    machine).

    Args:
        methods (Sequence[MethodKey]): The methods; no KD is added.
        work_dir (str): Where the fresh runs go (a new directory inside).
        teacher_iters (int): The teacher's iterations (cached).
        num_train (int): Training images.
        num_val (int): Validation images.

    Returns:
        dict: When and where it was measured, and per method its
        ``iteration_ms`` (median over seeds of a run's mean) and ``ratio``
        (over no KD's).
    """
    methods = [NO_KD] + [m for m in methods if m != NO_KD]
    out_dir = tempfile.mkdtemp(prefix='run-', dir=work_dir)
    summary = run_demo(methods, COST_SEEDS, COST_ITERS, teacher_iters, 4, 8,
                       num_train, num_val, out_dir)
    times = {
        str(key): statistics.median(r.iteration_ms for r in method.runs)
        for key, method in summary.methods.items()
    }
    return dict(
        measured=datetime.date.today().isoformat(),
        cpu=cpu_name(),
        torch=torch.__version__,
        threads=1,
        seeds=COST_SEEDS,
        iters=COST_ITERS,
        what='mean CPU milliseconds of a whole training iteration (batch, '
        'hooks, step), median over seeds; ratio over no KD',
        methods={
            key: dict(iteration_ms=ms, ratio=ms / times['no_kd'])
            for key, ms in times.items()
        })
