# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's figure of predictions: teacher and students side by side."""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib import pyplot as plt
from torch import nn

from gskd_mm.visualization.similarity import class_legend, colorize


def _draw_panel(ax: plt.Axes, picture: np.ndarray, title: str,
                acc: Optional[float], with_title: bool) -> None:
    """One panel: a picture, its title (``with_title``: the first row) and
    its pixel accuracy, if any."""
    ax.imshow(picture, interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])
    if with_title:
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
        for col, panel in enumerate(panels):
            _draw_panel(axes[row, col], *panel, with_title=row == 0)
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
