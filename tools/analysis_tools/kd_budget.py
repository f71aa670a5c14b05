# Copyright (c) gskd-mm contributors. All rights reserved.
"""What a distillation recipe costs against its student trained alone.

For each CONFIG (a distillation recipe) it measures the forward FLOPs of
teacher and student (``mmengine.analysis``, the networks as training runs
them) and, with ``--by time`` (the default), the step cost of the recipe
over its student alone on this machine (``gskd_mm.analysis.step_cost``:
whole training iterations in CPU time on one thread, interleaved repeats,
a 95 % interval; wall time on a GPU; on generated Cityscapes-format data,
so Cityscapes recipes only). It prints the FLOP ratio ``F_t / F_s``, the
step ratio it implies (``1 + F_t / (3 F_s)``, an estimate: FLOPs leave out
the losses, connectors, discriminator and optimizer, which the measured
cost includes), the measured step cost, and the student-only iterations
that the recipe's compute buys by ``--by``: the measured cost (``time``),
the FLOP estimate
(``flops``: hardware-independent and deterministic) or 1 (``iters``: the
papers' equal iterations). ``--out`` writes that student-only config, ready
for ``tools/train.py``, ``tools/dist_train.sh`` and ``mim train mmseg``.

A cached recipe (``configs/gskd/teacher_cache/``, its teacher served from
a cache) is recognised: a step runs the student's forward and backward
and no teacher (step ratio 1 by FLOPs), and the cache's one-off pass runs
the teacher over images x views, counted in teacher forwards of a training
crop and in student iterations (``forwards x F_t / (3 F_s x images per
step)``). It prints the cache's storage per dtype and the student-only
iterations two ways: with the pass amortised over the run (a cache made
for it; what ``--out`` writes) and without (a reused cache;
``--reused-cache``). ``--storage`` prints, for any recipes (cached or
online), the storage and one-off pass of a dense and a replay cache, and
``--json`` writes that table as a results file.

Example::

    python tools/analysis_tools/kd_budget.py configs/gskd/dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py --by flops --out work_dirs/matched/dist-gskd.py
    python tools/analysis_tools/kd_budget.py CONFIG --crop 128 256 --batch 2  # CPU
    python tools/analysis_tools/kd_budget.py configs/gskd/*_cityscapes-*.py --by flops --markdown
    python tools/analysis_tools/kd_budget.py configs/gskd/teacher_cache/dist-cache_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py --by flops --out work_dirs/matched/dist-cache.py
    python tools/analysis_tools/kd_budget.py CONFIGS --storage --json results/teacher_cache_storage.json

The work is done by :mod:`gskd_mm.analysis.budget` (FLOPs, ratios, the
student-only config), :mod:`gskd_mm.analysis.step_benchmark` (the step
cost) and :mod:`gskd_mm.teacher_cache.budget` (a cache's storage and
one-off pass).
"""  # noqa: E501
import argparse
import datetime
import json
import os
import os.path as osp
import re
import subprocess
import tempfile
import textwrap
from typing import Dict, Optional, Union

import torch
from mmengine.config import Config
from mmrazor.engine.hooks import StopDistillHook

from gskd_mm.analysis import (BUDGET_BASES, KDBudget, budget_table,
                              markdown_table, recipe_flops,
                              student_only_config, text_table)
from gskd_mm.analysis.budget import ITERS_MULTIPLE
from gskd_mm.analysis.step_benchmark import (AMP_DTYPES, CITYSCAPES_SIZE,
                                             PRECISIONS, load_recipe,
                                             recipe_step_cost)
from gskd_mm.analysis.step_cost import StepCost
from gskd_mm.engine import LossGradientHook, enable_amp
from gskd_mm.teacher_cache import online_config
from gskd_mm.teacher_cache.budget import (STORAGE_DTYPES, CachedRecipeBudget,
                                          cached_recipe_budget, dataset_images,
                                          is_cached_recipe, recipe_processes,
                                          storage_table)
from gskd_mm.testing import make_cityscapes
from gskd_mm.utils import register_all_modules
from gskd_mm.utils.cli import (check_crop, check_distillation_recipe,
                               check_positive, load_config, tool_error)

# Hooks that measure or steer distillation (the balancer is a
# LossGradientHook) or need a distiller (MMRazor's StopDistillHook): the
# student alone trains without them.
DISTILLATION_HOOKS = (LossGradientHook, StopDistillHook)


