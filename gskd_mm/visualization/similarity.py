# Copyright (c) gskd-mm contributors. All rights reserved.
"""Figures of segmentation labels and of what GSKD compares."""
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.gridspec import GridSpec
from matplotlib.patches import Patch
from mmengine.config import Config
from mmengine.registry import DefaultScope

if TYPE_CHECKING:
    from ..apis import GSKDView

SIM_CMAP = 'viridis'
DIFF_CMAP = 'PuOr_r'


def colorize(label: np.ndarray,
             palette: Sequence[Sequence[int]],
             ignore_index: int = 255) -> np.ndarray:
    """Colour a label map; ``ignore_index`` (and unknown labels) in grey.

    Args:
        label (np.ndarray): (H, W) integer labels.
        palette (Sequence): RGB colour of every class.
        ignore_index (int): Label drawn in light grey. Defaults to 255.

    Returns:
        np.ndarray: (H, W, 3) uint8 image.
    """
    lut = np.full((256, 3), 200, dtype=np.uint8)
    lut[:len(palette)] = np.asarray(palette, dtype=np.uint8)
    lut[ignore_index] = (200, 200, 200)
    return lut[np.clip(label, 0, 255).astype(np.int64)]


def class_legend(class_names: Sequence[str],
                 palette: Sequence[Sequence[int]],
                 classes: Optional[Sequence[int]] = None,
                 ignore: bool = True) -> list:
    """Legend patches of the given classes (all by default) and ignore."""
    if classes is None:
        classes = range(len(class_names))
    handles = [
        Patch(color=np.asarray(palette[c]) / 255, label=class_names[c])
        for c in classes
    ]
    if ignore:
        handles.append(Patch(color=(0.78, 0.78, 0.78), label='ignored (255)'))
    return handles


def _mark_classes(ax: plt.Axes,
                  classes: np.ndarray,
                  block: int,
                  class_names: Sequence[str],
                  x: bool = True) -> None:
    """Lines between class blocks of the samples and class tick labels."""
    edges = np.arange(1, len(classes)) * block - 0.5
    centres = np.arange(len(classes)) * block + (block - 1) / 2
    names = [class_names[c] for c in classes]
    for edge in edges:
        ax.axhline(edge, color='w', lw=1)
        if x:
            ax.axvline(edge, color='w', lw=1)
    ax.set_yticks(centres)
    ax.set_yticklabels(names, fontsize=8)
    if x:
        ax.set_xticks(centres)
        ax.set_xticklabels(names, fontsize=8, rotation=45, ha='right')


def plot_gskd_similarity(result: 'GSKDView',
                         class_names: Sequence[str],
                         palette: Sequence[Sequence[int]],
                         out_file: str,
                         title: Optional[str] = None,
                         num_descriptors: int = 3) -> str:
    """Draw the figure of :func:`gskd_mm.apis.gskd_view`'s result.

    Args:
        result (GSKDView): Output of :func:`gskd_mm.apis.gskd_view`.
        class_names (Sequence[str]): Names of the classes.
        palette (Sequence): RGB colour of every class.
        out_file (str): PNG file to write.
        title (str, optional): First line of the figure title.
        num_descriptors (int): Descriptors to show. Defaults to 3.

    Returns:
        str: ``out_file``.
    """
    n, classes = result.num_samples, result.classes
    num_desc = min(num_descriptors, len(result.desc_t))
    # One colour scale for every similarity panel: up to 1 (the diagonal),
    # down to the lowest similarity of either network.
    vmin = min(0.0, float(result.V_t.min()), float(result.V_s.min()))

    fig = plt.figure(figsize=(21, 10.5))
    top = GridSpec(
        1,
        5,
        figure=fig,
        left=0.04,
        right=0.955,
        top=0.88,
        bottom=0.53,
        wspace=0.6,
        width_ratios=[1, 1, 1.15, 1.15, 1.15])
    _plot_samples(fig.add_subplot(top[0]), result, palette)
    _plot_labels(fig.add_subplot(top[1]), result, class_names, palette)
    _plot_similarities(fig, top, result, class_names, vmin)
    _plot_descriptors(fig, result, class_names, vmin, num_desc)

    lines = [title] if title else []
    lines.append(
        f'GSKD on this image: {len(classes)} class(es) x N={n} samples, '
        f'{len(result.desc_t)} descriptors of {result.desc_t.shape[2]}'
        f' columns (row-wise shuffled); T={result.tau:g}, weight '
        f'{result.loss_weight:g}: loss = {result.loss:.4g}')
    fig.suptitle('\n'.join(lines), fontsize=13)
    fig.text(
        0.5,
        0.43,
        'Semi-global descriptors: every row of $V$ has its columns shuffled '
        '(same permutation for teacher and student), then the columns are '
        'cut into groups; GSKD matches each group with KL(teacher || '
        'student).',
        ha='center',
        fontsize=11)
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def _plot_samples(ax, result: 'GSKDView',
                  palette: Sequence[Sequence[int]]) -> None:
    """The image with the sampled pixels."""
    image = result.image
    h, w = result.feat_valid.shape
    scale_y, scale_x = image.shape[0] / h, image.shape[1] / w
    ax.imshow(image)
    rows, cols = np.divmod(result.index, w)
    ax.scatter(
        (cols + 0.5) * scale_x - 0.5, (rows + 0.5) * scale_y - 0.5,
        c=np.asarray(palette)[result.sample_class] / 255,
        s=36,
        edgecolors='k',
        linewidths=0.8)
    ax.set_title(f'image and the {len(result.index)} sampled pixels\n'
                 f'({result.num_samples} per class; colour = class)')
    ax.set_xlabel('x (pixels)')
    ax.set_ylabel('y (pixels)')


