# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's runs: teacher, paired student runs, structural gaps.

On the built-in Synthetic Scenes data, a DeepLabV3-R18 teacher is trained
once (cached, keyed by its config and the data), then a narrower student is
trained without distillation and with every recipe of
``projects/gskd_demo/configs``, for several seeds. Runs of one seed are
paired: every method starts from the same student weights (written once
per seed, loaded through the student's ``init_cfg``) and sees the same
batches in the same order; a :class:`~.RunFingerprintHook` checks both.
"""
import contextlib
import copy
import hashlib
import json
import logging
import os
import os.path as osp
import time
import warnings
from typing import (Callable, Dict, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple)

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger, print_log
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, set_random_seed

from gskd_mm.apis import init_student
from gskd_mm.utils import load_state_dict, register_all_modules

from . import synthetic
from .gradient_share_hook import GradientShareHook, gskd_share
from .run_fingerprint_hook import RunFingerprintHook
from .step_timer_hook import StepTimerHook
from .structural_gap import structural_gaps

TEACHER_CONFIG = 'deeplabv3_r18-w16-d4_synthetic-64x64.py'
STUDENT_CONFIG = 'deeplabv3_r18-w8-d4_synthetic-64x64.py'
PAIR = 'deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py'
# key: (label, config); the first is the student without distillation.
METHODS = {
    'no_kd': ('no KD', STUDENT_CONFIG),
    'dist': ('DIST', f'dist_{PAIR}'),
    'dist_gskd': ('DIST + GSKD', f'dist-gskd_{PAIR}'),
    'cwd': ('CWD', f'cwd_{PAIR}'),
    'cwd_gskd': ('CWD + GSKD', f'cwd-gskd_{PAIR}'),
    'cirkd': ('CIRKD', f'cirkd_{PAIR}'),
    'cirkd_gskd': ('CIRKD + GSKD', f'cirkd-gskd_{PAIR}'),
}
# Each GSKD recipe and the recipe it adds GSKD to.
GSKD_PAIRS = {'dist_gskd': 'dist', 'cwd_gskd': 'cwd', 'cirkd_gskd': 'cirkd'}
# The GSKD variants of the sweep (``demo.py --sweep``), the one place they
# are defined: overrides of the GSKD recipe's `loss_gskd` (options of
# GSKDLoss) and, per base recipe, its loss weight. The weights are set from
# a target, not tuned on results: GSKD's gradient on the student about as
# large as the task cross-entropy's at the start of training (share ~100 %).
# Shares at weight 1, measured with tools/analysis_tools/loss_gradients.py
# on the demo's recipes (trained teacher, untrained student, 4 batches of
# 4): descriptor T 1: 28 / 25 / 24 % (DIST / CWD / CIRKD); row T 0.1:
# 8.1 / 7.9 / 7.1 %; row T 1: 18 / 18 / 16 %; the authors' loss: 0.24 /
# 0.20 / 0.22 % (T 4 for CIRKD). One weight per variant serves all bases.
GSKD_VARIANTS = {
    'gskd-desc':
    dict(
        label='GSKD-desc',
        options=dict(normalize='descriptor', exclude_diagonal=True, tau=1.0),
        loss_weight=dict(dist=4.0, cwd=4.0, cirkd=4.0)),
    'gskd-row':
    dict(
        label='GSKD-row',
        options=dict(normalize='row', exclude_diagonal=True, tau=0.1),
        loss_weight=dict(dist=13.0, cwd=13.0, cirkd=13.0)),
    'gskd-row-t1':
    dict(
        label='GSKD-row-t1',
        options=dict(normalize='row', exclude_diagonal=True, tau=1.0),
        loss_weight=dict(dist=6.0, cwd=6.0, cirkd=6.0)),
}
IMG_SIZE = 64
DATA_SEED = 0
TEACHER_SEED = 0
# Part of the teacher cache key: bump when what is cached changes.
TEACHER_CACHE_VERSION = 3
# The demo's own logger: the runs' loggers are quieter.
LOGGER = 'gskd_demo'
# Log lines of MMEngine/MMSeg that say nothing about the demo.
NOISE = ('The prefix is not set in metric class', '"FileClient" will be',
         '"HardDiskBackend" is the alias')


class MethodSpec(NamedTuple):
    """A student method of the demo or of its sweep.

    Attributes:
        label (str): Name in tables and figures.
        config (str): Config file in :func:`config_dir`.
        loss_gskd (dict | None): Overrides of the config's ``loss_gskd``
            (a sweep variant), else None.
        baseline (str | None): The method it is compared with, paired by
            seed (a GSKD recipe's base recipe), else None.
    """
    label: str
    config: str
    loss_gskd: Optional[dict]
    baseline: Optional[str]


def method_spec(key: str) -> MethodSpec:
    """The method of a key: one of :data:`METHODS`, or a sweep variant
    ``<base>_<variant>`` (a base of :data:`GSKD_PAIRS`, a variant of
    :data:`GSKD_VARIANTS`).

    Args:
        key (str): The method's key, e.g. ``'dist_gskd'``,
            ``'cwd_gskd-row'``.

    Returns:
        MethodSpec: Its label, config, overrides and baseline.

    Raises:
        ValueError: If the key names no method.
    """
    if key in METHODS:
        label, config = METHODS[key]
        return MethodSpec(label, config, None, GSKD_PAIRS.get(key))
    base, _, variant = key.partition('_')
    recipes = {b: g for g, b in GSKD_PAIRS.items()}
    if base in recipes and variant in GSKD_VARIANTS:
        spec = GSKD_VARIANTS[variant]
        overrides = dict(
            spec['options'], loss_weight=spec['loss_weight'][base])
        return MethodSpec(f'{METHODS[base][0]} + {spec["label"]}',
                          METHODS[recipes[base]][1], overrides, base)
    raise ValueError(
        f'unknown demo method {key!r}: choose from {list(METHODS)} or a '
        f'sweep variant <base>_<variant> with base in '
        f'{list(GSKD_PAIRS.values())} and variant in {list(GSKD_VARIANTS)}')


def sweep_methods(bases: Sequence[str] = ('dist', 'cwd', 'cirkd'),
                  variants: Optional[Sequence[str]] = None) -> List[str]:
    """The methods of the sweep: per base, the base recipe, it with the
    authors' GSKD, and it with every GSKD variant.

    Args:
        bases (Sequence[str]): Base recipes. Defaults to DIST, CWD, CIRKD.
        variants (Sequence[str], optional): Keys of
            :data:`GSKD_VARIANTS`. Defaults to all.

    Returns:
        list[str]: Method keys (see :func:`method_spec`).
    """
    recipes = {b: g for g, b in GSKD_PAIRS.items()}
    variants = list(GSKD_VARIANTS) if variants is None else list(variants)
    keys = []
    for base in bases:
        keys += [base, recipes[base]] + [f'{base}_{v}' for v in variants]
    for key in keys:
        method_spec(key)  # a clear error for a bad base or variant
    return keys


def config_dir() -> str:
    """The demo's configs, ``projects/gskd_demo/configs``."""
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'configs')


class QuietFilter(logging.Filter):
    """Drop known, harmless log lines of MMEngine and MMSeg."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(NOISE)


def load_config(name: str, data_root: str, generate_cfg: dict, iters: int,
                batch_size: int, seed: int) -> Config:
    """A demo config with the demo's data, schedule and seed.

    Args:
        name (str): Config file in ``projects/gskd_demo/configs``.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        iters (int): Training iterations (validation and the checkpoint
            come at the end).
        batch_size (int): Training batch size.
        seed (int): Seed of the run.

    Returns:
        Config: The config (without work_dir).
    """
    cfg = Config.fromfile(osp.join(config_dir(), name))
    # Its text unformatted: MMEngine writes a config's text 3 times per run
    # (log, dump, checkpoint), and yapf's formatting took ~1.3 s each time.
    # (MMEngine 0.10's fromfile drops `format_python_code` for such configs.)
    cfg = Config(
        cfg.to_dict(),
        cfg_text=cfg.text,
        filename=cfg.filename,
        format_python_code=False)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        cfg[loader].dataset.generate_cfg = generate_cfg
    cfg.train_dataloader.batch_size = batch_size
    # The schedulers keep their shape: every begin and end scales with the
    # run's length (a warm-up over the first 10 % stays 10 %).
    scale = iters / cfg.train_cfg.max_iters
    for scheduler in cfg.param_scheduler:
        scheduler.begin = round(scheduler.get('begin', 0) * scale)
        scheduler.end = max(scheduler.begin + 1, round(scheduler.end * scale))
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = max(1, iters // 50)
    cfg.randomness = dict(seed=seed)
    return cfg


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


def student_model_cfg(cfg: Config):
    """The student's model dict of a demo config (distiller or not)."""
    return cfg.model.architecture if 'architecture' in cfg.model else cfg.model


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
          gap_loader=None) -> dict:
    """Train (and validate) one config with the MMEngine Runner.

    Args:
        cfg (Config): The config.
        work_dir (str): Its work_dir.
        name (str): Experiment name (unique within the process).
        log_level (str): Log level of the run.
        teacher (nn.Module, optional): Teacher to measure the trained
            student's structural gap against (with ``gap_loader``).
        gap_loader (Iterable, optional): Validation batches of the gap.

    Returns:
        dict: ``miou`` and all validation metrics; if measured, the
        structural gaps (:func:`measure_gaps`); ``grad_norms`` and
        ``gskd_grad_share`` (see :class:`GradientShareHook`); ``wall_s``
        (build, train, validation, checkpoint), ``iter_ms`` (median
        training step), ``gskd_ms`` (median GSKD loss forward + backward
        per step, 0 without GSKD),
        ``student_digest`` and ``data_digest`` (see
        :class:`~.RunFingerprintHook`), ``checkpoint``,
        ``scalars`` (the MMEngine scalar log).
    """
    start = time.perf_counter()
    runner = build_runner(cfg, work_dir, name, log_level)
    timer, fingerprint = StepTimerHook(), RunFingerprintHook()
    gradients = GradientShareHook()
    for hook in (timer, fingerprint, gradients):
        runner.register_hook(hook)
    runner.train()
    wall = time.perf_counter() - start
    # Steady state: the first steps (allocations, lazy init) are left out.
    skip = min(5, len(timer.iter_times) - 1)
    result = dict(
        miou=float(timer.metrics['mIoU']),
        metrics=timer.metrics,
        wall_s=wall,
        iter_ms=1e3 * float(np.median(timer.iter_times[skip:])),
        gskd_ms=1e3 * float(np.median(timer.loss_times[skip:])),
        student_digest=fingerprint.student_digest,
        data_digest=fingerprint.data_digest,
        checkpoint=osp.join(runner.work_dir,
                            f'iter_{cfg.train_cfg.max_iters}.pth'),
        scalars=osp.join(runner.log_dir, 'vis_data', 'scalars.json'),
        grad_norms=gradients.norms,
        gskd_grad_share=gskd_share(gradients.norms))
    if teacher is not None:
        result.update(measure_gaps(runner.model, teacher, gap_loader))
    del runner
    return result


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
    own = structural_gaps(student, teacher, gap_loader)
    connectors = getattr(getattr(model, 'distiller', None), 'connectors', {})
    projector = connectors['gskd_projector'] \
        if 'gskd_projector' in connectors else None
    proj = None if projector is None else structural_gaps(
        student, teacher, gap_loader, projector=projector)
    return dict(
        gap=own['kl'],
        gap_cos=own['cos'],
        gap_proj=None if proj is None else proj['kl'],
        gap_proj_cos=None if proj is None else proj['cos'])


