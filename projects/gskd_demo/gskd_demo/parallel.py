# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's paired runs: every method for every seed.

A narrower student is trained without distillation and with every recipe
of ``projects/gskd_demo/configs``, for several seeds, paired by seed
(:func:`.training.student_run`). For each seed the student's initial
weights are written once; the runs are shared out among spawned worker
processes, each training on one CPU thread.
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log

from gskd_mm.analysis import structural_gaps
from gskd_mm.apis import init_student

from .methods import STUDENT_CONFIG, MethodKey, load_config, method_spec
from .results import RunResult
from .teacher import teacher_and_gap_loader
from .training import (LOGGER, RunContext, one_thread, setup_process,
                       student_init_file, student_run, write_student_init)


def run_summary(result: RunResult, before: bool) -> str:
    """One log line of a finished run."""
    if before:
        return f'done before (mIoU {result.miou:.2f})'
    share = result.gskd_grad_share
    return (f'mIoU {result.miou:.2f}, structural gap {result.gap:.4f} '
            f'(cos {result.gap_cos:.4f})'
            + ('' if share is None else f', GSKD grad share {share:.3g}')
            + f', {result.wall_s:.0f} s')


# A worker process's teacher and gap loader, built once per process.
_WORKER: dict = {}


def _init_worker(ctx: RunContext) -> None:
    """Set up a worker process of :func:`student_runs` (spawned: nothing
    of the parent is inherited)."""
    torch.set_num_threads(1)
    setup_process()
    _WORKER['ctx'] = ctx
    _WORKER['teacher'], _WORKER['gap_loader'] = teacher_and_gap_loader(ctx)


def _worker_run(
        job: Tuple[MethodKey, int]) -> Tuple[MethodKey, int, RunResult, bool]:
    """Run one (method, seed) job in a worker process."""
    key, seed = job
    result, before = student_run(_WORKER['ctx'], key, seed,
                                 _WORKER['teacher'], _WORKER['gap_loader'])
    return key, seed, result, before


def student_runs(
    methods: List[MethodKey],
    seeds: int,
    ctx: RunContext,
    workers: int = 1,
    on_seed_done: Optional[Callable] = None
) -> Tuple[Dict[MethodKey, List[RunResult]], List[Dict[str, float]]]:
    """Train every method for every seed, paired by seed.

    For each seed the student's initial weights are written once and every
    method's student loads them (``init_cfg``); every run also measures
    its trained student's structural gaps to the teacher
    (:func:`measure_gaps`, on the validation images). A run's result is
    stored beside it (``result.json``); a run whose stored result has the
    same config and initial weights is not run again.

    Every run uses one CPU thread (a thread count changes the order of
    floating-point sums, hence the training), so a run's result does not
    depend on ``workers``: with more than 1, the runs are shared out among
    as many spawned processes (a test checks that the results are the
    same).

    Args:
        methods (list[MethodKey]): The methods.
        seeds (int): Seeds ``0 .. seeds - 1``.
        ctx (RunContext): The settings every run shares.
        workers (int): Processes that train in parallel. Defaults to 1
            (every run in this process).
        on_seed_done (Callable, optional): Called with the runs and initial
            gaps so far after every seed (e.g. to save them).

    Returns:
        tuple[dict[MethodKey, list[RunResult]], list[dict]]: Per method,
        the :func:`train`
        result of every seed (with ``seed``); per seed, the structural gaps
        (``kl``, ``cos``) of the initial student (before training).
    """
    if workers < 1:
        raise ValueError(f'workers must be >= 1, got {workers}')
    with one_thread():
        return _student_runs(methods, seeds, ctx, workers, on_seed_done)


def _student_runs(methods: List[MethodKey], seeds: int, ctx: RunContext,
                  workers: int, on_seed_done: Optional[Callable]) -> tuple:
    """:func:`student_runs` on one thread."""
    teacher, gap_loader = teacher_and_gap_loader(ctx)
    student_cfg = load_config(STUDENT_CONFIG, ctx.data_root, ctx.generate_cfg,
                              1, 1, 0)
    init_gaps = []
    for seed in range(seeds):
        init = write_student_init(student_cfg, seed,
                                  student_init_file(ctx, seed))
        gap = structural_gaps(
            init_student(student_cfg, init),
            teacher,
            gap_loader,
            cache_teacher=True)
        init_gaps.append(dict(kl=gap.kl, cos=gap.cos))
    jobs = [(key, seed) for seed in range(seeds) for key in methods]
    results: Dict[Tuple[MethodKey, int], RunResult] = {}
    finished = 0  # seeds 0 .. finished - 1 have every method's result

    def collect(num_seeds: int) -> Dict[MethodKey, List[RunResult]]:
        return {
            key: [results[key, s] for s in range(num_seeds)]
            for key in methods
        }

    def report(key: MethodKey, seed: int, result: RunResult,
               before: bool) -> None:
        nonlocal finished
        results[key, seed] = result
        print_log(
            f'[{len(results)}/{len(jobs)}] student '
            f'{method_spec(key).label}, seed {seed}: '
            + run_summary(result, before),
            logger=LOGGER)
        count = finished
        while count < seeds and all((k, count) in results for k in methods):
            count += 1
        if count > finished and on_seed_done is not None:
            on_seed_done(collect(count), init_gaps[:count])
        finished = count

    if workers == 1:
        for key, seed in jobs:
            report(key, seed, *student_run(ctx, key, seed, teacher,
                                           gap_loader))
    else:
        pool = torch.multiprocessing.get_context('spawn').Pool(
            workers, _init_worker, (ctx, ))
        with pool:
            for key, seed, result, before in pool.imap_unordered(
                    _worker_run, jobs):
                report(key, seed, result, before)
    return collect(seeds), init_gaps
