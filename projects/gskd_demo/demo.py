# Copyright (c) gskd-mm contributors. All rights reserved.
"""CPU demo: distil a small segmenter with and without GSKD, side by side.

On the built-in Synthetic Scenes data (64x64 images, generated once into the
cache), a wider DeepLabV3-R18 teacher is trained once (its checkpoint is
cached), then a narrow DeepLabV3-R18 student is trained without
distillation and with DIST, DIST + GSKD, CWD, CWD + GSKD, CIRKD and
CIRKD + GSKD, for 40 seeds; runs of one seed share the student's
initial weights and the data order. The runs train in parallel processes
(``--workers``, one per CPU core by default), each on one thread. The
recipes (``configs/``) use the project's own distillation pieces and the
authors' loss weights; only the networks, data and schedule are small.
Besides mIoU, every student's structural gap to the teacher is measured
(GSKD's descriptor KL on the validation images), and each GSKD recipe is
compared with its base recipe, paired by seed, with a 95 % t interval. It
writes a table (markdown and JSON) and figures into ``--out-dir``:
``loss_curves.png``, ``miou.png`` (mIoU and structural gap),
``similarity.png`` (what GSKD compares on one image) and
``predictions.png``. The work is done by ``projects/gskd_demo/gskd_demo``.

With ``--sweep`` it runs, for each base recipe (DIST, CWD, CIRKD), the base,
the base with the authors' GSKD and with every GSKD variant
(``GSKD_VARIANTS`` in ``gskd_demo/methods.py``), and writes the paired table
and JSON only (no figures). Finished runs are kept (``<out-dir>/runs/*/*/
result.json``) and not run again, so a stopped demo or sweep resumes.

Example::

    python projects/gskd_demo/demo.py        # the defaults of make demo
    python projects/gskd_demo/demo.py --sweep --out-dir work_dirs/demo_sweep
    python projects/gskd_demo/demo.py --seeds 8 --iters 600 --batch-size 8
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import matplotlib

# The repository root, from which the demo's module and its configs' dataset
# type are imported (``projects.gskd_demo.gskd_demo``), as MMSeg's projects.
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

matplotlib.use('Agg')

from mmengine.logging import print_log  # noqa: E402

from projects.gskd_demo.gskd_demo import (  # noqa: E402
    GSKD_VARIANTS, LOGGER, METHODS, draw_figures, markdown_table, run_demo,
    setup_process, sweep_methods)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a small student on Synthetic Scenes without KD '
        'and with every demo recipe, paired by seed, and compare.')
    parser.add_argument(
        '--iters', type=int, default=150, help='iterations per student')
    parser.add_argument(
        '--teacher-iters',
        type=int,
        default=800,
        help='iterations of the teacher (trained once, then cached)')
    parser.add_argument(
        '--seeds', type=int, default=40, help='seeds per student method')
    parser.add_argument(
        '--methods',
        nargs='+',
        default=list(METHODS),
        choices=list(METHODS),
        help='student methods to run')
    parser.add_argument(
        '--num-train', type=int, default=300, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=200, help='validation images')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=4,
        help='training batch size of the students')
    parser.add_argument(
        '--workers',
        type=int,
        default=os.cpu_count() or 1,
        help='processes that train the students in parallel, one CPU '
        'thread each (default: one per CPU core); results do not depend on '
        'it')
    parser.add_argument(
        '--teacher-batch-size',
        type=int,
        default=8,
        help='training batch size of the teacher')
    parser.add_argument(
        '--sweep',
        action='store_true',
        help='run the sweep instead: per base recipe of --bases, the base, '
        'the authors\' GSKD and every GSKD variant of --variants (table '
        'and JSON, no figures)')
    parser.add_argument(
        '--bases',
        nargs='+',
        default=['dist', 'cwd', 'cirkd'],
        choices=['dist', 'cwd', 'cirkd'],
        help='base recipes of the sweep')
    parser.add_argument(
        '--variants',
        nargs='+',
        default=list(GSKD_VARIANTS),
        choices=list(GSKD_VARIANTS),
        help='GSKD variants of the sweep')
    parser.add_argument(
        '--out-dir',
        default=None,
        help='table, figures, runs (default: work_dirs/demo, or '
        'work_dirs/demo_sweep with --sweep)')
    parser.add_argument(
        '--plot-only',
        action='store_true',
        help='only redraw the figures and table of the results.json in '
        '--out-dir')
    parser.add_argument(
        '--log-level',
        default='WARNING',
        help='log level of the training runs (INFO shows their logs)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.out_dir is None:
        args.out_dir = 'work_dirs/demo_sweep' if args.sweep \
            else 'work_dirs/demo'
    methods = sweep_methods(args.bases, args.variants) if args.sweep \
        else args.methods
    setup_process()
    os.makedirs(args.out_dir, exist_ok=True)
    results = osp.join(args.out_dir, 'results.json')

    start = time.perf_counter()
    if args.plot_only:
        with open(results) as f:
            summary = json.load(f)
    else:
        summary = run_demo(methods, args.seeds, args.iters,
                           args.teacher_iters, args.batch_size,
                           args.teacher_batch_size, args.num_train,
                           args.num_val, args.out_dir, args.log_level,
                           args.workers)
        with open(results, 'w') as f:  # kept should a figure fail
            json.dump(summary, f, indent=2)
    if args.sweep:
        summary['figures'] = {}
    else:
        print_log('Figures ...', logger=LOGGER)
        summary['figures'] = draw_figures(summary, args.out_dir)
    if not args.plot_only:
        summary['total_wall_s'] = time.perf_counter() - start

    table = markdown_table(summary)
    with open(osp.join(args.out_dir, 'results.md'), 'w') as f:
        f.write(table)
    with open(results, 'w') as f:
        json.dump(summary, f, indent=2)
    print_log('\n' + table, logger=LOGGER)
    print_log(
        f'Wrote {args.out_dir}/results.{{md,json}}' + ''.join(
            f', {osp.basename(p)}' for p in summary['figures'].values()),
        logger=LOGGER)


if __name__ == '__main__':
    main()
