# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time whole training steps of a recipe and its sibling methods.

For the teacher, student and dataset of CONFIG, times a training step of
the student alone and of the recipes of each method (default: DIST,
DIST + GSKD and CWD + GSKD), in float32 and mixed precision, at the
recipe's crop on generated Cityscapes-format data (nothing downloaded;
written by ``gskd_mm.testing.make_cityscapes``). Each measurement runs in
a fresh process, so its peak memory is its own. GSKD's share of the step is the
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

The work is done by :mod:`gskd_mm.analysis.step_benchmark`, on the data of
:func:`gskd_mm.testing.make_cityscapes` (the tests' Cityscapes writer), with
the recipe run offline by :func:`gskd_mm.analysis.offline_recipe`.
"""  # noqa: E501

import argparse
import dataclasses
import json
import os
import tempfile

import torch
from mmengine.logging import print_log

from gskd_mm.analysis.measure import run_measurement
from gskd_mm.analysis.step_benchmark import (AMP_DTYPES, CITYSCAPES_SIZE,
                                             PRECISIONS, STUDENT_ALONE,
                                             load_recipe, sibling_recipes,
                                             time_steps, time_teacher_forward)
from gskd_mm.engine import enable_amp
from gskd_mm.testing import make_cityscapes
from gskd_mm.utils import register_all_modules

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
        return dataclasses.asdict(
            time_teacher_forward(cfg, args.device, args.repeats))
    method, precision = args.only.split(':')
    config = sibling_recipes(args.config, [method])[method]
    cfg = load_recipe(config, args.data_root, args.batch, crop)
    if precision != 'fp32' and args.device.startswith('cuda'):
        enable_amp(cfg, AMP_DTYPES[precision])  # as tools/train.py --amp
    return dataclasses.asdict(
        time_steps(cfg, method == STUDENT_ALONE, precision, args.device,
                   args.repeats))


def isolated(args: argparse.Namespace, only: str) -> dict:
    """Run one measurement in a fresh process (its own peak memory)."""
    cmd = [
        __file__, args.config, '--device', args.device, '--repeats',
        str(args.repeats), '--batch',
        str(args.batch), '--data-root', args.data_root, '--only', only
    ]
    if args.crop:
        cmd += ['--crop', *map(str, args.crop)]
    return run_measurement(cmd)


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
        args.data_root = make_cityscapes(
            os.path.join(tmp, 'cityscapes'),
            num_train=args.batch,
            num_val=0,
            size=CITYSCAPES_SIZE)
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