def _add_budget_args(parser: argparse.ArgumentParser) -> None:
    """The recipes, the budget's basis and what is written or printed."""
    parser.add_argument('configs', nargs='+', help='distillation recipes')
    parser.add_argument(
        '--by',
        choices=BUDGET_BASES,
        default='time',
        help='what buys the student-only iterations: the measured step '
        'ratio, its FLOP estimate, or equal iterations')
    parser.add_argument('--out',
                        help='write the student-only config here (one CONFIG)')
    parser.add_argument(
        '--reused-cache',
        action='store_true',
        help='a cached recipe: --out buys the iterations without the cache '
        'pass (a cache reused over many runs), not with it amortised')
    parser.add_argument(
        '--storage',
        action='store_true',
        help='print the storage and one-off pass of each CONFIG\'s teacher '
        'cache (cached or online recipe) instead of the budget')
    parser.add_argument(
        '--json',
        help='with --storage: also write the table as a results file here')
    parser.add_argument(
        '--gpus',
        type=int,
        help='training processes of the recipes (default: from the name, '
        '4 in _4xb4-); the cache pass is counted against the online run\'s '
        'iterations x batch x processes')
    parser.add_argument(
        '--crop',
        nargs=2,
        type=int,
        metavar=('H', 'W'),
        help='measure at this crop instead of the recipe\'s (e.g. on a '
        'CPU); the written config keeps the recipe\'s')
    parser.add_argument(
        '--markdown',
        action='store_true',
        help='print a markdown table with the command of each baseline')


def _add_timing_args(parser: argparse.ArgumentParser) -> None:
    """Where and how the steps are timed."""
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='where the steps are timed (default: CUDA if there is one)')
    parser.add_argument(
        '--batch',
        type=int,
        help='timed images per step (default: the recipe\'s per-GPU batch)')
    parser.add_argument(
        '--precision',
        choices=PRECISIONS,
        default='fp32',
        help='timed precision: AmpOptimWrapper on CUDA (as train.py --amp), '
        'autocast on a CPU')
    parser.add_argument(
        '--repeats',
        type=int,
        default=5,
        help='interleaved repeats of the step cost (at least 2)')
    parser.add_argument(
        '--iters',
        type=int,
        default=2,
        help='timed iterations of each per repeat, after one warm-up')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _add_budget_args(parser)
    _add_timing_args(parser)
    args = parser.parse_args()
    check_args(args, parser)
    return args


def check_args(args: argparse.Namespace,
               parser: argparse.ArgumentParser) -> None:
    """Refuse bad input in one line: options that do not go together, and
    CONFIGs that are not recipes or whose budget cannot be counted."""
    if args.out and len(args.configs) != 1:
        parser.error('--out writes the baseline of one CONFIG')
    if args.json and not args.storage:
        parser.error('--json writes the --storage table: add --storage')
    if args.storage and (args.out or args.markdown):
        parser.error('--storage prints the cache table only: drop --out '
                     'and --markdown')
    check_crop(args.crop)
    check_positive(args, ('batch', 'repeats', 'gpus'))
    if args.batch == 1:
        tool_error('--batch 1: must be at least 2 (BN in pooled branches '
                   'needs two values per channel to train)')
    cached = []
    for config in args.configs:
        cfg = check_distillation_recipe(
            load_config(config), config, 'kd_budget compares a '
            'distillation recipe with its student trained alone')
        if is_cached_recipe(cfg):
            cached.append(config)
        if args.storage or is_cached_recipe(cfg):
            try:
                dataset_images(cfg)
                args.gpus or recipe_processes(config)
            except KeyError as error:
                tool_error(f'{config}: {error.args[0]}')
            except ValueError as error:
                tool_error(f'{error} with --gpus')
    if cached and not args.storage and args.by == 'time':
        tool_error(f'{osp.basename(cached[0])} serves its teacher from a '
                   'cache, and timing its step needs the cache on disk: use '
                   '--by flops (a step of the student alone, the cache pass '
                   'by FLOPs) or time it with tools/analysis_tools/'
                   'benchmark_teacher_cache.py')
    if args.reused_cache and not (args.out and cached):
        parser.error('--reused-cache sets what --out writes for a cached '
                     'recipe: give one cached CONFIG and --out')


