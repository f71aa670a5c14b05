# Copyright (c) gskd-mm contributors. All rights reserved.
"""CPU demo: distil a small segmenter with and without GSKD, side by side.

On the built-in Synthetic Scenes data (64x64 images, generated once into the
cache), a wide DeepLabV3-R18 teacher is trained once (its checkpoint is
cached, keyed by its config and the data), then a narrow DeepLabV3-R18
student is trained without distillation, with DIST, DIST + GSKD, CWD and
CWD + GSKD, for a few seeds. The recipes (``configs/demo``) use the
project's own distillation pieces and the authors' loss weights; only the
networks, data and schedule are small. At the end it writes a table
(markdown and JSON) and figures into ``--out-dir``:

* ``loss_curves.png``: every loss term during training, per method;
* ``miou.png``: validation mIoU per method, with the teacher;
* ``similarity.png``: what GSKD compares, for one validation image
  (teacher and student self-similarity maps and descriptors, see
  ``tools/visualize_gskd.py``);
* ``predictions.png``: predictions of teacher and students.

Example::

    python tools/demo.py                  # 3 seeds, ~10 min on 2 cores
    python tools/demo.py --seeds 5 --iters 2000  # longer, more seeds
"""
import argparse
import copy
import hashlib
import json
import logging
import os
import os.path as osp
import sys
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import MMLogger, print_log  # noqa: E402
from mmengine.registry import MODELS, DefaultScope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402
from PIL import Image  # noqa: E402

from gskd_mm.datasets import synthetic  # noqa: E402
from gskd_mm.models.losses import GSKDLoss  # noqa: E402
from gskd_mm.utils import register_all_modules  # noqa: E402

# One implementation of the similarity figure and of label colouring.
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import visualize_gskd  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO, 'configs', 'demo')
TEACHER_CONFIG = 'deeplabv3_r18-w32-d8_synthetic-64x64.py'
STUDENT_CONFIG = 'deeplabv3_r18-w8-d8_synthetic-64x64.py'
PAIR = 'deeplabv3_r18-w32-d8_deeplabv3_r18-w8-d8_synthetic-64x64.py'
# key: (label, config); the first is the student without distillation.
METHODS = {
    'no_kd': ('no KD', STUDENT_CONFIG),
    'dist': ('DIST', f'dist_{PAIR}'),
    'dist_gskd': ('DIST + GSKD', f'dist-gskd_{PAIR}'),
    'cwd': ('CWD', f'cwd_{PAIR}'),
    'cwd_gskd': ('CWD + GSKD', f'cwd-gskd_{PAIR}'),
}
# Each GSKD recipe and the baseline it adds GSKD to.
GSKD_PAIRS = {'dist_gskd': 'dist', 'cwd_gskd': 'cwd'}
METHOD_COLOURS = {
    'no_kd': '#7f7f7f',
    'dist': '#9ecae1',
    'dist_gskd': '#2171b5',
    'cwd': '#fdae6b',
    'cwd_gskd': '#d94801',
}
DATA_SEED = 0
TEACHER_SEED = 0
# Part of the teacher cache key: bump when what is cached changes.
TEACHER_CACHE_VERSION = 2
# The demo's own logger: the runs' loggers are quieter.
LOGGER = 'gskd_demo'
# Log lines of MMEngine/MMSeg that say nothing about the demo.
NOISE = ('The prefix is not set in metric class', '"FileClient" will be',
         '"HardDiskBackend" is the alias')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a small student on Synthetic Scenes without '
        'KD, with DIST, DIST + GSKD, CWD and CWD + GSKD, and compare.')
    parser.add_argument(
        '--iters', type=int, default=1000, help='iterations per student')
    parser.add_argument(
        '--teacher-iters',
        type=int,
        default=1500,
        help='iterations of the teacher (trained once, then cached)')
    parser.add_argument(
        '--seeds', type=int, default=3, help='seeds per student method')
    parser.add_argument(
        '--methods',
        nargs='+',
        default=list(METHODS),
        choices=list(METHODS),
        help='student methods to run')
    parser.add_argument(
        '--num-train', type=int, default=300, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=60, help='validation images')
    parser.add_argument(
        '--batch-size', type=int, default=8, help='training batch size')
    parser.add_argument(
        '--out-dir', default='work_dirs/demo', help='table, figures, runs')
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


