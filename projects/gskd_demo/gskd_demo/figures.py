# Copyright (c) gskd-mm contributors. All rights reserved.
"""Figures of the CPU demo's results: loss curves, mIoU and gap, the
balancer's weights and shares."""
import json
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib import pyplot as plt

from .methods import GSKD_VARIANTS, MethodKey, method_spec
from .results import DemoSummary

# Colour of each demo method in every figure: a family per base recipe,
# its GSKD variants in the family's darker shades; a method at iterations
# of its own (no KD at equal compute) in OTHER_SCHEDULE.
METHOD_COLOURS = {
    'no_kd': '#7f7f7f',
    'dist': '#9ecae1',
    'dist_gskd': '#2171b5',
    'cwd': '#fdae6b',
    'cwd_gskd': '#d94801',
    'cirkd': '#a1d99b',
    'cirkd_gskd': '#238b45',
}
VARIANT_SHADES = dict(
    dist=('#4292c6', '#08519c', '#08306b', '#041a3d'),
    cwd=('#fd8d3c', '#a63603', '#7f2704', '#4d1802'),
    cirkd=('#41ab5d', '#006d2c', '#00441b', '#002a10'))
OTHER_SCHEDULE = '#444444'


def method_colour(key: MethodKey) -> str:
    """The colour of a demo method or sweep variant in every figure."""
    if key.iters is not None:
        return OTHER_SCHEDULE
    if key.variant is None:
        return METHOD_COLOURS[key.base]
    shades = VARIANT_SHADES[key.base]
    return shades[list(GSKD_VARIANTS).index(key.variant) % len(shades)]


