# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time whole training steps of a recipe: the library of
``tools/analysis_tools/benchmark_step.py``, ``benchmark_balancer.py`` and
``kd_budget.py``.

Two quantities, not to be confused: :func:`time_steps` gives the median
wall time of ``train_step`` on one batch (no loading), which the
benchmarks report; :func:`recipe_step_cost` gives the step cost of
:mod:`~gskd_mm.analysis.step_cost` (whole loop iterations, loading
included, in CPU time on one thread), the only one a budget uses.

One batch (of the recipe's own dataloader, e.g. on generated
Cityscapes-format data written by :func:`~gskd_mm.testing.make_cityscapes`,
or a generated batch), the recipe run offline
(:func:`~gskd_mm.analysis.offline_recipe`), and ``train_step`` timed on it
in float32 or mixed precision: MMEngine's ``AmpOptimWrapper`` on CUDA (the
caller converts the config with :func:`gskd_mm.engine.enable_amp`, as
``tools/train.py --amp`` does), ``torch.autocast('cpu')`` on a CPU, where
that wrapper refuses to start.
"""
import contextlib
import copy
import glob
import os.path as osp
import time
from dataclasses import dataclass
from statistics import median
from types import SimpleNamespace
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmrazor.registry import MODELS

from .measure import PeakMemory
from .offline import offline_recipe
from .step_cost import StepCost, iteration_seconds, measure_step_cost

#: The method name that stands for the recipe's student trained alone.
STUDENT_ALONE = 'student'
PRECISIONS = ('fp32', 'fp16', 'bf16')
#: The autocast dtype of each mixed precision (``enable_amp``'s ``dtype``).
AMP_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}
CITYSCAPES_SIZE = (1024, 2048)


def sibling_recipes(config: str, methods: List[str]) -> Dict[str, str]:
    """The recipes of the same teacher, student and dataset as ``config``.

    Recipes are named ``<method>_<teacher>_<student>_<schedule>_<dataset>``;
    the schedule part may differ between methods.

    Args:
        config (str): Path of a recipe.
        methods (list[str]): Methods to find, e.g. ``['dist', 'cwd-gskd']``;
            ``'student'`` stands for the student alone and maps to
            ``config``.

    Returns:
        dict[str, str]: Method -> recipe path.
    """
    folder, name = osp.split(osp.abspath(config))
    parts = name.split('_')
    if len(parts) < 4:
        raise ValueError(
            f'{name} is not named <method>_<teacher>_<student>_<schedule>_'
            '<dataset>.py, so its sibling recipes cannot be found; pass '
            '--methods student to time its student alone')
    pair, dataset = '_'.join(parts[1:-2]), parts[-1]
    found = {}
    for method in methods:
        if method == STUDENT_ALONE:
            found[method] = osp.abspath(config)
            continue
        matches = sorted(
            glob.glob(osp.join(folder, f'{method}_{pair}_*_{dataset}')))
        if len(matches) != 1:
            raise FileNotFoundError(
                f'expected one {method} recipe of {pair} on {dataset} in '
                f'{folder}, found {len(matches)}: {matches}')
        found[method] = matches[0]
    return found


def load_recipe(config: str, data_root: str, batch: int,
                crop: Optional[Tuple[int, int]]) -> Config:
    """A recipe ready to time offline.

    Args:
        config (str): Recipe path.
        data_root (str): Root of the generated Cityscapes data.
        batch (int): Images per step.
        crop (tuple[int, int], optional): (h, w) crop; None keeps the
            recipe's.

    Returns:
        Config: The recipe, with no downloads, ``data_root`` and ``batch``;
        GSKD samples every labelled pixel, as it nearly does with a
        trained teacher.
    """
    cfg = Config.fromfile(config)
    dataset = cfg.train_dataloader.dataset.type
    if dataset != 'CityscapesDataset':
        raise ValueError(
            f'{osp.basename(config)} trains on {dataset}; the step '
            'benchmark generates Cityscapes data: pass a Cityscapes recipe')
    offline_recipe(cfg, crop, data_root)
    cfg.train_dataloader.batch_size = batch
    # A trained teacher is right on most labelled pixels, an untrained one
    # on almost none: GSKD would sample nothing and cost nothing.
    losses = cfg.model.distiller.distill_losses
    for loss_cfg in losses.values():
        if loss_cfg.type == 'GSKDLoss':
            loss_cfg.valid_mask = 'labeled'
    return cfg


def first_batch(cfg: Config) -> dict:
    """The first batch of the recipe's training dataloader."""
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    return next(iter(loader))


def build_model(cfg: Config, student_only: bool,
                device: str) -> torch.nn.Module:
    """The trained model: the recipe's student alone, or its distiller.

    Args:
        cfg (Config): A recipe run offline (e.g. from :func:`load_recipe`).
        student_only (bool): Build only the student (an MMSeg model).
        device (str): Torch device.

    Returns:
        nn.Module: The model, on ``device``, in train mode.
    """
    model_cfg = cfg.model.architecture if student_only else cfg.model
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(model_cfg).to(device)
    model.train()  # MMRazor's SingleTeacherDistill.train returns None
    return model