def cost_recipe(config: str, args: argparse.Namespace) -> StepCost:
    """The step cost of the recipe over its student alone."""
    batch = args.batch or Config.fromfile(config).train_dataloader.batch_size
    if batch < 2:
        raise SystemExit('--batch must be at least 2: BN in pooled branches '
                         'needs two values per channel to train')
    crop = tuple(args.crop) if args.crop else None
    with tempfile.TemporaryDirectory() as tmp:
        root = make_cityscapes(osp.join(tmp, 'cityscapes'),
                               num_train=batch,
                               num_val=0,
                               size=CITYSCAPES_SIZE)
        cfg = load_recipe(config, root, batch, crop)
        if args.precision != 'fp32' and args.device.startswith('cuda'):
            enable_amp(cfg, AMP_DTYPES[args.precision])  # as train.py --amp
        return recipe_step_cost(cfg, args.repeats, args.iters, args.device,
                                args.precision)


Budget = Union[KDBudget, CachedRecipeBudget]


def processes(config: str, args: argparse.Namespace) -> int:
    """The training processes of a recipe: ``--gpus`` or its name's."""
    return args.gpus or recipe_processes(config)


def measure(config: str, args: argparse.Namespace,
            cache: Dict[str, float]) -> Budget:
    """The FLOPs and, with ``--by time``, the step cost of a recipe; of a
    cached recipe, its online recipe's FLOPs and its cache."""
    cfg = Config.fromfile(config)
    if is_cached_recipe(cfg):
        flops = recipe_flops(online_config(cfg), args.crop, cache)
        return cached_recipe_budget(cfg, flops.ratio, processes(config, args))
    cost: Optional[StepCost] = None
    if args.by == 'time':
        cost = cost_recipe(config, args)
    flops = recipe_flops(cfg, args.crop, cache)
    return KDBudget(cfg.train_cfg.max_iters, flops, cost)


def command(config: str, by: str) -> str:
    """The one command that writes and trains a recipe's baseline."""
    name = osp.splitext(osp.basename(config))[0]
    gpus = re.search(r'_(\d+)xb\d+-', name)
    out = f'work_dirs/matched/{name}.py'
    return (f'`python tools/analysis_tools/kd_budget.py {osp.relpath(config)}'
            f' --by {by} --out {out} && bash tools/dist_train.sh {out} '
            f'{gpus.group(1) if gpus else "GPUS"}`')


def basis(budget: Budget, args: argparse.Namespace) -> str:
    """How the student-only iterations were bought, in words."""
    if isinstance(budget, CachedRecipeBudget):
        if args.by == 'iters':
            return 'x 1, its own iterations (the papers\' comparison)'
        if args.reused_cache:
            return ('x 1 (a step of the student alone: the teacher is '
                    'served from a reused cache, its pass not counted)')
        return (f'x 1 (a step of the student alone, the teacher served from '
                f'its cache) + {budget.pass_student_iters:,.0f} for the '
                f'one-off cache pass ({budget.pass_forwards:,.0f} teacher '
                'forwards of a training crop x F_t / (3 F_s x '
                f'{budget.images_per_step} images per step)), by FLOPs')
    ratio = budget.ratio(args.by)
    if args.by == 'iters':
        return 'x 1, its own iterations (the papers\' comparison)'
    if args.by == 'flops':
        return (f'x {ratio:.2f} = 1 + F_t / (3 F_s), the FLOP estimate of '
                'the step ratio')
    crop = 'x'.join(map(str, args.crop)) if args.crop else 'recipe crop'
    cost = budget.cost
    return (f'x {ratio:.2f} [95 % CI {cost.low:.2f}, {cost.high:.2f}], the '
            f'measured step cost ({args.device}, {args.precision}, {crop}, '
            f'batch {args.batch or "of the recipe"}, {cost.repeats} '
            'repeats)')


def write_baseline(config: str, budget: Budget,
                   args: argparse.Namespace) -> None:
    """Write the student-only config of ``config`` to ``args.out``."""
    if isinstance(budget, CachedRecipeBudget):
        iters = budget.student_iters(args.by, not args.reused_cache)
    else:
        iters = budget.student_iters(args.by)
    matched = student_only_config(Config.fromfile(config), iters,
                                  DISTILLATION_HOOKS)
    text = (f'The student of {osp.basename(config)} trained alone, without '
            f'distillation, for {iters} iterations: the recipe\'s '
            f'{budget.iters} {basis(budget, args)}, rounded to a multiple of '
            f'{ITERS_MULTIPLE}. Written by tools/analysis_tools/kd_budget.py '
            'from the recipe: its student, data, optimizer, schedule (scaled) '
            'and runtime; see configs/gskd/README.md, "Compute-matched '
            'baselines".')
    header = ''.join(f'# {line}\n' for line in textwrap.wrap(
        text, 77, break_long_words=False, break_on_hyphens=False))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(header + matched.pretty_text)
    print(f'Wrote {args.out}: the student alone for {iters} iterations')