def read_scalars(path: str) -> Dict[str, np.ndarray]:
    """Training loss terms of an MMEngine scalar log, by iteration.

    Distillers prefix the student's own losses with ``student.``; that is
    dropped, so that every method's cross-entropy has one name.

    Args:
        path (str): ``vis_data/scalars.json`` of a run.

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
            # Loss terms only: not the gradient diagnostics and balancer
            # values logged beside them (grad_share/<term>, ...).
            if 'loss' in name and name != 'loss' and '/' not in name:
                name = name[len('student.'):] if name.startswith(
                    'student.') else name
                series.setdefault(name, []).append(value)
    return {k: np.asarray(v) for k, v in series.items()}


def plot_loss_curves(summary: DemoSummary, out_file: str) -> str:
    """One panel per loss term, one line per method (mean of seeds).

    Args:
        summary (DemoSummary): The demo's summary (its methods' runs'
            ``scalars`` logs, its settings).
        out_file (str): PNG file to write.

    Returns:
        str: ``out_file``.
    """
    curves: Dict[str, Dict[str, list]] = {}
    for key, method in summary.methods.items():
        for run in method.runs:
            scalars = read_scalars(run.scalars)
            for term, values in scalars.items():
                if term != 'iter':
                    curves.setdefault(term, {}).setdefault(key, []).append(
                        (scalars['iter'], values))
    terms = sorted(curves, key=lambda t: (not t.startswith('decode'), t))
    cols = min(4, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.0 * cols, 3.6 * rows), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        for key, runs in curves[term].items():
            length = min(len(v) for _, v in runs)
            iters = runs[0][0][:length]
            values = np.stack([v[:length] for _, v in runs])
            colour = method_colour(key)
            label = summary.methods[key].label
            ax.plot(iters, values.mean(0), color=colour, label=label, lw=1.6)
            if len(runs) > 1:
                ax.fill_between(
                    iters,
                    values.min(0),
                    values.max(0),
                    color=colour,
                    alpha=0.2)
        ax.set_title(term + (
            ' (student cross-entropy)' if term == 'decode.loss_ce' else ''))
        ax.set_xlabel('iteration')
        ax.set_ylabel('weighted loss')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis('off')
    seeds = summary.settings.seeds
    fig.suptitle(
        'Training loss terms per method (Synthetic Scenes; '
        f'mean over {seeds} seed{"s" if seeds > 1 else ""}'
        f'{", band: min-max" if seeds > 1 else ""})',
        fontsize=13)
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def _bars(ax: plt.Axes, summary: DemoSummary, metric: str,
          scale: float) -> Tuple[List[float], List[float]]:
    methods = summary.methods
    keys = list(methods)
    x = np.arange(len(keys))
    means = [scale * methods[k].stats[metric].mean for k in keys]
    stds = [scale * (methods[k].stats[metric].std or 0.0) for k in keys]
    ax.bar(
        x,
        means,
        yerr=stds if any(stds) else None,
        capsize=5,
        color=[method_colour(k) for k in keys],
        edgecolor='k',
        label='student, mean (± std over seeds)')
    for i, k in enumerate(keys):
        values = [scale * getattr(r, metric) for r in methods[k].runs]
        ax.scatter(
            np.full(len(values), x[i]) + np.linspace(-0.15, 0.15, len(values)),
            values,
            color='k',
            s=12,
            zorder=3,
            label='single seed' if i == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels([methods[k].label for k in keys],
                       rotation=20,
                       ha='right')
    ax.grid(axis='y', alpha=0.3)
    return means, stds


def plot_miou(summary: DemoSummary, out_file: str) -> str:
    """mIoU and structural gap per method: bars (mean), std, seeds.

    Args:
        summary (DemoSummary): The demo's summary.
        out_file (str): PNG file to write.

    Returns:
        str: ``out_file``.
    """
    width = max(15.0, 0.9 * len(summary.methods) + 6)
    fig, (ax, ax_gap) = plt.subplots(
        1, 2, figsize=(width, 5.5), gridspec_kw=dict(width_ratios=[1.3, 1]))
    means, stds = _bars(ax, summary, 'miou', 1.0)
    teacher = summary.teacher.miou
    ax.axhline(
        teacher, color='k', ls='--', lw=1.5, label=f'teacher ({teacher:.1f})')
    base = summary.majority_class_miou
    ax.axhline(
        base,
        color='grey',
        ls=':',
        lw=1.5,
        label=f'majority class everywhere ({base:.1f})')
    ax.set_ylabel('validation mIoU (%)')
    top = max(max(m + s for m, s in zip(means, stds)), teacher)
    ax.set_ylim(0, top * 1.25 + 1)
    n = ', '.join(sorted({str(m.n) for m in summary.methods.values()}))
    ax.set_title(f'Student mIoU on Synthetic Scenes val (n = {n} seeds)')
    ax.legend(loc='upper left', fontsize=8, ncol=2)

    _bars(ax_gap, summary, 'gap', 1e3)
    init = 1e3 * summary.init_gap['kl'].mean
    ax_gap.axhline(
        init,
        color='k',
        ls='-.',
        lw=1.2,
        label=f'student before training ({init:.2f})')
    ax_gap.set_ylabel('structural gap to the teacher (×1e3, lower = closer)')
    ax_gap.set_title('GSKD descriptor KL, student vs teacher features')
    ax_gap.legend(loc='upper right', fontsize=8)
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def plot_balancer(summary: DemoSummary, out_file: str) -> Optional[str]:
    """The balanced terms' weights and shares over training, per method.

    For every method whose runs have a ``GradientShareBalancerHook``
    history: the weight in use after each update (top) and the share of
    the task gradient measured at each update (bottom, log scale, with the
    target), the median over seeds and the band of the middle 80 %.

    Args:
        summary (DemoSummary): The demo's summary.
        out_file (str): PNG file to write.

    Returns:
        str | None: ``out_file``, or None when no method is balanced.
    """
    balanced = {
        key: method
        for key, method in summary.methods.items()
        if all(run.balancer is not None for run in method.runs)
    }
    if not balanced:
        return None
    fig, axes = plt.subplots(
        2, len(balanced), figsize=(4.8 * len(balanced), 6.5), squeeze=False,
        sharex='col')
    for col, (key, method) in enumerate(balanced.items()):
        targets = method_spec(key).balancer['targets']
        for term, target in targets.items():
            history = [[h for h in run.balancer if h.term == term]
                       for run in method.runs]
            length = min(len(h) for h in history)
            iters = [h.iter + 1 for h in history[0][:length]]
            for row, (field, label) in enumerate(
                (('weight', 'loss weight in use'),
                 ('share', 'share of the task gradient'))):
                values = np.array(
                    [[np.nan if getattr(h, field) is None else
                      getattr(h, field) for h in run[:length]]
                     for run in history],
                    dtype=np.float64)
                low, mid, high = np.nanpercentile(values, [10, 50, 90], 0)
                ax = axes[row, col]
                ax.plot(iters, mid, lw=1.8, label=f'{term}, median')
                ax.fill_between(iters, low, high, alpha=0.25,
                                label='10th-90th percentile of seeds')
                ax.set_ylabel(label)
                ax.grid(alpha=0.3)
            axes[1, col].axhline(target, color='k', ls='--', lw=1,
                                 label=f'target {target:g}')
        axes[1, col].set_yscale('log')
        axes[1, col].set_xlabel('iteration')
        axes[0, col].set_title(f'{method.label} (n = {method.n})')
        axes[1, col].legend(fontsize=7)
    fig.suptitle('GradientShareBalancerHook: GSKD\'s weight and its share '
                 'of the task gradient during training')
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def plot_compute(summaries: Sequence[DemoSummary],
                 methods: Sequence[MethodKey],
                 out_file: str) -> str:
    """mIoU against compute: no KD's curve, and every method's schedules.

    Compute is counted in steps of the student alone: a method's schedule
    times its step cost (no KD's iterations for no KD). A method above no
    KD's curve at its compute pays for its teacher; below, the student
    alone would have done better with the same compute.

    Args:
        summaries (Sequence[DemoSummary]): One per schedule, with their
            step costs.
        methods (Sequence[MethodKey]): The distillation methods to draw.
        out_file (str): PNG file to write.

    Returns:
        str: ``out_file``.
    """
    fig, ax = plt.subplots(figsize=(10, 6.5))
    no_kd = {}
    for summary in summaries:
        for key, method in summary.methods.items():
            if key.is_no_kd:
                no_kd[method.iters] = method.stats['miou']
    xs = sorted(no_kd)
    ax.errorbar(xs, [no_kd[x].mean for x in xs],
                yerr=[no_kd[x].std or 0 for x in xs], color='k', marker='o',
                lw=2, capsize=3, label='no KD (± std over seeds)')
    for key in methods:
        points = sorted(
            (s.settings.iters * s.costs[key], s.methods[key].stats['miou'],
             s.methods[key].label) for s in summaries
            if key in s.methods and key in s.costs)
        if not points:
            continue
        ax.errorbar([p[0] for p in points], [p[1].mean for p in points],
                    yerr=[p[1].std or 0 for p in points], marker='s',
                    capsize=3, color=method_colour(key), label=points[0][2])
    ax.set_xscale('log')
    ax.set_xlabel('compute (steps of the student alone: iterations x the '
                  'method\'s step cost)')
    ax.set_ylabel('validation mIoU (%)')
    teacher = summaries[0].teacher.miou
    ax.axhline(teacher, color='grey', ls='--',
               label=f'teacher ({teacher:.1f})')
    ax.set_title('Does distillation pay? mIoU at the compute each run cost '
                 '(Synthetic Scenes)')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8, loc='lower right')
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file
