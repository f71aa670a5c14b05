# Copyright (c) gskd-mm contributors. All rights reserved.
"""CPU demo: distil a small segmenter with and without GSKD, side by side.

On the built-in Synthetic Scenes data (64x64 images, generated once into the
cache), a wider DeepLabV3-R18 teacher is trained once (its checkpoint is
cached), then a narrow DeepLabV3-R18 student is trained, paired by seed
(runs of one seed share the student's initial weights and the data order):

- by default (``make demo``), without distillation and with DIST,
  DIST from the teacher cache (``dist_cached``), DIST + GSKD (the
  authors') and DIST + GSKD-row-t1, for 8 seeds; it says what that many
  seeds can and cannot resolve;
- with ``--study`` (``make study``), every method of ``configs/`` (DIST,
  CWD, CIRKD, each alone and with the authors' GSKD) and, on each base,
  every GSKD variant of ``GSKD_VARIANTS`` (``gskd_demo/methods.py``), the
  balanced one included, for 40 seeds;
- with ``--sweep``, per base recipe of ``--bases``: the base, the authors'
  GSKD and the variants of ``--variants``;
- with ``--compute`` (``make compute ITERS=600``), the compute-matched
  study of the teacher cache at a schedule: no KD, DIST, DIST cached,
  CWD, CWD cached and DIST + GSKD-row-t1 cached, for 20 seeds;
- with ``--measure-costs`` (``make costs``), no training study: the step
  cost of every method over the student's own, written to
  ``projects/gskd_demo/step_costs.json``;
- with ``--export-teacher``, no study: the teacher of ``--teacher-iters``
  trained (or taken from the cache) and written, with its provenance, as
  the shipped teacher (``projects/gskd_demo/checkpoints``).

The teacher of the default setting ships with the repository: the demo
loads it (its SHA-256 checked) instead of training one; any other
``--teacher-iters`` (or data size, or teacher batch size) trains a teacher
once and caches it.

Except in the sweep, every distillation method is also compared with no KD
trained for the iterations its steps cost (``--no-matched`` leaves those
runs out), and every method with no KD at equal iterations. A cached
method (``<method>_cached``) trains from the library's dense teacher cache,
made once per teacher, data and recipe by the demo (its one-off cost
logged); it gets no KD at equal compute two ways: its cache pass amortised
over the run, and not (the cache reused over many runs).

The runs train in parallel processes (``--workers``, one per CPU core by
default), each on one thread. Besides mIoU, every student's structural gap
to the teacher is measured, and each GSKD recipe or variant is compared
with its base recipe, paired by seed, with a 95 % t interval. It writes a
table (markdown and JSON) and figures into ``--out-dir``. Finished runs are
kept (``<out-dir>/runs/*/*/result.json``) and not run again, so a stopped
run resumes. The work is done by ``projects/gskd_demo/gskd_demo``.

Example::

    python projects/gskd_demo/demo.py            # make demo
    python projects/gskd_demo/demo.py --study    # make study
    python projects/gskd_demo/demo.py --compute --iters 600 --seeds 20
    python projects/gskd_demo/demo.py --sweep --bases dist --iters 600 \\
        --variants gskd-row-t1 gskd-row-t1-bal --seeds 20
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Tuple

import matplotlib

# The repository root, from which the demo's module and its configs' dataset
# type are imported (``projects.gskd_demo.gskd_demo``), as MMSeg's projects.
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

matplotlib.use('Agg')

from mmengine.logging import print_log  # noqa: E402

from projects.gskd_demo.gskd_demo import (  # noqa: E402
    CACHEABLE, COMPUTE_METHODS, COSTS_FILE, GSKD_VARIANTS, LOGGER, METHODS,
    QUICK_METHODS, DemoSummary, MethodKey, draw_figures, markdown_table,
    matched_methods, measure_costs, paired_differences, plot_compute,
    read_costs, resolution_note, run_demo, schedules_table, setup_process,
    study_methods, sweep_methods)
from projects.gskd_demo.gskd_demo.data import prepare_data  # noqa: E402
from projects.gskd_demo.gskd_demo.dataset import \
    default_cache_dir  # noqa: E402
from projects.gskd_demo.gskd_demo.teacher import (  # noqa: E402
    SHIPPED_TEACHER_ITERS, export_teacher)

# Seeds of `make demo` (about 6 minutes on 2 cores), of the full study and
# of every cell of the compute-matched study.
QUICK_SEEDS = 8
STUDY_SEEDS = 40
COMPUTE_SEEDS = 20


def method_key(text: str) -> MethodKey:
    """A method key of the command line (``--methods``)."""
    try:
        return MethodKey.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The students' runs: schedule, seeds, methods."""
    parser.add_argument(
        '--iters', type=int, default=150, help='iterations per student')
    parser.add_argument(
        '--teacher-iters',
        type=int,
        default=SHIPPED_TEACHER_ITERS,
        help='iterations of the teacher; the default is the shipped '
        f'teacher\'s ({SHIPPED_TEACHER_ITERS}), whose weights are loaded '
        'instead of trained; any other trains one (once, then cached)')
    parser.add_argument(
        '--seeds',
        type=int,
        default=None,
        help=f'seeds per student method (default: {QUICK_SEEDS}; '
        f'{STUDY_SEEDS} with --study or --sweep)')
    parser.add_argument(
        '--methods',
        nargs='+',
        type=method_key,
        default=list(QUICK_METHODS),
        help='student methods to run: keys of METHODS ('
        f'{", ".join(METHODS)}) or sweep variants <base>_<variant>, with '
        f'_cached for a method on {", ".join(CACHEABLE)} trained from the '
        'teacher cache (default: no KD, DIST, DIST cached, DIST + GSKD, '
        'DIST + GSKD-row-t1)')