def cached_table(budgets: Dict[str, CachedRecipeBudget], by: str) -> tuple:
    """The header and rows of the cached recipes' budgets."""
    header = [
        'recipe', 'step ratio (FLOPs)', 'cache', 'one-off pass '
        '(teacher crop forwards)', 'one-off pass (student iterations)'
    ] + [f'storage, {dtype} (GB)' for dtype in STORAGE_DTYPES] + [
        'iterations', f'student-only iterations (by {by}), pass '
        'amortised', f'student-only iterations (by {by}), cache '
        'reused'
    ]
    rows = []
    for name, budget in budgets.items():
        first = next(iter(budget.caches.values()))
        rows.append([
            name, '1.00', f'{first.mode}, {first.views} views per image',
            f'{budget.pass_forwards:,.0f}', f'{budget.pass_student_iters:,.0f}'
        ] + [f'{budget.caches[d].total_gb:.1f}' for d in STORAGE_DTYPES] + [
            str(budget.iters),
            str(budget.student_iters(by, True)),
            str(budget.student_iters(by, False))
        ])
    return header, rows


def git_commit() -> str:
    """The short hash of the code's commit ('' outside a git checkout)."""
    result = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                            cwd=osp.dirname(osp.abspath(__file__)),
                            capture_output=True,
                            text=True)
    return result.stdout.strip()


def print_storage(args: argparse.Namespace) -> None:
    """Print (and with ``--json`` write) the caches' storage table."""
    names = {c: osp.splitext(osp.basename(c))[0] for c in args.configs}
    header, rows = storage_table(
        {names[c]: Config.fromfile(c)
         for c in args.configs},
        {names[c]: processes(c, args)
         for c in args.configs})
    print(markdown_table(header, rows))
    if args.json:
        command = ' '.join(['python tools/analysis_tools/kd_budget.py'] +
                           [osp.relpath(c) for c in args.configs] +
                           ['--storage', '--json',
                            osp.relpath(args.json)])
        provenance = dict(date=datetime.date.today().isoformat(),
                          commit=git_commit(),
                          machine='any: storage and forwards are counted',
                          command=command)
        data = dict(provenance=provenance,
                    tables=dict(storage=dict(header=header, rows=rows)))
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
            f.write('\n')
        print(f'Wrote {args.json}')


def main() -> None:
    args = parse_args()
    register_all_modules(init_default_scope=False)
    if args.storage:
        print_storage(args)
        return
    cache: Dict[str, float] = {}
    budgets = {
        osp.splitext(osp.basename(c))[0]: measure(c, args, cache)
        for c in args.configs
    }
    cached = {
        k: b
        for k, b in budgets.items() if isinstance(b, CachedRecipeBudget)
    }
    if cached:
        header, rows = cached_table(cached, args.by)
        print(
            markdown_table(header, rows) if args.
            markdown else text_table(header, rows))
        print('\nCached recipes: a step runs the student\'s forward and '
              'backward, no teacher; the one-off pass runs the teacher over '
              'images x views of the cache, in forwards of a training crop '
              'and in student iterations (x F_t / (3 F_s x images per '
              'step), F_t and F_s of the online recipe). Amortised: the pass '
              'counted in the run; reused: a cache made once for many runs. '
              'Storage of the usual caches: configs/gskd/README.md, '
              '"Teacher cache: storage and one-off pass".\n')
    budgets = {k: b for k, b in budgets.items() if k not in cached}
    if not budgets:
        if args.out:
            write_baseline(args.configs[0], next(iter(cached.values())), args)
        return
    header, rows = budget_table(budgets, args.by)
    if args.markdown:
        header.append('command')
        for row, config in zip(rows, args.configs):
            row.append(command(config, args.by))
        print(markdown_table(header, rows))
    else:
        print(text_table(header, rows))
        print('\nForward FLOPs per image (mmengine.analysis, one multiply-add'
              ' = one FLOP): the teacher as the algorithm runs it, the '
              'student\'s training forward. Step ratio (FLOPs) = 1 + F_t / '
              '(3 F_s): an estimate that leaves out the losses, connectors, '
              'discriminator and optimizer; the measured step cost (whole '
              'iterations, CPU time on one thread) includes them.')
    if args.out:
        write_baseline(args.configs[0], next(iter(budgets.values())), args)


if __name__ == '__main__':
    main()
