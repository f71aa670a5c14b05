# Copyright (c) gskd-mm contributors. All rights reserved.
"""One run of the CPU demo, with the MMEngine Runner.

A student run trains one method for one seed and stores its result; runs
of one seed are paired: every method starts from the same student weights
(written once per seed, loaded through the student's ``init_cfg``) and
sees the same batches in the same order; a :class:`~.RunFingerprintHook`
checks both. Every run is timed, fingerprinted, its gradient shares
recorded and its trained student's structural gaps measured. Also the
set-up of a process that runs the demo (its logger, warning filters).
"""
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import os
import os.path as osp
import time
import warnings
from typing import Dict, Iterator, NamedTuple, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, set_random_seed

from gskd_mm.analysis import TermGradients, structural_gaps
from gskd_mm.engine import GradientShareBalancerHook, LossGradientHook
from gskd_mm.utils import register_all_modules

from .methods import (MethodKey, balancer_hook, load_config, method_spec,
                      student_model_cfg)
from .results import RunResult, to_json
from .run_fingerprint_hook import RunFingerprintHook
from .step_timer_hook import StepTimerHook
from .teacher_cache import cache_root, cached_config, make_cache

# The demo's own logger: the runs' loggers are quieter.
LOGGER = 'gskd_demo'
# Log lines of MMEngine/MMSeg that say nothing about the demo.
NOISE = ('The prefix is not set in metric class', '"FileClient" will be',
         '"HardDiskBackend" is the alias')