def optim_wrapper_for(cfg: Config, model: torch.nn.Module):
    """The recipe's optimizer wrapper(s), for the model being timed.

    Adversarial recipes have two wrappers (``architecture`` and
    ``discriminator``); a student alone gets the ``architecture`` one.

    Args:
        cfg (Config): The recipe (for AMP on CUDA, converted by
            :func:`gskd_mm.engine.enable_amp` first).
        model (nn.Module): The model to optimise.

    Returns:
        OptimWrapper | OptimWrapperDict: The wrapper(s).
    """
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if 'constructor' in wrapper_cfg and 'discriminator' in wrapper_cfg \
            and not hasattr(model, 'discriminator'):
        wrapper_cfg = wrapper_cfg.architecture
    return build_optim_wrapper(model, wrapper_cfg)


def step_context(precision: str, device: str):
    """Autocast for AMP on a CPU (on CUDA the optimizer wrapper does it)."""
    if precision == 'fp32' or device.startswith('cuda'):
        return contextlib.nullcontext()
    return torch.autocast('cpu', dtype=getattr(torch, AMP_DTYPES[precision]))


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA), so that timings are whole."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()


@dataclass
class StepTiming:
    """The time and memory of a training step.

    Attributes:
        seconds (float): Median seconds of a step.
        peak_mb (float): CUDA: peak allocated memory; CPU: peak resident
            memory of the process.
        losses (dict[str, float]): The losses of the last step.
    """
    seconds: float
    peak_mb: float
    losses: Dict[str, float]