def add_mode_args(parser: argparse.ArgumentParser) -> None:
    """The studies and the compute matching."""
    parser.add_argument(
        '--study',
        action='store_true',
        help='the full study: every method, and every GSKD variant on '
        'every base recipe')
    parser.add_argument(
        '--compute',
        action='store_true',
        help='the compute-matched study at --iters: no KD, DIST, DIST '
        'cached, CWD, CWD cached and DIST + GSKD-row-t1 cached, each '
        'against no KD at equal iterations and at equal compute (a cached '
        f'method two ways) ({COMPUTE_SEEDS} seeds)')
    parser.add_argument(
        '--matched',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='add no KD trained for the iterations each distillation '
        'method\'s steps cost (its step cost ratio, step_costs.json); '
        '--no-matched leaves them out')
    parser.add_argument(
        '--measure-costs',
        action='store_true',
        help='measure the step cost ratio of every method of the study '
        'and of the cached methods of the demo and --compute (and their '
        'cache passes) (one worker, fresh runs, an idle machine) and write '
        'projects/gskd_demo/step_costs.json')


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """The data, batches and processes."""
    parser.add_argument(
        '--export-teacher',
        action='store_true',
        help='train the teacher of --teacher-iters (or take it from the '
        'cache) and write it, with its provenance, as the shipped teacher '
        '(projects/gskd_demo/checkpoints/demo_teacher.{pth,json})')
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


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
    """The sweep."""
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


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """Where results go, and what is only redrawn."""
    parser.add_argument(
        '--out-dir',
        default=None,
        help='table, figures, runs (default: work_dirs/demo, '
        'work_dirs/demo_study with --study, work_dirs/demo_sweep with '
        '--sweep)')
    parser.add_argument(
        '--combine',
        nargs='+',
        metavar='DIR',
        help='only gather the compute-matched results of these out dirs (one '
        'per schedule) into one table and figure in --out-dir')
    parser.add_argument(
        '--plot-only',
        action='store_true',
        help='only redraw the figures and table of the results.json in '
        '--out-dir')
    parser.add_argument(
        '--log-level',
        default='WARNING',
        help='log level of the training runs (INFO shows their logs)')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a small student on Synthetic Scenes without KD '
        'and with every demo recipe, paired by seed, and compare.')
    add_run_args(parser)
    add_mode_args(parser)
    add_training_args(parser)
    add_sweep_args(parser)
    add_output_args(parser)
    return parser.parse_args()


def chosen_methods(
    args: argparse.Namespace
) -> Tuple[Optional[str], List[MethodKey], Optional[Dict[MethodKey, float]],
           Optional[Dict[MethodKey, float]]]:
    """The mode (None: the quick demo), its methods and, when
    ``--matched`` (not in the sweep), the step costs and cache passes that
    add the student alone at each method's budget."""
    mode = next((m for m in ('sweep', 'study', 'compute')
                 if getattr(args, m)), None)
    methods = dict(
        sweep=lambda: sweep_methods(args.bases, args.variants),
        study=study_methods,
        compute=lambda: list(COMPUTE_METHODS)).get(mode,
                                                   lambda: args.methods)()
    costs = passes = None
    if args.matched and mode != 'sweep':
        costs = read_costs()
        # A pass's cost grows with the images it runs the teacher over.
        images = read_costs(field='pass_images')
        passes = {
            key: iters * args.num_train / images[key]
            for key, iters in read_costs(field='pass_iters').items()
        }
        methods += matched_methods(methods, args.iters, costs, passes)
    return mode, methods, costs, passes


def measure(args: argparse.Namespace) -> None:
    """``--measure-costs``: time every method of the study and write the
    step cost ratios."""
    methods = study_methods() + [
        m for m in dict.fromkeys(COMPUTE_METHODS + QUICK_METHODS) if m.cached
    ]
    costs = measure_costs(methods, args.out_dir, args.teacher_iters,
                          args.num_train, args.num_val)
    with open(COSTS_FILE, 'w') as f:
        json.dump(costs, f, indent=2)
    print_log(
        f'Wrote {COSTS_FILE}:\n' + '\n'.join(
            f'  {key}: {m["iteration_ms"]:.1f} ms, {m["ratio"]:.2f}x'
            for key, m in costs['methods'].items()),
        logger=LOGGER)