class QuietFilter(logging.Filter):
    """Drop known, harmless log lines of MMEngine and MMSeg."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(NOISE)


def setup_process() -> None:
    """Set up a process that runs the demo: the modules registered, known
    warnings of MMSeg and mmcv off, the demo's logger (quiet filter on)."""
    warnings.filterwarnings('ignore', category=UserWarning, module='mmseg')
    warnings.filterwarnings('ignore', category=UserWarning, module='mmcv')
    # A spawned worker's Runner sets the configs' start method (`fork`,
    # for data workers it never starts: the runs load data in-process).
    warnings.filterwarnings(
        'ignore',
        message='Multi-processing start method',
        category=UserWarning)
    register_all_modules(init_default_scope=False)
    MMLogger.get_instance(LOGGER, log_level='INFO').addFilter(QuietFilter())


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Train on one CPU thread inside the context.

    The demo's runs are reproducible only at a fixed thread count: the
    count changes the order of floating-point sums, hence the training.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def quiet_init() -> Iterator[None]:
    """MMEngine's current logger at WARNING inside: ``init_weights`` logs
    every parameter's initialisation at INFO."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def write_student_init(cfg: Config, seed: int, out_file: str) -> str:
    """Initialise the config's student with a seed and save its weights.

    Args:
        cfg (Config): A demo config (its student is initialised).
        seed (int): Seed of the initialisation.
        out_file (str): Checkpoint file to write.

    Returns:
        str: ``out_file``.
    """
    set_random_seed(seed)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(student_model_cfg(cfg))
    with quiet_init():
        model.init_weights()
    os.makedirs(osp.dirname(out_file), exist_ok=True)
    torch.save(model.state_dict(), out_file)
    return out_file


def build_runner(cfg: Config, work_dir: str, name: str,
                 log_level: str) -> Runner:
    """The MMEngine Runner of one demo run, its known noise filtered."""
    cfg.work_dir = work_dir
    cfg.experiment_name = name
    cfg.log_level = log_level
    runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(QuietFilter())
    return runner


def train(cfg: Config,
          work_dir: str,
          name: str,
          log_level: str,
          teacher: Optional[torch.nn.Module] = None,
          gap_loader=None,
          progress: bool = False) -> RunResult:
    """Train (and validate) one config with the MMEngine Runner.

    Args:
        cfg (Config): The config.
        work_dir (str): Its work_dir.
        name (str): Experiment name (unique within the process).
        log_level (str): Log level of the run.
        teacher (nn.Module, optional): Teacher to measure the trained
            student's structural gap against (with ``gap_loader``).
        gap_loader (Iterable, optional): Validation batches of the gap.
        progress (bool): Show a progress bar of the training. Defaults to
            False (runs in parallel would write over each other's).

    Returns:
        RunResult: Its metrics, times, fingerprints, gradient shares (as
        :class:`~gskd_mm.engine.LossGradientHook` measures them on the
        first and last batch), the balancer's updates if it has one and,
        given a teacher, the structural gaps (:func:`measure_gaps`).
    """
    start = time.perf_counter()
    runner = build_runner(cfg, work_dir, name, log_level)
    timer = StepTimerHook(progress=progress)
    fingerprint = RunFingerprintHook()
    # The first iteration (the pull on the initial student) and the last.
    gradients = LossGradientHook(interval=cfg.train_cfg.max_iters)
    for hook in (timer, fingerprint, gradients):
        runner.register_hook(hook)
    runner.train()
    wall = time.perf_counter() - start
    result = run_result(cfg, runner, timer, fingerprint, gradients, wall)
    if teacher is not None:
        result = dataclasses.replace(
            result, **measure_gaps(runner.model, teacher, gap_loader))
    del runner
    return result


def run_result(cfg: Config, runner: Runner, timer: StepTimerHook,
               fingerprint: RunFingerprintHook, gradients: LossGradientHook,
               wall: float) -> RunResult:
    """A trained run's result, from its config, runner and hooks
    (``wall``: its seconds), without the structural gaps."""
    # Steady state: the first steps (allocations, lazy init) are left out.
    skip = min(5, len(timer.iter_times) - 1)
    result = RunResult(
        miou=float(timer.metrics['mIoU']),
        metrics=timer.metrics,
        wall_s=wall,
        iter_ms=1e3 * float(np.median(timer.iter_times[skip:])),
        iteration_ms=1e3 * float(np.mean(timer.loop_times[skip:-1] or
                                         timer.loop_times)),
        gskd_ms=1e3 * float(np.median(timer.loss_times[skip:])),
        student_digest=fingerprint.student_digest,
        data_digest=fingerprint.data_digest,
        checkpoint=osp.join(runner.work_dir,
                            f'iter_{cfg.train_cfg.max_iters}.pth'),
        scalars=osp.join(runner.log_dir, 'vis_data', 'scalars.json'),
        iters=cfg.train_cfg.max_iters,
        grad_norms=stored_gradients(gradients.initial),
        grad_norms_last=stored_gradients(gradients.last),
        gskd_grad_share=gskd_share(gradients.initial))
    for hook in runner.hooks:
        if isinstance(hook, GradientShareBalancerHook):
            result.balancer = copy.deepcopy(list(hook.history))
    return result


def stored_gradients(gradients: TermGradients) -> Optional[TermGradients]:
    """Gradient norms as a run's result keeps them: a copy, in a plain
    dict (None: not measured)."""
    return copy.deepcopy(dict(gradients)) if gradients else None


def gskd_share(gradients: TermGradients) -> Optional[float]:
    """The GSKD term's share of the task loss's gradient, if it has one."""
    return next((g.share for term, g in gradients.items()
                 if term.endswith('loss_gskd')), None)


def measure_gaps(model: torch.nn.Module, teacher: torch.nn.Module,
                 gap_loader) -> Dict[str, Optional[float]]:
    """The structural gaps of a trained student to the teacher.

    Args:
        model (nn.Module): The trained model: a distiller (its
            ``architecture`` is the student) or a segmentor.
        teacher (nn.Module): The teacher, in eval mode.
        gap_loader (Iterable): Validation batches.

    Returns:
        dict: ``gap`` and ``gap_cos`` (descriptor KL and mean absolute
        cosine difference, :func:`structural_gaps`) of the student's own
        features; ``gap_proj`` and ``gap_proj_cos`` of its features after
        the recipe's ``gskd_projector`` (where GSKD matches them), None for
        recipes without one (a base recipe's projected gap is undefined).
    """
    model.eval()
    student = getattr(model, 'architecture', model)
    # The teacher is the same for every run of the process: its side is
    # computed once.
    own = structural_gaps(student, teacher, gap_loader, cache_teacher=True)
    connectors = getattr(getattr(model, 'distiller', None), 'connectors', {})
    projector = connectors['gskd_projector'] \
        if 'gskd_projector' in connectors else None
    proj = None if projector is None else structural_gaps(
        student, teacher, gap_loader, projector=projector,
        cache_teacher=True)
    return dict(
        gap=own.kl,
        gap_cos=own.cos,
        gap_proj=None if proj is None else proj.kl,
        gap_proj_cos=None if proj is None else proj.cos)


def num_params(cfg: Config) -> Dict[str, int]:
    """Parameters of student, teacher and projectors of a distill config."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        cfg = cfg.copy()
        cfg.model.teacher_ckpt = None
        model = MODELS.build(cfg.model)
    counts = dict(
        student=sum(p.numel() for p in model.architecture.parameters()),
        teacher=sum(p.numel() for p in model.teacher.parameters()))
    for name, connector in model.distiller.connectors.items():
        counts[name] = sum(p.numel() for p in connector.parameters())
    return counts


def run_fingerprint(cfg: Config, init: str) -> str:
    """What decides a run's result: its full config and initial weights.

    A finished run whose stored fingerprint equals this is not run again
    (resuming a stopped demo or sweep).
    """
    digest = hashlib.sha1(cfg.pretty_text.encode())
    with open(init, 'rb') as f:
        digest.update(hashlib.sha1(f.read()).digest())
    return digest.hexdigest()


class RunContext(NamedTuple):
    """What every student run of a demo shares.

    Attributes:
        iters (int): Iterations per run.
        batch_size (int): Training batch size.
        out_dir (str): The demo's output directory.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        teacher_ckpt (str): The teacher's checkpoint.
        log_level (str): Log level of the runs.
    """
    iters: int
    batch_size: int
    out_dir: str
    data_root: str
    generate_cfg: dict
    teacher_ckpt: str
    log_level: str


def student_init_file(ctx: RunContext, seed: int) -> str:
    """The initial student weights of a seed (shared by its runs)."""
    return osp.join(ctx.out_dir, 'init', f'student_seed{seed}.pth')


def run_config(ctx: RunContext, key: MethodKey, seed: int) -> Config:
    """The config of one method's run for one seed (without its initial
    weights).

    A cached method's recipe is switched to its teacher cache
    (:func:`.teacher_cache.cached_config`); the cache must have been made
    (:func:`prepare_caches`).

    Args:
        ctx (RunContext): The demo's shared settings.
        key (MethodKey): The method.
        seed (int): The seed.

    Returns:
        Config: The run's config.
    """
    spec = method_spec(key)
    cfg = load_config(spec.config, ctx.data_root, ctx.generate_cfg,
                      spec.iters or ctx.iters, ctx.batch_size, seed)
    if spec.loss_gskd is not None:
        cfg.model.distiller.distill_losses.loss_gskd.update(spec.loss_gskd)
    balancer = balancer_hook(spec, cfg)
    if balancer is not None:
        cfg.custom_hooks = [balancer, *cfg.get('custom_hooks', [])]
    if 'teacher_ckpt' in cfg.model:
        cfg.model.teacher_ckpt = ctx.teacher_ckpt
    if spec.cached:
        cfg = cached_config(
            cfg, cache_root(ctx.teacher_ckpt, ctx.generate_cfg, spec.config))
    return cfg


def prepare_caches(ctx: RunContext,
                   methods) -> Dict[MethodKey, Dict[str, float]]:
    """Make the teacher cache of every cached method (once; see
    :func:`.teacher_cache.make_cache`), before the runs, so that parallel
    runs only read it.

    Args:
        ctx (RunContext): The demo's shared settings.
        methods (Iterable[MethodKey]): The methods of the demo.

    Returns:
        dict[MethodKey, dict]: Per cached method, its pass's cost.
    """
    costs = {}
    for key in methods:
        if key.cached:
            spec = method_spec(key)
            cfg = run_config(ctx, key.online.at(None), 0)
            root = cache_root(ctx.teacher_ckpt, ctx.generate_cfg,
                              spec.config)
            costs[key] = make_cache(cfg, root)
    return costs


def student_run(ctx: RunContext, key: MethodKey, seed: int,
                teacher: torch.nn.Module,
                gap_loader) -> Tuple[RunResult, bool]:
    """Train one method for one seed, or reuse its stored result.

    The run loads its seed's initial weights (:func:`student_init_file`,
    written before), and its result is stored beside it
    (``runs/<key>/seed<k>/result.json``); a stored result with the same
    config and initial weights (:func:`run_fingerprint`) is returned as is.

    Args:
        ctx (RunContext): The demo's shared settings.
        key (MethodKey): The method.
        seed (int): The seed.
        teacher (nn.Module): The teacher, to measure the structural gaps.
        gap_loader (Iterable): Validation batches of the gaps.

    Returns:
        tuple[RunResult, bool]: The :func:`train` result (with ``seed`` and
        ``fingerprint``), and whether it was stored before.
    """
    init = student_init_file(ctx, seed)
    cfg = run_config(ctx, key, seed)
    student_model_cfg(cfg).init_cfg = dict(type='Pretrained', checkpoint=init)
    work_dir = osp.join(ctx.out_dir, 'runs', str(key), f'seed{seed}')
    stored = osp.join(work_dir, 'result.json')
    fingerprint = run_fingerprint(cfg, init)
    if osp.isfile(stored):
        with open(stored) as f:
            result = RunResult.from_json(json.load(f))
        if result is not None and result.fingerprint == fingerprint:
            return result, True
    result = train(
        cfg,
        work_dir,
        f'demo_{key}_seed{seed}_{os.getpid()}',
        ctx.log_level,
        teacher=teacher,
        gap_loader=gap_loader)
    result.seed, result.fingerprint = seed, fingerprint
    with open(stored, 'w') as f:
        json.dump(to_json(result), f, indent=2)
    return result, False
