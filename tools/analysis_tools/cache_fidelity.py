# Copyright (c) gskd-mm contributors. All rights reserved.
"""How close a teacher cache's targets are to the online teacher's.

Draws training samples through the recipe's real pipeline and compares,
on each crop, the targets the cache serves with the online teacher's:
argmax agreement and KL of the softened logits, feature cosine, and each
distillation loss with either target; by scale and flip
(:func:`gskd_mm.teacher_cache.fidelity.cache_fidelity`). The results
are also written to the cache's ``fidelity.json``, which the warning about
crops at uncached scales quotes.

Example::

    python tools/analysis_tools/cache_fidelity.py CONFIG \
        --cache data/teacher_cache/<recipe> --num-samples 64
"""
import argparse
import json

from mmengine.config import Config, DictAction

from gskd_mm.utils import register_all_modules


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(
        description='Compare cached and online teacher targets')
    parser.add_argument('config', help='the recipe (online or cached)')
    parser.add_argument(
        '--cache', help='cache directory (default: the recipe\'s '
        'model.teacher_cache.root)')
    parser.add_argument('--checkpoint', help='teacher weights, as given to '
                        'tools/cache_teacher.py')
    parser.add_argument('--num-samples', type=int, default=32)
    parser.add_argument('--seed', type=int, default=0, help='of the draws')
    parser.add_argument(
        '--mode', choices=['dense', 'replay'], help='the cache\'s mode '
        '(default: the recipe\'s, else dense)')
    parser.add_argument('--num-views', type=int, help='replay: K')
    parser.add_argument('--cache-seed', type=int, help='replay: its seed')
    parser.add_argument('--out', help='also write the results as JSON')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config')
    return parser.parse_args()


def main() -> None:
    """Measure and print the table."""
    args = parse_args()
    register_all_modules(init_default_scope=False)
    from gskd_mm.teacher_cache.fidelity import (cache_fidelity,
                                                 fidelity_table,
                                                 save_fidelity)
    from gskd_mm.teacher_cache import cache_settings
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    settings = dict(cache_settings(cfg))
    root = args.cache or settings.pop('root', None)
    settings.pop('root', None)
    for key, value in (('mode', args.mode), ('num_views', args.num_views),
                       ('seed', args.cache_seed)):
        if value is not None:
            settings[key] = value
    results = cache_fidelity(
        cfg, root, args.num_samples, args.checkpoint, args.seed, **settings)
    print('\n' + fidelity_table(results))
    # Kept with the cache: the warning of crops served from the nearest
    # cached scale quotes it.
    save_fidelity(root, results)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
