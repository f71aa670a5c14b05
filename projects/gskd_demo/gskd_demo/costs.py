# Copyright (c) gskd-mm contributors. All rights reserved.
"""What a training step of each demo method costs, over the student's own.

The compute-matched runs give no KD the iterations a distillation run's
compute buys. The cost is the library's step cost
(:mod:`gskd_mm.analysis.step_cost`): the CPU time of whole training
iterations (the batch's loading, the hooks, the step:
:attr:`RunResult.iteration_ms`) on one thread, over no KD's, in repeats
that interleave the methods, with a 95 % interval. It is measured once, on
the machine the study runs on, and fixed before the runs
(``projects/gskd_demo/step_costs.json``).
"""
import datetime
import json
import os
import os.path as osp
import platform
import subprocess
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from gskd_mm.analysis.step_cost import cost_ratio

from .methods import NO_KD, MethodKey, method_spec
from .pipeline import run_demo
from .results import DemoSummary
from .teacher_cache import PASS_FILE, cache_root

#: Interleaved repeats, and iterations of every run, of the measurement.
COST_REPEATS = 12
COST_ITERS = 80


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


def code_commit() -> str:
    """The checked-out commit of the code (``unknown`` outside git)."""
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                              capture_output=True, text=True, check=True,
                              cwd=os.path.dirname(__file__),
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def _time_repeats(methods: List[MethodKey], work_dir: str,
                  teacher_iters: int, num_train: int, num_val: int,
                  repeats: int, iters: int
                  ) -> Tuple[Dict[MethodKey, List[float]],
                             Optional[DemoSummary]]:
    """Train every method in every repeat, the order rotated by one.

    Returns:
        tuple: Per method its iteration times (ms) per repeat, and the last
        repeat's :class:`DemoSummary`.
    """
    times: Dict[MethodKey, List[float]] = {key: [] for key in methods}
    summary = None
    for repeat in range(repeats):
        shift = repeat % len(methods)
        order = methods[shift:] + methods[:shift]
        out_dir = tempfile.mkdtemp(prefix=f'repeat{repeat}-', dir=work_dir)
        summary = run_demo(order, 1, iters, teacher_iters, 4, 8, num_train,
                           num_val, out_dir)
        for key, method in summary.methods.items():
            times[key].append(method.runs[0].iteration_ms)
    return times, summary


def _cache_passes(methods: List[MethodKey], summary: DemoSummary,
                  no_kd_s: float) -> Dict[MethodKey, Dict]:
    """Each cached method's one-off cache pass, in no-KD iterations."""
    passes = {}
    for key in methods:
        if key.cached:
            with open(osp.join(
                    cache_root(summary.teacher.checkpoint,
                               summary.dataset.generate_cfg,
                               method_spec(key).config), PASS_FILE)) as f:
                made = json.load(f)
            passes[key] = dict(
                pass_cpu_s=made['cpu_s'],
                pass_iters=made['cpu_s'] / no_kd_s,
                pass_images=made['images'])
    return passes


def _cost_record(times: Dict[MethodKey, List[float]],
                 passes: Dict[MethodKey, Dict], repeats: int,
                 iters: int) -> Dict:
    """The measurement with its provenance (see :func:`measure_costs`)."""
    return dict(
        measured=datetime.date.today().isoformat(),
        commit=code_commit(),
        cpu=cpu_name(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        threads=1,
        seed=0,
        repeats=repeats,
        iters=iters,
        what='step cost (gskd_mm.analysis.step_cost): mean CPU time of a '
        'whole training iteration (batch, hooks, step) on one thread, over '
        'no KD\'s; geometric mean of the per-repeat ratios, 95 % t '
        'interval on the log ratio; methods interleaved in every repeat',
        methods={
            str(key): dict(
                iteration_ms=sum(ms) / len(ms),
                iteration_ms_repeats=ms,
                **cost_ratio(times[NO_KD], ms).to_dict(),
                **passes.get(key, {}))
            for key, ms in times.items()
        })


def measure_costs(methods: Sequence[MethodKey],
                  work_dir: str,
                  teacher_iters: int,
                  num_train: int,
                  num_val: int,
                  repeats: int = COST_REPEATS,
                  iters: int = COST_ITERS) -> Dict:
    """Time every method's training iteration against no KD's.

    Every repeat trains every method for ``iters`` iterations (seed 0, one
    run at a time, one thread, in a fresh directory: no stored run is
    reused), the methods in an order rotated by one each repeat, so that a
    change in the machine's load falls on all of them alike. The ratio of a
    method is taken within each repeat (its mean iteration over no KD's)
    and combined over repeats (:func:`~gskd_mm.analysis.step_cost.
    cost_ratio`). A cached method's one-off cache pass (made before the
    first repeat's runs, :func:`.teacher_cache.make_cache`) is given in
    no-KD iterations: the pass's CPU time over the mean no-KD iteration
    (``pass_cpu_s``, ``pass_iters``).

    Args:
        methods (Sequence[MethodKey]): The methods; no KD is added.
        work_dir (str): Where the fresh runs go (new directories inside).
        teacher_iters (int): The teacher's iterations (cached).
        num_train (int): Training images.
        num_val (int): Validation images.
        repeats (int): Interleaved repeats. Defaults to
            :data:`COST_REPEATS`.
        iters (int): Iterations of every run. Defaults to
            :data:`COST_ITERS`.

    Returns:
        dict: Provenance (date, commit, CPU, threads, repeats, iterations)
        and per method its ``iteration_ms`` per repeat and its ``ratio``,
        ``low`` and ``high`` over no KD's; a cached method also its
        ``pass_cpu_s``, ``pass_iters`` and ``pass_images`` (the training
        images of the pass).
    """
    methods = [NO_KD] + [m for m in methods if m != NO_KD]
    times, summary = _time_repeats(methods, work_dir, teacher_iters,
                                   num_train, num_val, repeats, iters)
    no_kd_s = sum(times[NO_KD]) / len(times[NO_KD]) / 1000
    passes = _cache_passes(methods, summary, no_kd_s)
    return _cost_record(times, passes, repeats, iters)