def _plot_labels(ax, result: 'GSKDView', class_names: Sequence[str],
                 palette: Sequence[Sequence[int]]) -> None:
    """The labels, darkened where nothing may be sampled."""
    h, w = result.feat_valid.shape
    scale_y = result.image.shape[0] / h
    scale_x = result.image.shape[1] / w
    ax.imshow(colorize(result.labels, palette))
    blocked = np.kron(~result.feat_valid,
                      np.ones((int(scale_y), int(scale_x))))
    ax.imshow(
        np.zeros(blocked.shape + (4, )) + [0, 0, 0, 0.55] * blocked[..., None],
        interpolation='nearest')
    which = 'teacher prediction' if result.pseudo_labels else 'labels'
    ax.set_title(f'{which} at {h}x{w} feature stride;\n'
                 'dark: not sampled (ignored / teacher wrong)')
    ax.set_xlabel('x (pixels)')
    ax.set_yticks([])
    ax.legend(
        handles=class_legend(class_names, palette, result.classes),
        loc='upper center',
        bbox_to_anchor=(0.5, -0.2),
        ncol=2,
        fontsize=8)


def _plot_similarities(fig, top, result: 'GSKDView',
                       class_names: Sequence[str], vmin: float) -> None:
    """Both self-similarity maps and their difference."""
    n, classes = result.num_samples, result.classes
    b = len(result.index)
    maps = ((result.V_t, 'teacher $V_t$'),
            (result.V_s, 'student $V_s$ (projected)'))
    for k, (matrix, name) in enumerate(maps):
        ax = fig.add_subplot(top[2 + k])
        im = ax.imshow(matrix, cmap=SIM_CMAP, vmin=vmin, vmax=1)
        _mark_classes(ax, classes, n, class_names)
        ax.set_title(f'{name}: cosine similarity\n'
                     f'of the {b} samples ({b}x{b})')
        ax.set_xlabel('sample (grouped by class)')
        if k == 0:
            ax.set_ylabel('sample (grouped by class)')
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='cosine')
    ax = fig.add_subplot(top[4])
    diff = result.V_s - result.V_t
    lim = max(float(np.abs(diff).max()), 1e-6)
    im = ax.imshow(diff, cmap=DIFF_CMAP, vmin=-lim, vmax=lim)
    _mark_classes(ax, classes, n, class_names)
    ax.set_title('$V_s - V_t$\n'
                 f'(mean |diff| = {np.abs(diff).mean():.3f})')
    ax.set_xlabel('sample (grouped by class)')
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='difference')


def _plot_descriptors(fig, result: 'GSKDView', class_names: Sequence[str],
                      vmin: float, num_desc: int) -> None:
    """The first descriptors of both networks: rows keep the class order,
    columns are shuffled per row."""
    bottom = GridSpec(
        1,
        2 * num_desc + 1,
        figure=fig,
        left=0.06,
        right=0.95,
        top=0.38,
        bottom=0.05,
        wspace=0.5,
        width_ratios=[1] * (2 * num_desc) + [0.08])
    for g in range(num_desc):
        pairs = ((result.desc_t, 'teacher'), (result.desc_s, 'student'))
        for k, (descriptors, who) in enumerate(pairs):
            ax = fig.add_subplot(bottom[2 * g + k])
            im = ax.imshow(
                descriptors[g],
                cmap=SIM_CMAP,
                vmin=vmin,
                vmax=1,
                aspect='auto',
                interpolation='nearest')
            _mark_classes(ax, result.classes, result.num_samples,
                          class_names, x=False)
            if k:
                ax.set_yticklabels([])
            ax.set_title(
                f'descriptor {g + 1}, {who}' +
                (f'\nKL term {result.desc_kl[g]:.3g}' if k else '\n'),
                fontsize=10)
            ax.set_xlabel('shuffled column')
            width = descriptors.shape[2]
            ax.set_xticks(np.arange(0, width, max(1, width // 5)))
    fig.colorbar(im, cax=fig.add_subplot(bottom[-1]), label='cosine')


def dataset_classes(cfg: Config) -> Tuple[list, list]:
    """Class names and palette of a config's test dataset, as MMSeg has them.

    The dataset class's ``METAINFO`` updated by the config's ``metainfo``
    (MMSeg's datasets define both); where no palette is defined, the
    dataset is built lazily (no annotation is read) for MMSeg's fixed
    random palette.

    Args:
        cfg (Config): Config with a ``test_dataloader``.

    Returns:
        tuple[list, list]: Class names and RGB colours.
    """
    from mmseg.registry import DATASETS
    dataset_cfg = cfg.test_dataloader.dataset
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', None) or 'mmseg'):
        dataset_cls = DATASETS.get(dataset_cfg.type)
        if dataset_cls is None:
            raise KeyError(
                f'dataset type {dataset_cfg.type!r} of the config is not '
                'registered and cannot be imported: add its module to the '
                "config's custom_imports, or, for a type given by import "
                'path from the repository root (projects/...), run from the '
                'root with it on the path (PYTHONPATH=.)')
        metainfo = dict(getattr(dataset_cls, 'METAINFO', {}))
        metainfo.update(dataset_cfg.get('metainfo') or {})
        if len(metainfo.get('palette') or []) != len(metainfo['classes']):
            metainfo = DATASETS.build(dict(dataset_cfg,
                                           lazy_init=True)).metainfo
    return list(metainfo['classes']), [list(c) for c in metainfo['palette']]