# ------------------------------------------------------------------ configs
def load_config(name: str, data_root: str, generate_cfg: dict, iters: int,
                batch_size: int, seed: int) -> Config:
    """A demo config with the demo's data, schedule and seed.

    Args:
        name (str): Config file in ``configs/demo``.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        iters (int): Training iterations (validation and the checkpoint
            come at the end).
        batch_size (int): Training batch size.
        seed (int): Seed of the run.

    Returns:
        Config: The config (without work_dir).
    """
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        cfg[loader].dataset.generate_cfg = generate_cfg
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for scheduler in cfg.param_scheduler:
        scheduler.end = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = max(1, iters // 50)
    cfg.randomness = dict(seed=seed)
    return cfg


class _Quiet(logging.Filter):
    """Drop known, harmless log lines of MMEngine and MMSeg."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(NOISE)


class DemoHook(Hook):
    """Progress bar, step times, GSKD loss time and validation metrics.

    The GSKD time is the forward of every ``GSKDLoss`` (pre- and post-
    forward hooks) plus its backward, timed from the gradient reaching the
    loss's output to the gradient reaching its student input (tensor
    hooks); the projector in front of it is not included.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self.iter_times: List[float] = []
        self.gskd_times: List[float] = []
        self.metrics: Dict[str, float] = {}
        self._bar: Optional[ProgressBar] = None
        self._start = 0.0
        self._gskd = 0.0
        self._marks: Dict[str, float] = {}

    def before_train(self, runner) -> None:
        for module in runner.model.modules():
            if isinstance(module, GSKDLoss):
                module.register_forward_pre_hook(
                    self._gskd_start, with_kwargs=True)
                module.register_forward_hook(self._gskd_end)
        self._bar = ProgressBar(runner.max_iters)

    def _gskd_start(self, module, args, kwargs) -> None:
        preds = kwargs.get('preds_S', args[0] if args else None)
        if isinstance(preds, torch.Tensor) and preds.requires_grad:
            preds.register_hook(self._backward_end)
        self._marks['forward'] = time.perf_counter()

    def _gskd_end(self, module, args, output) -> None:
        self._gskd += time.perf_counter() - self._marks['forward']
        if output.requires_grad:
            output.register_hook(self._backward_start)

    def _backward_start(self, grad: torch.Tensor) -> None:
        self._marks['backward'] = time.perf_counter()

    def _backward_end(self, grad: torch.Tensor) -> None:
        self._gskd += time.perf_counter() - self._marks['backward']

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._gskd = 0.0
        self._start = time.perf_counter()

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self.iter_times.append(time.perf_counter() - self._start)
        self.gskd_times.append(self._gskd)
        self._bar.update()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = {k: float(v) for k, v in (metrics or {}).items()}

    def after_train(self, runner) -> None:
        sys.stdout.write('\n')


def build_runner(cfg: Config, work_dir: str, name: str,
                 log_level: str) -> Runner:
    """The MMEngine Runner of one demo run, its known noise filtered.

    Args:
        cfg (Config): The config; its work_dir, experiment name and log
            level are set here.
        work_dir (str): Work dir of the run.
        name (str): Experiment name (unique within the process).
        log_level (str): Log level of the run.

    Returns:
        Runner: The runner.
    """
    cfg.work_dir = work_dir
    cfg.experiment_name = name
    cfg.log_level = log_level
    runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(_Quiet())
    return runner