def val_loader(cfg: Config):
    """The validation dataloader of a demo config."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return Runner.build_dataloader(copy.deepcopy(cfg.val_dataloader))


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


def teacher_run(out_dir: str, data_root: str, generate_cfg: dict, iters: int,
                batch_size: int, log_level: str, cache_dir: str) -> dict:
    """Train the teacher, or reuse the cached one of the same setting.

    The same network is also evaluated untrained (as initialised with the
    teacher's seed): the baseline that training has to beat. The cache key
    hashes the teacher's full config (data, schedule, seed included), the
    dataset's rendering version and the cache layout.

    Args:
        out_dir (str): The demo's output directory.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        iters (int): Training iterations of the teacher.
        batch_size (int): Its batch size.
        log_level (str): Log level of its runs.
        cache_dir (str): gskd-mm cache directory.

    Returns:
        dict: As :func:`train`, plus ``untrained_miou``, ``cached`` and
        ``config``; ``checkpoint`` is the cached weights-only file.
    """
    cfg = load_config(TEACHER_CONFIG, data_root, generate_cfg, iters,
                      batch_size, TEACHER_SEED)
    key_text = cfg.pretty_text + json.dumps(
        dict(
            generate_cfg,
            format_version=synthetic.FORMAT_VERSION,
            cache_version=TEACHER_CACHE_VERSION),
        sort_keys=True)
    key = hashlib.sha1(key_text.encode()).hexdigest()[:12]
    entry = osp.join(cache_dir, 'demo', f'teacher-{key}')
    ckpt = osp.join(entry, 'teacher.pth')
    info = osp.join(entry, 'teacher.json')
    if osp.isfile(ckpt) and osp.isfile(info):
        with open(info) as f:
            result = json.load(f)
        print_log(
            f'Teacher: cached ({entry}), mIoU {result["miou"]:.2f}',
            logger=LOGGER)
        return dict(result, checkpoint=ckpt, cached=True)

    print_log(
        f'Teacher: training {iters} iterations (once; cached in {entry})',
        logger=LOGGER)
    with one_thread():
        runner = build_runner(
            copy.deepcopy(cfg), osp.join(out_dir, 'untrained'),
            f'demo_untrained_{key}_{os.getpid()}', log_level)
        untrained = float(runner.val()['mIoU'])
        del runner
        print_log(f'Teacher untrained: mIoU {untrained:.2f}', logger=LOGGER)
        result = train(cfg, osp.join(out_dir, 'teacher'),
                       f'demo_teacher_{key}_{os.getpid()}', log_level)
    result['untrained_miou'] = untrained
    # Only the weights are kept (a file that torch's weights-only loading,
    # hence MMRazor's `teacher_ckpt`, reads); written aside, then moved in
    # one step.
    os.makedirs(entry, exist_ok=True)
    tmp = f'{ckpt}.tmp{os.getpid()}'
    torch.save(
        dict(
            state_dict=load_state_dict(result['checkpoint']),
            meta=dict(
                config=TEACHER_CONFIG,
                iters=iters,
                dataset_classes=list(synthetic.CLASSES))), tmp)
    os.replace(tmp, ckpt)
    stored = {k: v for k, v in result.items() if k != 'checkpoint'}
    with open(info, 'w') as f:
        json.dump(dict(stored, config=TEACHER_CONFIG), f, indent=2)
    print_log(f'Teacher: mIoU {result["miou"]:.2f}', logger=LOGGER)
    return dict(result, checkpoint=ckpt, cached=False)


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


def student_run(ctx: RunContext, key: str, seed: int, teacher: torch.nn.Module,
                gap_loader) -> Tuple[dict, bool]:
    """Train one method for one seed, or reuse its stored result.

    The run loads its seed's initial weights (:func:`student_init_file`,
    written before), and its result is stored beside it
    (``runs/<key>/seed<k>/result.json``); a stored result with the same
    config and initial weights (:func:`run_fingerprint`) is returned as is.

    Args:
        ctx (RunContext): The demo's shared settings.
        key (str): Method key (see :func:`method_spec`).
        seed (int): The seed.
        teacher (nn.Module): The teacher, to measure the structural gaps.
        gap_loader (Iterable): Validation batches of the gaps.

    Returns:
        tuple[dict, bool]: The :func:`train` result (with ``seed`` and
        ``fingerprint``), and whether it was stored before.
    """
    spec = method_spec(key)
    init = student_init_file(ctx, seed)
    cfg = load_config(spec.config, ctx.data_root, ctx.generate_cfg,
                      ctx.iters, ctx.batch_size, seed)
    if spec.loss_gskd is not None:
        cfg.model.distiller.distill_losses.loss_gskd.update(spec.loss_gskd)
    if 'teacher_ckpt' in cfg.model:
        cfg.model.teacher_ckpt = ctx.teacher_ckpt
    student_model_cfg(cfg).init_cfg = dict(type='Pretrained', checkpoint=init)
    work_dir = osp.join(ctx.out_dir, 'runs', key, f'seed{seed}')
    stored = osp.join(work_dir, 'result.json')
    fingerprint = run_fingerprint(cfg, init)
    if osp.isfile(stored):
        with open(stored) as f:
            result = json.load(f)
        if result.get('fingerprint') == fingerprint:
            return result, True
    result = train(
        cfg,
        work_dir,
        f'demo_{key}_seed{seed}_{os.getpid()}',
        ctx.log_level,
        teacher=teacher,
        gap_loader=gap_loader)
    result.update(seed=seed, fingerprint=fingerprint)
    with open(stored, 'w') as f:
        json.dump(result, f, indent=2)
    return result, False


def run_summary(result: dict, before: bool) -> str:
    """One log line of a finished run."""
    if before:
        return f'done before (mIoU {result["miou"]:.2f})'
    share = result['gskd_grad_share']
    return (f'mIoU {result["miou"]:.2f}, structural gap {result["gap"]:.4f} '
            f'(cos {result["gap_cos"]:.4f})'
            + ('' if share is None else f', GSKD grad share {share:.3g}')
            + f', {result["wall_s"]:.0f} s')


def teacher_and_gap_loader(ctx: RunContext) -> tuple:
    """The trained teacher (eval mode) and the validation batches of the
    structural gaps."""
    teacher_cfg = load_config(TEACHER_CONFIG, ctx.data_root, ctx.generate_cfg,
                              1, 1, 0)
    return (init_student(teacher_cfg, ctx.teacher_ckpt),
            val_loader(teacher_cfg))


def setup_process() -> None:
    """Set up a process that runs the demo: the modules registered, known
    warnings of MMSeg and mmcv off, the demo's logger (quiet filter on)."""
    warnings.filterwarnings('ignore', category=UserWarning, module='mmseg')
    warnings.filterwarnings('ignore', category=UserWarning, module='mmcv')
    register_all_modules(init_default_scope=False)
    MMLogger.get_instance(LOGGER, log_level='INFO').addFilter(QuietFilter())


