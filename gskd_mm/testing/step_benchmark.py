# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time whole training steps of a recipe: the library of
``tools/analysis_tools/benchmark_step.py`` and ``benchmark_balancer.py``.

One batch of generated Cityscapes-format data (written by
:func:`~gskd_mm.testing.make_cityscapes` at full size) from the
recipe's own dataloader, the recipe run offline
(:func:`~gskd_mm.testing.offline_recipe`), and ``train_step`` timed
on it in float32 or mixed precision (MMEngine's ``AmpOptimWrapper`` on
CUDA, as ``tools/train.py --amp`` sets it up; ``torch.autocast('cpu')`` on
a CPU, where that wrapper refuses to start).
"""
import contextlib
import copy
import glob
import os.path as osp
import resource
import time
from statistics import median
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmrazor.registry import MODELS

from ..engine import enable_amp
from .offline import offline_recipe

#: The method name that stands for the recipe's student trained alone.
STUDENT_ALONE = 'student'
PRECISIONS = ('fp32', 'fp16', 'bf16')
AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}
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
        cfg (Config): A recipe from :func:`load_recipe`.
        student_only (bool): Build only the student (an MMSeg model).
        device (str): Torch device.

    Returns:
        nn.Module: The model, on ``device``, in train mode.
    """
    init_default_scope('mmseg')
    model_cfg = cfg.model.architecture if student_only else cfg.model
    return MODELS.build(model_cfg).to(device).train()


def optim_wrapper_for(cfg: Config, model: torch.nn.Module, precision: str,
                      device: str):
    """The recipe's optimizer wrapper; ``AmpOptimWrapper`` for AMP on CUDA.

    Adversarial recipes have two wrappers (``architecture`` and
    ``discriminator``): both become ``AmpOptimWrapper``
    (:func:`~gskd_mm.engine.enable_amp`, as ``tools/train.py --amp``), and
    a student alone gets the ``architecture`` one.

    Args:
        cfg (Config): The recipe.
        model (nn.Module): The model to optimise.
        precision (str): One of ``PRECISIONS``.
        device (str): Torch device.

    Returns:
        OptimWrapper | OptimWrapperDict: The wrapper(s).
    """
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if 'constructor' in wrapper_cfg and 'discriminator' in wrapper_cfg \
            and not hasattr(model, 'discriminator'):
        wrapper_cfg = wrapper_cfg.architecture
    if precision != 'fp32' and device.startswith('cuda'):
        amp_cfg = Config(dict(optim_wrapper=wrapper_cfg))
        enable_amp(amp_cfg, str(AMP_DTYPES[precision]).split('.')[-1])
        wrapper_cfg = amp_cfg.optim_wrapper
    return build_optim_wrapper(model, wrapper_cfg)


def step_context(precision: str, device: str):
    """Autocast for AMP on a CPU (on CUDA the optimizer wrapper does it)."""
    if precision == 'fp32' or device.startswith('cuda'):
        return contextlib.nullcontext()
    return torch.autocast('cpu', dtype=AMP_DTYPES[precision])


def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_steps(cfg: Config, method: str, precision: str, device: str,
               repeats: int, warmup: int = 1) -> dict:
    """Median seconds of a training step, peak memory and the losses.

    Args:
        cfg (Config): A recipe from :func:`load_recipe`.
        method (str): ``'student'`` or the recipe's method.
        precision (str): One of ``PRECISIONS``.
        device (str): Torch device.
        repeats (int): Timed steps.
        warmup (int): Untimed steps first. Defaults to 1.

    Returns:
        dict: ``seconds`` (median), ``peak_mb`` (CUDA: peak allocated;
        CPU: peak resident memory of the process) and ``losses`` of the
        last step.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, '
                         f'got {precision!r}')
    torch.manual_seed(0)
    batch = first_batch(cfg)
    model = build_model(cfg, method == STUDENT_ALONE, device)
    optim_wrapper = optim_wrapper_for(cfg, model, precision, device)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + repeats):
        sync(device)
        start = time.perf_counter()
        with step_context(precision, device):
            losses = model.train_step(batch, optim_wrapper)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if device.startswith('cuda'):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(
        seconds=median(times),
        peak_mb=peak_mb,
        losses={k: float(v)
                for k, v in losses.items()})


def time_teacher_forward(cfg: Config, device: str, repeats: int) -> dict:
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
        dict: Median seconds: ``loss_mode`` and ``tensor_mode``.
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
    return result


def time_balancer(cfg: Config,
                  hook_cfg: dict,
                  steps: int,
                  device: str = 'cpu',
                  batch: Optional[dict] = None) -> dict:
    """The cost of a step the balancer measures, against a plain one.

    Training steps of the recipe on one batch, alternately plain and
    measured by a ``GradientShareBalancerHook`` (its measurement and
    update, as on every ``interval``-th iteration of a run); the first
    step is a warm-up. The mean overhead of a run at an interval follows:
    ``(measured - plain) / (interval * plain)``.

    Args:
        cfg (Config): A distillation recipe (e.g. from :func:`load_recipe`).
        hook_cfg (dict): Arguments of the hook (``targets`` at least).
        steps (int): Timed steps of each kind.
        device (str): Torch device. Defaults to 'cpu'.
        batch (dict, optional): The batch; defaults to the first of the
            recipe's training dataloader.

    Returns:
        dict: Median seconds of a ``plain`` and a ``measured`` step, and of
        the ``measurement`` itself (the hook's per-term gradients).
    """
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from ..engine import GradientShareBalancerHook
    torch.manual_seed(0)
    batch = first_batch(cfg) if batch is None else batch
    model = build_model(cfg, False, device)
    optim_wrapper = optim_wrapper_for(cfg, model, 'fp32', device)
    hook = GradientShareBalancerHook(**dict(hook_cfg, interval=1))
    runner = SimpleNamespace(
        model=model,
        iter=0,
        message_hub=MessageHub.get_instance(f'time_balancer_{id(hook)}'))
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
    return dict(
        plain=median(times['plain']),
        measured=median(times['measured']),
        measurement=median(hook.seconds))