def time_steps(cfg: Config,
               student_only: bool,
               precision: str = 'fp32',
               device: str = 'cpu',
               repeats: int = 5,
               warmup: int = 1,
               batch: Optional[dict] = None) -> StepTiming:
    """Median wall seconds of ``train_step``, peak memory and the losses.

    A benchmark of the step alone (no batch loading), not the step cost
    that budgets use (:func:`recipe_step_cost`).

    Args:
        cfg (Config): A recipe from :func:`load_recipe` or
            :func:`~gskd_mm.analysis.offline_recipe`.
        student_only (bool): Time the recipe's student trained alone (its
            ``model.architecture``) instead of the recipe.
        precision (str): One of ``PRECISIONS``. Defaults to 'fp32'.
        device (str): Torch device. Defaults to 'cpu'.
        repeats (int): Timed steps. Defaults to 5.
        warmup (int): Untimed steps first. Defaults to 1.
        batch (dict, optional): The batch; defaults to the first of the
            recipe's training dataloader.

    Returns:
        StepTiming: The median step, the peak memory and the losses.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, '
                         f'got {precision!r}')
    torch.manual_seed(0)
    batch = first_batch(cfg) if batch is None else batch
    model = build_model(cfg, student_only, device)
    optim_wrapper = optim_wrapper_for(cfg, model)
    times = []
    with PeakMemory(device) as memory:
        for i in range(warmup + repeats):
            sync(device)
            start = time.perf_counter()
            with step_context(precision, device):
                losses = model.train_step(batch, optim_wrapper)
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return StepTiming(median(times), memory.peak_mb,
                      {k: float(v)
                       for k, v in losses.items()})


@dataclass
class TeacherTiming:
    """Median seconds of the teacher's forward in each mode.

    Attributes:
        loss_mode (float): As ``SingleTeacherDistill`` runs it.
        tensor_mode (float): As ``EvalTeacherDistill`` runs it.
    """
    loss_mode: float
    tensor_mode: float


def time_teacher_forward(cfg: Config, device: str,
                         repeats: int) -> TeacherTiming:
    """The teacher's forward per step, as each algorithm runs it.

    ``SingleTeacherDistill`` runs the teacher in ``loss`` mode (BN in eval,
    dropout on: decode and auxiliary heads and their losses);
    ``EvalTeacherDistill`` in ``tensor`` mode in eval (backbone and decode
    head). Both under ``no_grad``, on the same batch.

    Args:
        cfg (Config): A distillation recipe from :func:`load_recipe`.
        device (str): Torch device.
        repeats (int): Timed forwards of each, after one warm-up.

    Returns:
        TeacherTiming: The median forward in each mode.
    """
    model = build_model(cfg, False, device)
    teacher = model.teacher
    data = model.data_preprocessor(first_batch(cfg), True)
    inputs, samples = data['inputs'], data['data_samples']
    result = {}
    for mode in ('loss', 'tensor'):
        model.train()  # the algorithm's own train(): its teacher's modes
        if mode == 'loss':
            teacher.train()
            for m in teacher.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        times = []
        for i in range(repeats + 1):
            sync(device)
            start = time.perf_counter()
            with torch.no_grad():
                teacher(inputs, samples, mode=mode)
            sync(device)
            if i:
                times.append(time.perf_counter() - start)
        result[f'{mode}_mode'] = median(times)
    return TeacherTiming(**result)


@dataclass
class MeasuredStepTiming:
    """The cost of the steps a loss-gradient hook measures.

    Attributes:
        plain (float): Median seconds of a plain step.
        measured (float): Median seconds of a measured step.
        measurement (float): Median seconds of the measurement itself
            (the hook's per-term gradients).
    """
    plain: float
    measured: float
    measurement: float

    def overhead(self, interval: int) -> float:
        """The mean overhead of a run measured every ``interval`` steps,
        as a fraction of a plain step."""
        return (self.measured - self.plain) / (interval * self.plain)


def time_measured_steps(cfg: Config,
                        hook: Hook,
                        steps: int,
                        device: str = 'cpu',
                        batch: Optional[dict] = None) -> MeasuredStepTiming:
    """The cost of a step that a loss-gradient hook measures.

    Training steps of the recipe on one batch, alternately plain and
    measured by ``hook`` (a ``LossGradientHook`` or
    ``GradientShareBalancerHook`` with ``interval=1``: its measurement and,
    for the balancer, its update, as on every ``interval``-th iteration of
    a run); the first step is a warm-up.

    Args:
        cfg (Config): A distillation recipe (e.g. from :func:`load_recipe`).
        hook (Hook): The hook, measuring every iteration.
        steps (int): Timed steps of each kind.
        device (str): Torch device. Defaults to 'cpu'.
        batch (dict, optional): The batch; defaults to the first of the
            recipe's training dataloader.

    Returns:
        MeasuredStepTiming: The median plain and measured steps and the
        measurement.
    """
    torch.manual_seed(0)
    batch = first_batch(cfg) if batch is None else batch
    model = build_model(cfg, False, device)
    optim_wrapper = optim_wrapper_for(cfg, model)
    runner = SimpleNamespace(
        model=model,
        iter=0,
        message_hub=MessageHub.get_instance(f'time_measured_{id(hook)}'))
    hook.before_train(runner)
    times: Dict[str, List[float]] = dict(plain=[], measured=[])
    for i in range(1 + 2 * steps):
        kind = 'measured' if i % 2 else 'plain'
        runner.iter = i
        sync(device)
        start = time.perf_counter()
        if kind == 'measured':
            hook.before_train_iter(runner, i, batch)
        model.train_step(batch, optim_wrapper)
        if kind == 'measured':
            hook.after_train_iter(runner, i, batch)
        sync(device)
        if i:
            times[kind].append(time.perf_counter() - start)
    return MeasuredStepTiming(
        median(times['plain']), median(times['measured']),
        median(hook.seconds))


def loop_batches(loader) -> Iterator[dict]:
    """The loader's batches, epoch after epoch, loaded anew each time."""
    while True:
        yield from loader


def recipe_step_cost(cfg: Config,
                     repeats: int = 5,
                     iters: int = 2,
                     device: str = 'cpu',
                     precision: str = 'fp32') -> StepCost:
    """The step cost of a recipe over its student alone.

    Both models are built once; every repeat runs one warm-up and ``iters``
    timed iterations of each (the next batch of the recipe's training
    dataloader, then ``train_step``), in alternating order, on one thread
    (:func:`~gskd_mm.analysis.step_cost.measure_step_cost`). On CUDA a CPU
    clock misses the GPU's work, so the iterations are timed in wall
    seconds, synchronised, instead.

    Args:
        cfg (Config): A recipe from :func:`load_recipe`.
        repeats (int): Interleaved repeats. Defaults to 5.
        iters (int): Timed iterations of each per repeat. Defaults to 2.
        device (str): Torch device. Defaults to 'cpu'.
        precision (str): One of ``PRECISIONS``. Defaults to 'fp32'.

    Returns:
        StepCost: The ratio with its 95 % interval.
    """
    torch.manual_seed(0)
    batches = loop_batches(
        Runner.build_dataloader(cfg.train_dataloader, seed=0))
    on_cuda = device.startswith('cuda')

    def runner_of(student_only: bool):
        model = build_model(cfg, student_only, device)
        wrapper = optim_wrapper_for(cfg, model)

        def run() -> List[float]:
            with step_context(precision, device):
                if not on_cuda:
                    return iteration_seconds(model, wrapper, batches,
                                             1 + iters)[1:]
                times = []
                for _ in range(1 + iters):
                    sync(device)
                    start = time.perf_counter()
                    model.train_step(next(batches), wrapper)
                    sync(device)
                    times.append(time.perf_counter() - start)
                return times[1:]

        return run

    return measure_step_cost(runner_of(True), runner_of(False), repeats)
