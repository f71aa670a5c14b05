# Copyright (c) gskd-mm contributors. All rights reserved.
"""Show what GSKD compares, for one image and a trained distiller.

For a distillation config with a ``GSKDLoss`` and a checkpoint of it
(student, teacher and the trained ``gskd_projector``), the image goes
through student and teacher as in training; the figure shows the sampled
pixels, the teacher's and the student's global self-similarity maps ``V_t``
and ``V_s`` over the class-balanced samples, their difference, and a few of
the row-shuffled, column-grouped descriptors that the loss matches, with
each descriptor's KL term as the loss computes it
(:func:`gskd_mm.apis.gskd_view`, :mod:`gskd_mm.visualization`).

Example::

    python tools/visualize_gskd.py projects/gskd_demo/configs/dist-gskd_*.py \\
        work_dirs/demo/runs/dist_gskd/seed0/iter_300.pth \\
        ~/.cache/gskd_mm/synthetic_scenes/img_dir/val/val_00000.png
"""
import argparse
import os.path as osp
import warnings

import matplotlib

matplotlib.use('Agg')

from mmengine.logging import print_log  # noqa: E402

from gskd_mm.apis import (default_annotation, gskd_view,  # noqa: E402
                          init_distiller, load_sample)
from gskd_mm.utils.cli import (check_checkpoint,  # noqa: E402
                               check_distillation_recipe, check_file,
                               load_config)
from gskd_mm.visualization import (dataset_classes,  # noqa: E402
                                   plot_gskd_similarity)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Plot the global self-similarity maps and descriptors '
        'that GSKD distils, for one image.')
    parser.add_argument('config', help='distillation config with a GSKDLoss')
    parser.add_argument('checkpoint', help='checkpoint of that distiller')
    parser.add_argument('image', help='image file')
    parser.add_argument(
        '--ann',
        help='its label map (default: the image path with img_dir -> '
        'ann_dir and the dataset\'s seg_map_suffix, if that file exists; '
        'else the teacher\'s prediction stands in for the labels)')
    parser.add_argument(
        '--out', default='gskd_similarity.png', help='output PNG file')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the sampling')
    parser.add_argument(
        '--num-descriptors',
        type=int,
        default=3,
        help='descriptors to show (teacher and student each)')
    args = parser.parse_args()
    check_distillation_recipe(
        load_config(args.config), args.config, 'the figure shows what the '
        'GSKDLoss of a distiller compares', schedule=False)
    check_checkpoint(args.checkpoint)
    check_file(args.image, 'image', 'give an image file')
    check_file(args.ann, 'label map', 'give a label map (png) of the image, '
               'or leave --ann out')
    return args


def main() -> None:
    args = parse_args()
    warnings.filterwarnings('ignore', category=UserWarning, module='mmseg')
    model, cfg = init_distiller(args.config, args.checkpoint)
    ann = args.ann or default_annotation(cfg, args.image)
    result = gskd_view(model, load_sample(cfg, args.image, ann), args.seed)
    class_names, palette = dataset_classes(cfg)
    title = f'{osp.basename(args.config)}\nimage {osp.basename(args.image)}'
    plot_gskd_similarity(result, class_names, palette, args.out, title,
                         args.num_descriptors)
    print_log(f'wrote {args.out}', logger='current')


if __name__ == '__main__':
    main()