def export(args: argparse.Namespace) -> None:
    """``--export-teacher``: write the shipped teacher and its provenance."""
    command = ('python projects/gskd_demo/demo.py --export-teacher '
               f'--teacher-iters {args.teacher_iters} --teacher-batch-size '
               f'{args.teacher_batch_size} --num-train {args.num_train} '
               f'--num-val {args.num_val}')
    data_root, generate_cfg = prepare_data(args.num_train, args.num_val)
    export_teacher(args.out_dir, data_root, generate_cfg, args.teacher_iters,
                   args.teacher_batch_size, args.log_level,
                   default_cache_dir(), command)


def combine(args: argparse.Namespace) -> None:
    """``--combine``: the compute-matched results of several schedules."""
    summaries = []
    for out_dir in args.combine:
        with open(osp.join(out_dir, 'results.json')) as f:
            summaries.append(DemoSummary.from_json(json.load(f)))
    methods = list(dict.fromkeys(
        key for summary in summaries for key in summary.methods
        if not key.is_no_kd and key.iters is None))
    table = schedules_table(summaries, methods)
    with open(osp.join(args.out_dir, 'compute.md'), 'w') as f:
        f.write(table)
    figure = plot_compute(summaries, methods,
                          osp.join(args.out_dir, 'compute.png'))
    print_log(f'\n{table}\nWrote {args.out_dir}/compute.md, {figure}',
              logger=LOGGER)


def main() -> None:
    args = parse_args()
    if args.combine:
        args.out_dir = args.out_dir or 'work_dirs/demo_compute'
        os.makedirs(args.out_dir, exist_ok=True)
        setup_process()
        return combine(args)
    if args.export_teacher:
        args.out_dir = args.out_dir or 'work_dirs/demo_teacher'
        os.makedirs(args.out_dir, exist_ok=True)
        setup_process()
        return export(args)
    mode, methods, costs, passes = (None, [], None, None) \
        if args.measure_costs else chosen_methods(args)
    if args.out_dir is None:
        name = 'costs' if args.measure_costs else mode
        args.out_dir = f'work_dirs/demo_{name}' if name else 'work_dirs/demo'
        if mode == 'compute':
            args.out_dir += f'_{args.iters}'
    if args.seeds is None:
        args.seeds = dict(compute=COMPUTE_SEEDS).get(
            mode, STUDY_SEEDS if mode else QUICK_SEEDS)
    setup_process()
    os.makedirs(args.out_dir, exist_ok=True)
    if args.measure_costs:
        return measure(args)
    results = osp.join(args.out_dir, 'results.json')

    start = time.perf_counter()
    if args.plot_only:
        with open(results) as f:
            summary = DemoSummary.from_json(json.load(f))
        # The comparisons of this version of the demo, from the runs.
        summary.paired = paired_differences(
            {k: m.runs for k, m in summary.methods.items()},
            summary.settings.iters, summary.costs,
            pass_costs=summary.pass_costs)
    else:
        summary = run_demo(
            methods, args.seeds, args.iters, args.teacher_iters,
            args.batch_size, args.teacher_batch_size, args.num_train,
            args.num_val, args.out_dir, args.log_level, args.workers, costs,
            passes)
        with open(results, 'w') as f:  # kept should a figure fail
            json.dump(summary.to_json(), f, indent=2)
    print_log('Figures ...', logger=LOGGER)
    # The many methods of the sweep and the studies: no per-method panels.
    summary.figures = draw_figures(
        summary, args.out_dir, per_method=mode is None)
    if not args.plot_only:
        summary.total_wall_s = time.perf_counter() - start
    write_report(args, mode, summary, results)


def write_report(args: argparse.Namespace, mode: Optional[str],
                 summary: DemoSummary, results: str) -> None:
    """Write the table and the summary; print the table, and for the quick
    demo what its seeds resolve."""
    table = markdown_table(summary)
    with open(osp.join(args.out_dir, 'results.md'), 'w') as f:
        f.write(table)
    with open(results, 'w') as f:
        json.dump(summary.to_json(), f, indent=2)
    print_log('\n' + table, logger=LOGGER)
    print_log(
        f'Wrote {args.out_dir}/results.{{md,json}}' + ''.join(
            f', {osp.basename(p)}' for p in summary.figures.values()),
        logger=LOGGER)
    if mode is None:
        print_log(
            '\n' + resolution_note(summary, STUDY_SEEDS,
                                   len(study_methods())),
            logger=LOGGER)


if __name__ == '__main__':
    main()
