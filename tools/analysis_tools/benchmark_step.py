# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time whole training steps of a recipe and its sibling methods.

For the teacher, student and dataset of CONFIG, times a training step of
the student alone and of the recipes of each method (default: DIST,
DIST + GSKD and CWD + GSKD), in float32 and mixed precision, at the
recipe's crop on generated Cityscapes-format data (nothing downloaded;
written by :func:`make_data`). Each measurement runs in a fresh
process, so its peak memory is its own. GSKD's share of the step is the
difference between DIST + GSKD and DIST. ``--teacher`` also times the
teacher's forward as ``SingleTeacherDistill`` and ``EvalTeacherDistill``
run it.

A recipe's student, teacher, losses, pipeline and optimizer are used as
written; only what cannot run offline changes (no checkpoint or ImageNet
download: weights stay at their initialisation, which costs the same time)
and, on request, the crop. One batch comes from the recipe's own
dataloader, and ``train_step`` runs on it repeatedly: data loading, which
workers overlap with training, is not timed. Mixed precision is MMEngine's
``AmpOptimWrapper`` on CUDA, as ``tools/train.py --amp`` sets it up; on a
CPU, where that wrapper refuses to start, the step runs inside
``torch.autocast('cpu')``.

Example::

    python tools/analysis_tools/benchmark_step.py configs/gskd/dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py --device cuda
    python tools/analysis_tools/benchmark_step.py CONFIG --crop 128 256 --batch 2  # CPU

