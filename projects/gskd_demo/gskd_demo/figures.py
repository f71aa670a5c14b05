# Copyright (c) gskd-mm contributors. All rights reserved.
"""Figures of the CPU demo: loss curves, mIoU and gap, predictions."""
import json
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from matplotlib import pyplot as plt
from torch import nn

from gskd_mm.visualization.similarity import class_legend, colorize

# Colour of each demo method in every figure.
METHOD_COLOURS = {
    'no_kd': '#7f7f7f',
    'dist': '#9ecae1',
    'dist_gskd': '#2171b5',
    'cwd': '#fdae6b',
    'cwd_gskd': '#d94801',
    'cirkd': '#a1d99b',
    'cirkd_gskd': '#238b45',
}


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
            if 'loss' in name and name != 'loss':
                name = name[len('student.'):] if name.startswith(
                    'student.') else name
                series.setdefault(name, []).append(value)
    return {k: np.asarray(v) for k, v in series.items()}


def plot_loss_curves(summary: dict, out_file: str) -> str:
    """One panel per loss term, one line per method (mean of seeds).

    Args:
        summary (dict): The demo's summary (``methods`` with their runs'
            ``scalars`` logs, ``settings``).
        out_file (str): PNG file to write.

    Returns:
        str: ``out_file``.
    """
    curves: Dict[str, Dict[str, list]] = {}
    for key, method in summary['methods'].items():
        for run in method['runs']:
            scalars = read_scalars(run['scalars'])
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
            colour = METHOD_COLOURS.get(key)
            label = summary['methods'][key]['label']
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


def _bars(ax: plt.Axes, summary: dict, mean_key: str, std_key: str,
          run_key: str, scale: float) -> Tuple[List[float], List[float]]:
    methods = summary['methods']
    keys = list(methods)
    x = np.arange(len(keys))
    means = [scale * methods[k][mean_key] for k in keys]
    stds = [scale * (methods[k][std_key] or 0.0) for k in keys]
    ax.bar(
        x,
        means,
        yerr=stds if any(stds) else None,
        capsize=5,
        color=[METHOD_COLOURS.get(k) for k in keys],
        edgecolor='k',
        label='student, mean (± std over seeds)')
    for i, k in enumerate(keys):
        values = [scale * r[run_key] for r in methods[k]['runs']]
        ax.scatter(
            np.full(len(values), x[i]) + np.linspace(-0.15, 0.15, len(values)),
            values,
            color='k',
            s=12,
            zorder=3,
            label='single seed' if i == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels([methods[k]['label'] for k in keys],
                       rotation=20,
                       ha='right')
    ax.grid(axis='y', alpha=0.3)
    return means, stds


def plot_miou(summary: dict, out_file: str) -> str:
    """mIoU and structural gap per method: bars (mean), std, seeds.

    Args:
        summary (dict): The demo's summary.
        out_file (str): PNG file to write.

    Returns:
        str: ``out_file``.
    """
    fig, (ax, ax_gap) = plt.subplots(
        1, 2, figsize=(15, 5.5), gridspec_kw=dict(width_ratios=[1.3, 1]))
    means, stds = _bars(ax, summary, 'miou_mean', 'miou_std', 'miou', 1.0)
    teacher = summary['teacher']['miou']
    ax.axhline(
        teacher, color='k', ls='--', lw=1.5, label=f'teacher ({teacher:.1f})')
    base = summary['majority_class_miou']
    ax.axhline(
        base,
        color='grey',
        ls=':',
        lw=1.5,
        label=f'majority class everywhere ({base:.1f})')
    ax.set_ylabel('validation mIoU (%)')
    top = max(max(m + s for m, s in zip(means, stds)), teacher)
    ax.set_ylim(0, top * 1.25 + 1)
    n = ', '.join(sorted({str(m['n']) for m in summary['methods'].values()}))
    ax.set_title(f'Student mIoU on Synthetic Scenes val (n = {n} seeds)')
    ax.legend(loc='upper left', fontsize=8, ncol=2)

    _bars(ax_gap, summary, 'gap_mean', 'gap_std', 'gap', 1e3)
    init = 1e3 * summary['init_gap']['kl']['mean']
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


def plot_predictions(models: Sequence[Tuple[str, nn.Module, float]],
                     batch: dict,
                     class_names: Sequence[str],
                     palette: Sequence[Sequence[int]],
                     out_file: str,
                     ignore_index: int = 255) -> str:
    """Image, labels and every model's prediction, one row per image.

    Args:
        models (Sequence[tuple]): ``(name, segmentor, val mIoU)`` per model,
            segmentors in eval mode.
        batch (dict): A collated batch of packed samples with labels.
        class_names (Sequence[str]): Names of the classes.
        palette (Sequence): RGB colour of every class.
        out_file (str): PNG file to write.
        ignore_index (int): Label of unlabelled pixels. Defaults to 255.

    Returns:
        str: ``out_file``.
    """
    preds = []
    for _, model, _ in models:
        with torch.no_grad():
            out = model.test_step(batch)
        preds.append([o.pred_sem_seg.data[0].numpy() for o in out])
    cols = 2 + len(models)
    rows = len(batch['data_samples'])
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.1 * cols, 2.3 * rows + 1.3), squeeze=False)
    for row, sample in enumerate(batch['data_samples']):
        image = batch['inputs'][row].flip(0).permute(1, 2, 0).numpy()
        gt = sample.gt_sem_seg.data[0].numpy()
        labelled = gt != ignore_index
        panels = [(image, 'image', None),
                  (colorize(gt, palette, ignore_index), 'ground truth', None)]
        for (name, _, miou), model_preds in zip(models, preds):
            pred = model_preds[row]
            acc = 100 * (pred[labelled] == gt[labelled]).mean()
            panels.append((colorize(pred, palette, ignore_index),
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
        axes[row, 0].set_ylabel(sample.img_path.split('/')[-1], fontsize=8)
    fig.legend(
        handles=class_legend(class_names, palette),
        loc='lower center',
        ncol=len(class_names) + 1,
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
