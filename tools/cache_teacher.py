# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run a recipe's teacher once over its training set into a teacher cache.

The cache holds, for every training image and view (full images at a set
of scales, each flip the pipeline makes), what the recipe's teacher
recorders record; cached recipes (``CachedTeacherDistill``) then train from
it without the teacher (docs/en/user_guides/teacher_cache.md).

Example::

    python tools/cache_teacher.py configs/gskd/<recipe>.py \
        --out data/teacher_cache/<recipe>
    bash tools/dist_cache_teacher.sh configs/gskd/<recipe>.py 4 --out DIR

A killed pass resumes: run the same command again (completed shards are
kept). Processes take shards ``rank::world_size``.
"""
import argparse

from mmengine.config import Config, DictAction
from mmengine.device import get_device
from mmengine.dist import get_dist_info, init_dist

from gskd_mm.utils import destroy_process_group, register_all_modules


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(
        description='Cache a recipe\'s teacher over its training set')
    parser.add_argument('config', help='the recipe (online or cached)')
    parser.add_argument(
        '--checkpoint', help='teacher weights (default: the recipe\'s '
        'teacher_ckpt)')
    parser.add_argument(
        '--out', help='cache directory (default: the recipe\'s '
        'model.teacher_cache.root)')
    parser.add_argument(
        '--mode', choices=['dense', 'replay'], help='dense: full images at '
        'a few scales and flips; replay: K draws of the training pipeline '
        'per image (default: the recipe\'s teacher_cache.mode, else dense)')
    parser.add_argument(
        '--num-views', type=int, help='replay mode: views per image (K)')
    parser.add_argument(
        '--seed', type=int, help='replay mode: seed of the views')
    parser.add_argument(
        '--scales', type=float, nargs='+', help='resize ratios of the '
        'cached views (default: 3 over the RandomResize range)')
    parser.add_argument(
        '--dtype', choices=['fp16', 'fp32', 'int8'], default='fp16',
        help='storage dtype (int8: a scale per map)')
    parser.add_argument(
        '--recorder-dtype', nargs='+', action=DictAction, default={},
        help='per recorder dtypes, e.g. feat=int8 logits=fp16')
    parser.add_argument(
        '--shard-size', type=int, default=16, help='images per shard')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config (as in tools/train.py)')
    return parser.parse_args()


def main() -> None:
    """Make the cache."""
    args = parse_args()
    register_all_modules(init_default_scope=False)
    from gskd_mm.teacher_cache.cache_pass import run_cache_pass
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    device = get_device()
    if args.launcher == 'pytorch' and device != 'cuda':
        # MMEngine's init_dist needs CUDA: CPU processes use gloo.
        import torch.distributed as torch_dist
        torch_dist.init_process_group('gloo')
    elif args.launcher != 'none':
        init_dist(args.launcher)
        import torch
        device = f'cuda:{torch.cuda.current_device()}'
    try:
        out = run_cache_pass(
            cfg,
            out=args.out,
            checkpoint=args.checkpoint,
            scales=args.scales,
            dtype=args.dtype,
            dtypes=args.recorder_dtype,
            shard_size=args.shard_size,
            device=device,
            mode=args.mode,
            num_views=args.num_views,
            seed=args.seed)
        if get_dist_info()[0] == 0:
            print(f'\nteacher cache written to {out}')
    finally:
        if args.launcher != 'none':
            destroy_process_group()


if __name__ == '__main__':
    main()