The tool is self-contained (tools import neither other tools nor the
tests): it writes its own data, the same files the tests' Cityscapes writer
does (``tests/test_step_benchmark.py`` checks it), and runs the recipe
offline with :func:`offline_recipe`.
"""  # noqa: E501
import argparse
import contextlib
import copy
import glob
import json
import math
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time
from statistics import median
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmrazor.registry import MODELS
from PIL import Image

from gskd_mm.engine import enable_amp
from gskd_mm.models.algorithms import teacher_model_config
from gskd_mm.utils import register_all_modules

STUDENT = 'student'
PRECISIONS = ('fp32', 'fp16', 'bf16')
AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}
CITYSCAPES_SIZE = (1024, 2048)
CITYSCAPES_CLASSES = range(19)


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
        if method == STUDENT:
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


def make_data(root: str, batch: int, seed: int = 0) -> str:
    """Cityscapes-format training images at full size, ``batch`` of them.

    ``leftImg8bit/train/<city>/*_leftImg8bit.png`` and ``gtFine/train/
    <city>/*_gtFine_labelTrainIds.png`` as MMSeg's ``CityscapesDataset``
    reads them: a label map of a few blobs of train ids 0..18 (the bottom
    rows ignored, like the ego vehicle), an image whose colours follow the
    labels plus a gradient and noise.

    Args:
        root (str): Directory to write.
        batch (int): Number of training images.
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: The data root.
    """
    rng = np.random.default_rng(seed)
    h, w = CITYSCAPES_SIZE
    yy, xx = np.mgrid[:h, :w]
    colours = np.random.default_rng(12345).integers(
        0, 256, (256, 3)).astype(np.float32)
    for i in range(batch):
        label = np.full((h, w), rng.choice(CITYSCAPES_CLASSES), np.uint8)
        for _ in range(4):
            value = rng.choice(CITYSCAPES_CLASSES)
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            ry, rx = rng.integers(h // 8, h // 2), rng.integers(w // 8, w // 2)
            if rng.random() < 0.5:
                mask = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1
            else:
                mask = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
            label[mask] = value
        image = colours[label] + 40.0 * (yy / (h - 1))[..., None]
        image += rng.normal(0, 20, size=image.shape)
        label[-h // 8:] = 255
        city = ('aachen', 'bochum')[i % 2]
        stem = f'{city}_000000_{i + 19:06d}'
        for folder, suffix, array in (
                ('leftImg8bit', 'leftImg8bit', image.clip(0, 255)),
                ('gtFine', 'gtFine_labelTrainIds', label)):
            path = osp.join(root, folder, 'train', city,
                            f'{stem}_{suffix}.png')
            os.makedirs(osp.dirname(path), exist_ok=True)
            Image.fromarray(array.astype(np.uint8)).save(path)
    return root


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
    model = build_model(cfg, method == STUDENT, device)
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


def iter_dicts(node: Any) -> Iterator[dict]:
    """Yield every dict nested in a config (lists and dicts walked)."""
    if isinstance(node, dict):
        yield node
        children = node.values()
    elif isinstance(node, (list, tuple)):
        children = node
    else:
        return
    for child in children:
        yield from iter_dicts(child)


def resize_to_crop(node: dict, crop: Tuple[int, int]) -> None:
    """Shrink the sizes of one config node (a transform, a preprocessor).

    Args:
        node (dict): A dict of the config; changed in place.
        crop (tuple[int, int]): (h, w) crop.
    """
    h, _ = crop
    kind = node.get('type')
    if kind == 'RandomCrop':
        node['crop_size'] = crop
    elif kind == 'Pad':
        node['size'] = crop
    elif kind in ('RandomResize', 'Resize') and 'scale' in node:
        # Same aspect as the dataset's own scale, short side = crop h.
        long_side, short_side = node['scale']
        node['scale'] = (round(long_side * h / short_side), h)
    elif kind == 'SegDataPreProcessor' and node.get('size'):
        # The student's and the top-level one, which a Runner gives
        # the whole algorithm (``model.data_preprocessor`` default).
        node['size'] = crop


def teacher_without_downloads(teacher: ConfigDict) -> ConfigDict:
    """The teacher's model config, with ImageNet initialisation off.

    A ``cfg_path`` teacher is built by ``mmengine.hub.get_model``, whose
    config initialises the backbone from ImageNet weights
    (``pretrained='open-mmlab://resnet101_v1c'``). Only a loaded
    ``teacher_ckpt`` stops ``Runner.train()``'s ``init_weights()`` from
    downloading them, so without one the teacher is spelled out as
    ``get_model`` builds it (same model, same scope; see
    :func:`teacher_model_config`) minus that initialisation.

    Args:
        teacher (ConfigDict): ``model.teacher`` of a recipe.

    Returns:
        ConfigDict: The teacher to build.
    """
    if 'cfg_path' in teacher and not teacher.get('type'):
        model = teacher_model_config(teacher)
    else:
        model = teacher
    if 'pretrained' in model:
        model.pretrained = None
    if 'backbone' in model:
        model.backbone.init_cfg = None
    return model


def offline_recipe(cfg: Config, crop: Optional[Tuple[int, int]],
                   data_root: str) -> Config:
    """Make a recipe run offline, as written except for downloads and crop.

    No teacher checkpoint and no ImageNet initialisation (weights stay at
    their initialisation, which costs the same time); a ``cfg_path``
    teacher is spelled out as ``mmengine.hub.get_model`` builds it (see
    :func:`teacher_without_downloads`); every dataset reads ``data_root``;
    data loading runs in the main process.

    Args:
        cfg (Config): A loaded recipe; modified in place.
        crop (tuple[int, int], optional): (h, w) crop; None keeps the
            recipe's crop and image scales.
        data_root (str): New root of every dataset.

    Returns:
        Config: ``cfg``.
    """
    cfg.model.teacher_ckpt = None
    cfg.model.teacher = teacher_without_downloads(cfg.model.teacher)
    student = cfg.model.architecture
    student.pretrained = None
    student.backbone.init_cfg = None
    if crop is not None and 'discriminator' in cfg.model:
        # Logits of crop / 8; each stage halves them, down to >= 4.
        cfg.model.discriminator.num_stages = max(
            1, min(4, int(math.log2(min(crop) // 8 // 4))))
    for node in iter_dicts(cfg._cfg_dict):
        if 'data_root' in node:
            node['data_root'] = data_root
        if crop is not None:
            resize_to_crop(node, crop)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if loader in cfg:
            cfg[loader].num_workers = 0
            cfg[loader].persistent_workers = False
    return cfg


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a Cityscapes recipe')
    parser.add_argument(
        '--methods',
        nargs='*',
        default=['student', 'dist', 'dist-gskd', 'cwd-gskd'],
        help='student and/or recipe methods of the same pair and dataset')
    parser.add_argument(
        '--precisions',
        nargs='+',
        default=['fp32', 'fp16'],
        choices=PRECISIONS,
        help='fp16/bf16: AmpOptimWrapper on CUDA, autocast on a CPU')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--crop',
        nargs=2,
        type=int,
        metavar=('H', 'W'),
        help='crop instead of the recipe\'s (e.g. to run on a CPU)')
    parser.add_argument(
        '--batch',
        type=int,
        help='images per step (default: the batch size of CONFIG)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument(
        '--teacher',
        action='store_true',
        help='also time the teacher forward of both algorithms')
    parser.add_argument('--out', help='also write the results as JSON here')
    parser.add_argument('--data-root', help=argparse.SUPPRESS)
    parser.add_argument('--only', help=argparse.SUPPRESS)
    return parser.parse_args()


def child(args: argparse.Namespace) -> dict:
    """One measurement (``--only METHOD:PRECISION|teacher``), in-process."""
    register_all_modules(init_default_scope=False)
    crop = tuple(args.crop) if args.crop else None
    if args.only == 'teacher':
        cfg = load_recipe(args.config, args.data_root, args.batch, crop)
        return time_teacher_forward(cfg, args.device, args.repeats)
    method, precision = args.only.split(':')
    config = sibling_recipes(args.config, [method])[method]
    cfg = load_recipe(config, args.data_root, args.batch, crop)
    return time_steps(cfg, method, precision, args.device,
                            args.repeats)


def isolated(args: argparse.Namespace, only: str) -> dict:
    """Run one measurement in a fresh process."""
    cmd = [
        sys.executable, __file__, args.config, '--device', args.device,
        '--repeats',
        str(args.repeats), '--batch',
        str(args.batch), '--data-root', args.data_root, '--only', only
    ]
    if args.crop:
        cmd += ['--crop', *map(str, args.crop)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f'{only} failed:\n{out.stderr[-4000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(args: argparse.Namespace, rows: dict, teacher: dict) -> str:
    crop = 'x'.join(map(str, args.crop)) if args.crop else 'recipe crop'
    device = (torch.cuda.get_device_name() if args.device.startswith('cuda')
              else f'CPU, {torch.get_num_threads()} threads')
    lines = [
        f'Training step, batch {args.batch}, {crop}, {device}; median of '
        f'{args.repeats} steps', '',
        '| method | ' + ' | '.join(f'{p} s/iter | {p} peak MB'
                                   for p in args.precisions) + ' |',
        '|---' * (1 + 2 * len(args.precisions)) + '|'
    ]
    for method in args.methods:
        cells = []
        for precision in args.precisions:
            r = rows[method][precision]
            cells += [f'{r["seconds"]:.3f}', f'{r["peak_mb"]:.0f}']
        lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    if {'dist', 'dist-gskd'} <= set(args.methods):
        for precision in args.precisions:
            with_gskd = rows['dist-gskd'][precision]['seconds']
            extra = with_gskd - rows['dist'][precision]['seconds']
            lines.append(f'\nGSKD share of the DIST + GSKD step ({precision}):'
                         f' {extra * 1e3:.1f} ms, '
                         f'{100 * extra / with_gskd:.1f} %')
    if teacher:
        lines.append(
            f'\nTeacher forward: loss mode (SingleTeacherDistill) '
            f'{teacher["loss_mode"]:.3f} s, tensor mode (EvalTeacherDistill)'
            f' {teacher["tensor_mode"]:.3f} s, saved '
            f'{teacher["loss_mode"] - teacher["tensor_mode"]:.3f} s per step')
    return '\n'.join(lines)


def main() -> None:
    args = parse_args()
    if args.batch is None:
        from mmengine.config import Config
        args.batch = Config.fromfile(args.config).train_dataloader.batch_size
    if args.batch < 2:
        # A pooled branch (ASPP's image pool, PSP's 1x1 bin) then has one
        # value per channel, which BN cannot train on.
        raise SystemExit('--batch must be at least 2: BN in pooled branches '
                         'needs two values per channel to train')
    if args.only:
        print(json.dumps(child(args)))
        return
    sibling_recipes(args.config, args.methods)  # fail early
    with tempfile.TemporaryDirectory() as tmp:
        args.data_root = make_data(
            os.path.join(tmp, 'cityscapes'), args.batch)
        rows = {}
        for method in args.methods:
            rows[method] = {}
            for precision in args.precisions:
                rows[method][precision] = isolated(
                    args, f'{method}:{precision}')
                print_log(
                    f'{method} {precision}: '
                    f'{rows[method][precision]["seconds"]:.3f} s/iter',
                    logger='current')
        teacher = isolated(args, 'teacher') if args.teacher else {}
    print(table(args, rows, teacher))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(
                dict(
                    config=args.config,
                    device=args.device,
                    batch=args.batch,
                    crop=args.crop,
                    steps=rows,
                    teacher=teacher), f, indent=2)


if __name__ == '__main__':
    main()
