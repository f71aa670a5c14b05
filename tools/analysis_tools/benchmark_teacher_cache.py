# Copyright (c) gskd-mm contributors. All rights reserved.
"""The price of a distillation step with a teacher cache.

Times a training step of a recipe's student alone, of the recipe with its
online teacher and of the recipe served from a teacher cache (made first by
``tools/cache_teacher.py``), on one batch, in alternating rounds
(:func:`gskd_mm.teacher_cache.budget.time_cached_steps`), and prints each
round's median and the step ratios to the student alone. Numbers belong in
docs/en/benchmarks.md.

Example::

    python tools/analysis_tools/benchmark_teacher_cache.py \
        projects/gskd_demo/configs/dist_<...>.py --cache DIR \
        --checkpoint teacher.pth --batch 4
"""
import argparse
from statistics import median

from mmengine.config import Config

from gskd_mm.utils import register_all_modules


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(
        description='Time student, online and cached distillation steps')
    parser.add_argument('config', help='the recipe')
    parser.add_argument('--cache', required=True, help='its teacher cache')
    parser.add_argument('--checkpoint', help='the teacher weights the '
                        'cache was made with (the cache checks them)')
    parser.add_argument('--batch', type=int, help='images per step')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--mode', choices=['dense', 'replay'],
                        default='dense')
    parser.add_argument('--num-views', type=int, help='replay: K')
    return parser.parse_args()


def main() -> None:
    """Time and print."""
    args = parse_args()
    register_all_modules(init_default_scope=False)
    from gskd_mm.teacher_cache.budget import time_cached_steps
    cfg = Config.fromfile(args.config)
    if args.checkpoint:
        cfg.model.teacher_ckpt = args.checkpoint
    settings = dict(mode=args.mode)
    if args.num_views:
        settings['num_views'] = args.num_views
    times = time_cached_steps(cfg, args.cache, args.batch, args.rounds,
                              args.repeats, **settings)
    student = median(times['student'])
    for name, rounds in times.items():
        print(f'{name}: median step {1000 * median(rounds):.1f} ms '
              f'(rounds: {", ".join(f"{1000 * t:.1f}" for t in rounds)}); '
              f'{median(rounds) / student:.2f}x the student alone')


if __name__ == '__main__':
    main()