def train(cfg: Config, work_dir: str, name: str, log_level: str) -> dict:
    """Train (and validate) one config with the MMEngine Runner.

    Args:
        cfg (Config): The config.
        work_dir (str): Its work_dir.
        name (str): Experiment name (unique within the process).
        log_level (str): Log level of the run.

    Returns:
        dict: ``miou`` and all validation metrics, ``wall_s`` (build, train,
        validation, checkpoint), ``iter_ms`` (median training step),
        ``gskd_ms`` (median GSKD loss forward + backward per step, 0 without
        GSKD), ``checkpoint``, ``scalars`` (the MMEngine scalar log).
    """
    start = time.perf_counter()
    runner = build_runner(cfg, work_dir, name, log_level)
    hook = DemoHook()
    runner.register_hook(hook)
    runner.train()
    wall = time.perf_counter() - start
    # Steady state: the first steps (allocations, lazy init) are left out.
    steady = hook.iter_times[min(5, len(hook.iter_times) - 1):]
    gskd = hook.gskd_times[min(5, len(hook.gskd_times) - 1):]
    result = dict(
        miou=float(hook.metrics['mIoU']),
        metrics=hook.metrics,
        wall_s=wall,
        iter_ms=1e3 * float(np.median(steady)),
        gskd_ms=1e3 * float(np.median(gskd)),
        checkpoint=osp.join(runner.work_dir,
                            f'iter_{cfg.train_cfg.max_iters}.pth'),
        scalars=osp.join(runner.log_dir, 'vis_data', 'scalars.json'))
    del runner
    return result


def evaluate_untrained(cfg: Config, work_dir: str, name: str,
                       log_level: str) -> float:
    """Validation mIoU of a config's network as built, before training.

    Args:
        cfg (Config): The config (not changed).
        work_dir (str): Work dir of the validation run.
        name (str): Experiment name (unique within the process).
        log_level (str): Log level of the run.

    Returns:
        float: mIoU (%).
    """
    runner = build_runner(copy.deepcopy(cfg), work_dir, name, log_level)
    return float(runner.val()['mIoU'])