# A worker process's teacher and gap loader, built once per process.
_WORKER: dict = {}


def _init_worker(ctx: RunContext) -> None:
    """Set up a worker process of :func:`student_runs` (spawned: nothing
    of the parent is inherited)."""
    torch.set_num_threads(1)
    setup_process()
    _WORKER['ctx'] = ctx
    _WORKER['teacher'], _WORKER['gap_loader'] = teacher_and_gap_loader(ctx)


def _worker_run(job: Tuple[str, int]) -> Tuple[str, int, dict, bool]:
    """Run one (method, seed) job in a worker process."""
    key, seed = job
    result, before = student_run(_WORKER['ctx'], key, seed,
                                 _WORKER['teacher'], _WORKER['gap_loader'])
    return key, seed, result, before


def student_runs(
    methods: List[str],
    seeds: int,
    ctx: RunContext,
    workers: int = 1,
    on_seed_done: Optional[Callable] = None
) -> Tuple[Dict[str, list], List[Dict[str, float]]]:
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
        methods (list[str]): Method keys (see :func:`method_spec`).
        seeds (int): Seeds ``0 .. seeds - 1``.
        ctx (RunContext): The settings every run shares.
        workers (int): Processes that train in parallel. Defaults to 1
            (every run in this process).
        on_seed_done (Callable, optional): Called with the runs and initial
            gaps so far after every seed (e.g. to save them).

    Returns:
        tuple[dict[str, list], list[dict]]: Per method, the :func:`train`
        result of every seed (with ``seed``); per seed, the structural gaps
        (``kl``, ``cos``) of the initial student (before training).
    """
    for key in methods:
        method_spec(key)  # a clear error for an unknown method
    if workers < 1:
        raise ValueError(f'workers must be >= 1, got {workers}')
    with one_thread():
        return _student_runs(methods, seeds, ctx, workers, on_seed_done)


def _student_runs(methods: List[str], seeds: int, ctx: RunContext,
                  workers: int, on_seed_done: Optional[Callable]) -> tuple:
    """:func:`student_runs` on one thread."""
    teacher, gap_loader = teacher_and_gap_loader(ctx)
    student_cfg = load_config(STUDENT_CONFIG, ctx.data_root, ctx.generate_cfg,
                              1, 1, 0)
    init_gaps = []
    for seed in range(seeds):
        init = write_student_init(student_cfg, seed,
                                  student_init_file(ctx, seed))
        init_gaps.append(
            structural_gaps(
                init_student(student_cfg, init), teacher, gap_loader))
    jobs = [(key, seed) for seed in range(seeds) for key in methods]
    results: Dict[Tuple[str, int], dict] = {}
    finished = 0  # seeds 0 .. finished - 1 have every method's result

    def collect(num_seeds: int) -> Dict[str, list]:
        return {
            key: [results[key, s] for s in range(num_seeds)]
            for key in methods
        }

    def report(key: str, seed: int, result: dict, before: bool) -> None:
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