def num_params(cfg: Config) -> Dict[str, int]:
    """Parameters of student, teacher and projectors of a distill config."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        cfg = cfg.copy()
        cfg.model.teacher_ckpt = None
        model = MODELS.build(cfg.model)
    counts = dict(
        student=sum(p.numel() for p in model.architecture.parameters()),
        teacher=sum(p.numel() for p in model.teacher.parameters()))
    for name, connector in model.distiller.connectors.items():
        counts[name] = sum(p.numel() for p in connector.parameters())
    return counts


# ------------------------------------------------------------------ teacher
def teacher_run(args: argparse.Namespace, data_root: str, generate_cfg: dict,
                cache_dir: str) -> dict:
    """Train the teacher, or reuse the cached one of the same setting.

    The same network is also evaluated untrained (as initialised with the
    teacher's seed): the baseline that training has to beat. The cache key
    hashes the teacher's full config (data, schedule, seed included), the
    dataset's rendering version and the cache layout.

    Args:
        args (argparse.Namespace): Command line arguments.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        cache_dir (str): gskd-mm cache directory.

    Returns:
        dict: As :func:`train`, plus ``untrained_miou``, ``cached`` and
        ``config``.
    """
    cfg = load_config(TEACHER_CONFIG, data_root, generate_cfg,
                      args.teacher_iters, args.batch_size, TEACHER_SEED)
    key_text = cfg.pretty_text + json.dumps(
        dict(
            generate_cfg,
            format_version=synthetic.FORMAT_VERSION,
            cache_version=TEACHER_CACHE_VERSION),
        sort_keys=True)
    key = hashlib.sha1(key_text.encode()).hexdigest()[:12]
    entry = osp.join(cache_dir, 'demo', f'teacher-{key}')
    ckpt = osp.join(entry, 'teacher.pth')
    info = osp.join(entry, 'teacher.json')
    if osp.isfile(ckpt) and osp.isfile(info):
        with open(info) as f:
            result = json.load(f)
        print_log(
            f'Teacher: cached ({entry}), mIoU {result["miou"]:.2f}',
            logger=LOGGER)
        return dict(result, checkpoint=ckpt, cached=True)

    print_log(
        f'Teacher: training {args.teacher_iters} iterations (once; cached '
        f'in {entry})',
        logger=LOGGER)
    untrained = evaluate_untrained(cfg, osp.join(args.out_dir, 'untrained'),
                                   f'demo_untrained_{key}_{os.getpid()}',
                                   args.log_level)
    print_log(f'Teacher untrained: mIoU {untrained:.2f}', logger=LOGGER)
    result = train(cfg, osp.join(args.out_dir, 'teacher'),
                   f'demo_teacher_{key}_{os.getpid()}', args.log_level)
    result['untrained_miou'] = untrained
    # Only the weights are kept (a file that torch's weights-only loading,
    # hence MMRazor's `teacher_ckpt`, reads); written aside, then moved in
    # one step.
    os.makedirs(entry, exist_ok=True)
    tmp = f'{ckpt}.tmp{os.getpid()}'
    torch.save(
        dict(
            state_dict=visualize_gskd.load_state_dict(result['checkpoint']),
            meta=dict(
                config=TEACHER_CONFIG,
                iters=args.teacher_iters,
                dataset_classes=list(synthetic.CLASSES))), tmp)
    os.replace(tmp, ckpt)
    stored = {k: v for k, v in result.items() if k != 'checkpoint'}
    with open(info, 'w') as f:
        json.dump(dict(stored, config=TEACHER_CONFIG), f, indent=2)
    print_log(f'Teacher: mIoU {result["miou"]:.2f}', logger=LOGGER)
    return dict(result, checkpoint=ckpt, cached=False)


# ------------------------------------------------------------------ results
def summarise(args: argparse.Namespace, teacher: dict, runs: dict,
              baseline: float, params: Dict[str, int], total_s: float) -> dict:
    """Collect everything of the table into one JSON-able dict."""
    methods = {}
    for key, method_runs in runs.items():
        mious = np.array([r['miou'] for r in method_runs])
        methods[key] = dict(
            label=METHODS[key][0],
            config=osp.join('configs', 'demo', METHODS[key][1]),
            n=len(mious),
            miou_mean=float(mious.mean()),
            miou_std=float(mious.std(ddof=1)) if len(mious) > 1 else None,
            wall_s_mean=float(np.mean([r['wall_s'] for r in method_runs])),
            iter_ms=float(np.median([r['iter_ms'] for r in method_runs])),
            gskd_ms=float(np.median([r['gskd_ms'] for r in method_runs])),
            runs=method_runs)
    overhead = {}
    for gskd, base in GSKD_PAIRS.items():
        if gskd in methods and base in methods:
            step, base_step = methods[gskd]['iter_ms'], methods[base][
                'iter_ms']
            overhead[gskd] = dict(
                baseline=base,
                extra_iter_ms=step - base_step,
                extra_iter_pct=100 * (step - base_step) / base_step,
                gskd_loss_pct_of_step=100 * methods[gskd]['gskd_ms'] / step)
    return dict(
        dataset=dict(
            name='Synthetic Scenes',
            num_train=args.num_train,
            num_val=args.num_val,
            img_size=64,
            num_classes=len(synthetic.CLASSES)),
        settings=dict(
            iters=args.iters,
            teacher_iters=args.teacher_iters,
            batch_size=args.batch_size,
            seeds=args.seeds,
            torch_threads=torch.get_num_threads()),
        params=params,
        teacher=teacher,
        majority_class_miou=baseline,
        methods=methods,
        gskd_overhead=overhead,
        total_wall_s=total_s)


def _fmt_miou(method: dict) -> str:
    if method['miou_std'] is None:
        return f'{method["miou_mean"]:.2f}'
    return f'{method["miou_mean"]:.2f} ± {method["miou_std"]:.2f}'


def markdown_table(summary: dict) -> str:
    """The results as a markdown table with notes."""
    teacher, methods = summary['teacher'], summary['methods']
    params, settings = summary['params'], summary['settings']
    no_kd = methods.get('no_kd')
    lines = [
        '| model | val mIoU (%) | n | Δ vs no KD | wall time / run (s) '
        '| step (ms) | GSKD loss fwd+bwd (ms / step) |',
        '|---|---|---|---|---|---|---|',
        f'| teacher, DeepLabV3-R18 w32 ({params["teacher"] / 1e6:.2f} M) | '
        f'{teacher["miou"]:.2f} | 1 | | {teacher["wall_s"]:.0f}'
        f'{" (cached)" if teacher["cached"] else ""} | '
        f'{teacher["iter_ms"]:.0f} | |',
    ]
    for key, m in methods.items():
        delta = ('' if no_kd is None or key == 'no_kd' else
                 f'{m["miou_mean"] - no_kd["miou_mean"]:+.2f}')
        gskd = f'{m["gskd_ms"]:.1f}' if m['gskd_ms'] > 0 else ''
        lines.append(f'| student {m["label"]} | {_fmt_miou(m)} | {m["n"]} | '
                     f'{delta} | {m["wall_s_mean"]:.0f} | '
                     f'{m["iter_ms"]:.0f} | {gskd} |')
    lines.append(f'| teacher network untrained | '
                 f'{teacher["untrained_miou"]:.2f} | 1 | | | | |')
    lines.append(f'| majority class everywhere | '
                 f'{summary["majority_class_miou"]:.2f} | | | | | |')
    notes = [
        '',
        f'Synthetic Scenes, {summary["dataset"]["num_train"]} train / '
        f'{summary["dataset"]["num_val"]} val images of 64x64, '
        f'{summary["dataset"]["num_classes"]} classes. Student '
        f'DeepLabV3-R18 w8 ({params["student"] / 1e6:.2f} M parameters), '
        f'{settings["iters"]} iterations of batch '
        f'{settings["batch_size"]} per run; teacher '
        f'{settings["teacher_iters"]} iterations. mIoU: mean ± sample '
        'std over seeds. Step: median wall time of a training iteration '
        f'on {settings["torch_threads"]} CPU thread(s). GSKD loss fwd+bwd: '
        'median time per step inside GSKDLoss (forward hooks, and backward '
        'from its output to its student input; projector excluded).',
    ]
    for gskd, o in summary['gskd_overhead'].items():
        notes.append(
            f'{methods[gskd]["label"]} vs {methods[o["baseline"]]["label"]}'
            f': step {o["extra_iter_ms"]:+.1f} ms '
            f'({o["extra_iter_pct"]:+.1f} %, projector and GSKD loss); the '
            f'GSKD loss alone is {o["gskd_loss_pct_of_step"]:.1f} % of the '
            'step.')
    if summary['gskd_overhead']:
        notes.append('Step times are the median over the seeds of each '
                     "run's median step; differences of a few ms are within "
                     'the noise of a shared CPU.')
    notes.append(f'Total wall time: {summary["total_wall_s"]:.0f} s.')
    return '\n'.join(lines + notes) + '\n'


# ----------------------------------------------------------------- figures
def read_scalars(path: str) -> Dict[str, np.ndarray]:
    """Training loss terms of an MMEngine scalar log, by iteration.

    Distillers prefix the student's own losses with ``student.``; that is
    dropped, so that every method's cross-entropy has one name.

    Returns:
        dict: ``iter`` and one array per loss term.
    """
    series: Dict[str, list] = {'iter': []}
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    records = [r for r in records if 'loss' in r and 'iter' in r]
    for record in records:
        series['iter'].append(record['iter'])
        for name, value in record.items():
            if 'loss' in name and name != 'loss':
                name = name[len('student.'):] if name.startswith(
                    'student.') else name
                series.setdefault(name, []).append(value)
    return {k: np.asarray(v) for k, v in series.items()}


def plot_loss_curves(summary: dict, out_file: str) -> str:
    """(a) One panel per loss term, one line per method (mean of seeds)."""
    curves: Dict[str, Dict[str, list]] = {}
    for key, method in summary['methods'].items():
        for run in method['runs']:
            scalars = read_scalars(run['scalars'])
            for term, values in scalars.items():
                if term != 'iter':
                    curves.setdefault(term, {}).setdefault(key, []).append(
                        (scalars['iter'], values))
    terms = sorted(curves, key=lambda t: (not t.startswith('decode'), t))
    cols = min(3, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        for key, runs in curves[term].items():
            length = min(len(v) for _, v in runs)
            iters = runs[0][0][:length]
            values = np.stack([v[:length] for _, v in runs])
            label = summary['methods'][key]['label']
            ax.plot(
                iters,
                values.mean(0),
                color=METHOD_COLOURS[key],
                label=label,
                lw=1.6)
            if len(runs) > 1:
                ax.fill_between(
                    iters,
                    values.min(0),
                    values.max(0),
                    color=METHOD_COLOURS[key],
                    alpha=0.2)
        ax.set_title(term + (
            ' (student cross-entropy)' if term == 'decode.loss_ce' else ''))
        ax.set_xlabel('iteration')
        ax.set_ylabel('weighted loss')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis('off')
    seeds = summary['settings']['seeds']
    fig.suptitle(
        'Training loss terms per method (Synthetic Scenes; '
        f'mean over {seeds} seed{"s" if seeds > 1 else ""}'
        f'{", band: min-max" if seeds > 1 else ""})',
        fontsize=13)
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def plot_miou(summary: dict, out_file: str) -> str:
    """(b) mIoU per method: bars (mean), error bars (std), dots (seeds)."""
    methods = summary['methods']
    keys = list(methods)
    x = np.arange(len(keys))
    means = [methods[k]['miou_mean'] for k in keys]
    stds = [methods[k]['miou_std'] or 0.0 for k in keys]
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.bar(
        x,
        means,
        yerr=stds if any(stds) else None,
        capsize=6,
        color=[METHOD_COLOURS[k] for k in keys],
        edgecolor='k',
        label='student, mean (± std over seeds)')
    for i, k in enumerate(keys):
        values = [r['miou'] for r in methods[k]['runs']]
        ax.scatter(
            np.full(len(values), x[i]) + np.linspace(-0.15, 0.15, len(values)),
            values,
            color='k',
            s=14,
            zorder=3,
            label='single seed' if i == 0 else None)
        ax.text(
            x[i],
            means[i] + stds[i] + 0.8,
            f'{means[i]:.1f}',
            ha='center',
            va='bottom',
            fontsize=10)
    teacher = summary['teacher']['miou']
    ax.axhline(
        teacher, color='k', ls='--', lw=1.5, label=f'teacher ({teacher:.1f})')
    untrained = summary['teacher']['untrained_miou']
    ax.axhline(
        untrained,
        color='k',
        ls='-.',
        lw=1.2,
        label=f'teacher network untrained ({untrained:.1f})')
    base = summary['majority_class_miou']
    ax.axhline(
        base,
        color='grey',
        ls=':',
        lw=1.5,
        label=f'majority class everywhere ({base:.1f})')
    ax.set_xticks(x)
    ax.set_xticklabels([methods[k]['label'] for k in keys])
    ax.set_xlabel('student distillation method')
    ax.set_ylabel('validation mIoU (%)')
    top = max(max(m + s for m, s in zip(means, stds)), teacher)
    ax.set_ylim(0, top * 1.18 + 1)
    n = ', '.join(sorted({str(methods[k]['n']) for k in keys}))
    ax.set_title('Student mIoU on Synthetic Scenes val '
                 f'(n = {n} seed(s) per method)')
    ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=9)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def load_segmentor(config: str, checkpoint: str) -> torch.nn.Module:
    """A plain MMSeg model: the config's model, or a distiller's student.

    Args:
        config (str): Model or distillation config.
        checkpoint (str): Its checkpoint.

    Returns:
        nn.Module: The segmentor in eval mode.
    """
    cfg = Config.fromfile(config)
    model_cfg, prefix = cfg.model, ''
    if 'architecture' in model_cfg:
        model_cfg, prefix = model_cfg.architecture, 'architecture.'
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(model_cfg)
    state = visualize_gskd.load_state_dict(checkpoint)
    model.load_state_dict({
        k[len(prefix):]: v
        for k, v in state.items() if k.startswith(prefix)
    })
    return model.eval()


def plot_predictions(summary: dict, data_root: str, generate_cfg: dict,
                     indices: Sequence[int], out_file: str) -> str:
    """(d) Image, labels, teacher and students (first seed) per image."""
    from mmseg.registry import DATASETS
    cfg = load_config(STUDENT_CONFIG, data_root, generate_cfg, 1, 1, 0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(cfg.val_dataloader.dataset)
    batch = pseudo_collate([dataset[i] for i in indices])
    models = [('teacher', osp.join(CONFIG_DIR, TEACHER_CONFIG),
               summary['teacher']['checkpoint'], summary['teacher']['miou'])]
    for key, method in summary['methods'].items():
        run = method['runs'][0]
        config = osp.join(CONFIG_DIR, METHODS[key][1])
        models.append((f'student {method["label"]}', config, run['checkpoint'],
                       run['miou']))
    preds = []
    for _, config, ckpt, _ in models:
        with torch.no_grad():
            out = load_segmentor(config, ckpt).test_step(batch)
        preds.append([o.pred_sem_seg.data[0].numpy() for o in out])

    names, palette = synthetic.CLASSES, synthetic.PALETTE
    cols = 2 + len(models)
    fig, axes = plt.subplots(
        len(indices),
        cols,
        figsize=(2.1 * cols, 2.3 * len(indices) + 1.3),
        squeeze=False)
    for row, sample in enumerate(batch['data_samples']):
        image = batch['inputs'][row].flip(0).permute(1, 2, 0).numpy()
        gt = sample.gt_sem_seg.data[0].numpy()
        labelled = gt != synthetic.IGNORE_INDEX
        panels = [(image, 'image', None),
                  (visualize_gskd.colorize(gt, palette), 'ground truth', None)]
        for (name, _, _, miou), model_preds in zip(models, preds):
            pred = model_preds[row]
            acc = 100 * (pred[labelled] == gt[labelled]).mean()
            panels.append((visualize_gskd.colorize(pred, palette),
                           f'{name}\n(val mIoU {miou:.1f})', acc))
        for col, (picture, title, acc) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(picture, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
            if acc is not None:
                ax.text(
                    1,
                    1,
                    f'acc. {acc:.0f}%',
                    color='w',
                    fontsize=8,
                    va='top',
                    bbox=dict(facecolor='k', alpha=0.6, pad=1.5))
        axes[row, 0].set_ylabel(osp.basename(sample.img_path), fontsize=8)
    fig.legend(
        handles=visualize_gskd.class_legend(names, palette),
        loc='lower center',
        ncol=len(names) + 1,
        fontsize=9,
        title='classes (colours of labels and predictions)')
    fig.suptitle(
        'Predictions on Synthetic Scenes val images (students: first seed; '
        'acc.: pixel accuracy on the labelled pixels of the image)',
        fontsize=12)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def richest_val_images(data_root: str, count: int) -> List[int]:
    """Indices of the validation images with the most labelled classes."""
    richness = []
    for name in synthetic.split_names(data_root, 'val'):
        label = np.asarray(
            Image.open(osp.join(data_root, 'ann_dir', 'val', name + '.png')))
        present = np.unique(label[label != synthetic.IGNORE_INDEX])
        richness.append(len(present))
    return [int(i) for i in np.argsort(richness, kind='stable')[::-1][:count]]


def majority_class_miou(data_root: str) -> float:
    """Val mIoU (%) of predicting the most frequent class everywhere.

    Every present class but the majority one has IoU 0; the majority class
    has IoU = its share of the labelled pixels (as MMSeg's IoUMetric
    counts them over the whole split).
    """
    counts = synthetic.class_pixel_counts(data_root, 'val')[:-1]
    present = counts > 0
    return float(100 * counts.max() / counts.sum() / present.sum())


# -------------------------------------------------------------------- main
def prepare_data(args: argparse.Namespace) -> Tuple[str, dict]:
    """Generate the dataset into the cache (once); return root and params.

    The default size lives at ``<cache>/synthetic_scenes``, where the
    dataset class looks by default; other sizes get their own directory.
    """
    generate_cfg = dict(
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=64,
        seed=DATA_SEED)
    default_size = (args.num_train, args.num_val) == (300, 60)
    data_root = osp.join(
        synthetic.default_cache_dir(), 'synthetic_scenes' if default_size else
        f'synthetic_scenes_{args.num_train}-{args.num_val}')
    print_log(f'Data: {data_root}', logger=LOGGER)
    fresh = not osp.isfile(osp.join(data_root, 'meta.json'))
    synthetic.generate_synthetic_scenes(data_root, **generate_cfg)
    if fresh:  # end the line of the generation's progress bar
        sys.stdout.write('\n')
    return data_root, generate_cfg


def run_all(args: argparse.Namespace, data_root: str,
            generate_cfg: dict) -> dict:
    """Train the teacher (or reuse it) and every student; summarise."""
    start = time.perf_counter()
    teacher = teacher_run(args, data_root, generate_cfg,
                          synthetic.default_cache_dir())
    runs: Dict[str, list] = {key: [] for key in args.methods}
    total, done = args.seeds * len(args.methods), 0
    for seed in range(args.seeds):
        for key in args.methods:
            done += 1
            label, config = METHODS[key]
            print_log(
                f'[{done}/{total}] student {label}, seed {seed}: '
                f'{args.iters} iterations',
                logger=LOGGER)
            cfg = load_config(config, data_root, generate_cfg, args.iters,
                              args.batch_size, seed)
            if 'teacher_ckpt' in cfg.model:
                cfg.model.teacher_ckpt = teacher['checkpoint']
            work_dir = osp.join(args.out_dir, 'runs', key, f'seed{seed}')
            result = train(cfg, work_dir,
                           f'demo_{key}_seed{seed}_{os.getpid()}',
                           args.log_level)
            result['seed'] = seed
            runs[key].append(result)
            print_log(
                f'    mIoU {result["miou"]:.2f}, {result["wall_s"]:.0f} s',
                logger=LOGGER)
    params = num_params(
        load_config(METHODS['dist_gskd'][1], data_root, generate_cfg, 1, 1, 0))
    summary = summarise(args, teacher, runs, majority_class_miou(data_root),
                        params,
                        time.perf_counter() - start)
    summary['dataset'].update(data_root=data_root, generate_cfg=generate_cfg)
    return summary


def draw_figures(summary: dict, out_dir: str) -> Dict[str, str]:
    """Write every figure of the demo; return their paths by name."""
    data_root = summary['dataset']['data_root']
    generate_cfg = summary['dataset']['generate_cfg']
    methods = summary['methods']
    figures = dict(
        loss_curves=plot_loss_curves(summary,
                                     osp.join(out_dir, 'loss_curves.png')),
        miou=plot_miou(summary, osp.join(out_dir, 'miou.png')))
    images = richest_val_images(data_root, 3)
    gskd_key = next((k for k in GSKD_PAIRS if k in methods), None)
    if gskd_key is not None:
        name = synthetic.split_names(data_root, 'val')[images[0]]
        figures['similarity'] = osp.join(out_dir, 'similarity.png')
        visualize_gskd.visualize(
            osp.join(CONFIG_DIR, METHODS[gskd_key][1]),
            methods[gskd_key]['runs'][0]['checkpoint'],
            osp.join(data_root, 'img_dir', 'val', name + '.png'),
            figures['similarity'],
            title=f'Synthetic Scenes (synthetic data): student '
            f'{methods[gskd_key]["label"]}, first seed, after '
            f'{summary["settings"]["iters"]} iterations; val image {name}')
    figures['predictions'] = plot_predictions(
        summary, data_root, generate_cfg, images,
        osp.join(out_dir, 'predictions.png'))
    return figures


def main() -> None:
    args = parse_args()
    warnings.filterwarnings('ignore', category=UserWarning, module='mmseg')
    warnings.filterwarnings('ignore', category=UserWarning, module='mmcv')
    register_all_modules(init_default_scope=False)
    MMLogger.get_instance(LOGGER, log_level='INFO').addFilter(_Quiet())
    os.makedirs(args.out_dir, exist_ok=True)
    results = osp.join(args.out_dir, 'results.json')

    if args.plot_only:
        with open(results) as f:
            summary = json.load(f)
    else:
        start = time.perf_counter()
        data_root, generate_cfg = prepare_data(args)
        summary = run_all(args, data_root, generate_cfg)
        with open(results, 'w') as f:  # kept should a figure fail
            json.dump(summary, f, indent=2)
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
        f'Wrote {args.out_dir}/results.{{md,json}} and '
        f'{", ".join(osp.basename(p) for p in summary["figures"].values())}',
        logger=LOGGER)


if __name__ == '__main__':
    main()
