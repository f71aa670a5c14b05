# Copyright (c) gskd-mm contributors. All rights reserved.
"""Show what GSKD compares, for one image and a trained distiller.

For a distillation config with a ``GSKDLoss`` and a checkpoint of it
(student, teacher and the trained ``gskd_projector``), the image goes
through student and teacher as in training; the figure shows the sampled
pixels, the teacher's and the student's global self-similarity maps ``V_t``
and ``V_s`` over the class-balanced samples, their difference, and a few of
the row-shuffled, column-grouped descriptors that the loss matches. All of
it is computed with the loss's own helpers and settings (N, S, T, valid
mask), and checked against the loss itself: the value in the title is what
``GSKDLoss`` returns for these samples.

Example::

    python tools/visualize_gskd.py configs/demo/dist-gskd_*.py \\
        work_dirs/demo/runs/dist_gskd/seed0/iter_1000.pth \\
        ~/.cache/gskd_mm/synthetic_scenes/img_dir/val/val_00000.png
"""
import argparse
import logging
import os.path as osp
import warnings
from typing import Dict, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import Compose, pseudo_collate  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.registry import MODELS, DefaultScope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402

from gskd_mm.models.losses import GSKDLoss  # noqa: E402
from gskd_mm.models.losses.gskd_loss import descriptor_kl  # noqa: E402
from gskd_mm.utils import register_all_modules  # noqa: E402

SIM_CMAP = 'viridis'
DIFF_CMAP = 'PuOr_r'


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
    return parser.parse_args()


# ----------------------------------------------------------------- loading
def load_state_dict(checkpoint: str) -> Dict[str, torch.Tensor]:
    """The weights in a checkpoint file.

    Read with ``weights_only=True``: importing gskd_mm allow-lists what
    MMEngine Runner checkpoints hold besides the weights.

    Args:
        checkpoint (str): Checkpoint file.

    Returns:
        dict: Its ``state_dict`` (or the file itself if it is one).
    """
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    return state.get('state_dict', state)


def build_distiller(config: str, checkpoint: str) -> Tuple[BaseModel, Config]:
    """Build a distiller from its config and load a checkpoint of it.

    The teacher's weights come from the checkpoint (a distiller's state
    holds the teacher), so ``teacher_ckpt`` is not loaded.

    Args:
        config (str): Distillation config file.
        checkpoint (str): Checkpoint of that distiller.

    Returns:
        tuple[BaseModel, Config]: The model in eval mode, on the CPU, and
        the config.
    """
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(config)
    cfg.model.teacher_ckpt = None
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmseg')):
        model = MODELS.build(cfg.model)
    model.load_state_dict(load_state_dict(checkpoint))
    model.eval()  # MMRazor's train() override returns None, not the model
    return model, cfg


def default_annotation(cfg: Config, img_path: str) -> Optional[str]:
    """The label map of an image in MMSeg's img_dir/ann_dir layout.

    Args:
        cfg (Config): Config whose test dataset gives the suffixes.
        img_path (str): Image file.

    Returns:
        str, optional: The annotation file, or None if there is none.
    """
    dataset = cfg.test_dataloader.dataset
    img_suffix = dataset.get('img_suffix', '.png')
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    path = osp.abspath(img_path)
    if '/img_dir/' not in path or not path.endswith(img_suffix):
        return None
    path = path.replace('/img_dir/', '/ann_dir/')
    path = path[:len(path) - len(img_suffix)] + seg_suffix
    return path if osp.isfile(path) else None


def load_sample(cfg: Config,
                img_path: str,
                ann_path: Optional[str] = None) -> dict:
    """Run the config's test pipeline on one image (and its labels).

    Args:
        cfg (Config): Config with a ``test_dataloader``.
        img_path (str): Image file.
        ann_path (str, optional): Label map; without one, the pipeline's
            ``LoadAnnotations`` is skipped.

    Returns:
        dict: ``inputs`` and ``data_samples`` of one packed sample.
    """
    dataset = cfg.test_dataloader.dataset
    pipeline = [
        t for t in dataset.pipeline
        if ann_path is not None or t['type'] != 'LoadAnnotations'
    ]
    results = dict(
        img_path=img_path,
        seg_map_path=ann_path,
        reduce_zero_label=dataset.get('reduce_zero_label', False),
        seg_fields=[],
        label_map=None)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmseg')):
        return Compose(pipeline)(results)


# ------------------------------------------------------------- computation
def find_gskd_loss(model: BaseModel) -> Tuple[str, GSKDLoss]:
    """The name and module of the distiller's GSKD loss."""
    for name, loss in model.distiller.distill_losses.items():
        if isinstance(loss, GSKDLoss):
            return name, loss
    raise ValueError('the distiller has no GSKDLoss; '
                     f'losses: {list(model.distiller.distill_losses)}')


@torch.no_grad()
def gskd_similarity(model: BaseModel,
                    sample: dict,
                    seed: int = 0) -> Dict[str, np.ndarray]:
    """Compute what GSKD compares for one image.

    Student and teacher run as in training (``mode='loss'`` inside the
    distiller's recorders), the loss inputs are read through the loss's own
    forward mapping (student features through the trained projector), and
    sampling, similarity and grouping are the loss's own
    (:meth:`GSKDLoss.descriptors`).

    Args:
        model (BaseModel): A distiller with a ``GSKDLoss``, in eval mode.
        sample (dict): One packed sample (see :func:`load_sample`). Without
            ``gt_sem_seg``, the teacher's prediction is used as labels.
        seed (int): Seed of the random sampling and shuffling.

    Returns:
        dict: numpy arrays: ``image`` (H, W, 3) RGB, ``labels`` (H, W),
        ``feat_valid`` (h, w) mask of the pixels that may be sampled,
        ``index`` (B,) sampled pixels (flat, at h x w), ``sample_class``
        (B,), ``classes`` (present classes, ascending), ``V_t`` and ``V_s``
        (B, B), ``desc_t`` and ``desc_s`` (G, B, S) descriptors,
        ``desc_kl`` (G,) their weighted KL terms; floats ``loss`` (the
        GSKD loss of these samples, weighted) and ``loss_reference`` (what
        ``GSKDLoss`` itself returns for the same draws: the same value),
        ``num_samples``, ``tau``, ``loss_weight``; bool ``pseudo_labels``.
    """
    name, loss = find_gskd_loss(model)
    mapping = model.distiller.loss_forward_mappings[name]
    data = model.data_preprocessor(pseudo_collate([sample]), False)
    inputs, samples = data['inputs'], data['data_samples']
    pseudo = 'gt_sem_seg' not in samples[0]
    if pseudo:
        logits = model.teacher(inputs, samples, mode='tensor')
        logits = torch.nn.functional.interpolate(
            logits, size=inputs.shape[-2:], mode='bilinear')
        samples[0].gt_sem_seg = PixelData(data=logits.argmax(1))
    with model.distiller.teacher_recorders:
        model.teacher(inputs, samples, mode='loss')
    with model.distiller.student_recorders:
        model.architecture(inputs, samples, mode='loss')
    kwargs = {
        key: model.distiller.get_record(**record)
        for key, record in mapping.items()
    }

    # The loss itself, then the same steps spelled out with the same random
    # draws (same seed, same order), to plot them.
    torch.manual_seed(seed)
    reference = float(loss(**kwargs))
    torch.manual_seed(seed)
    gt = kwargs['gt_labels']
    full_labels = gt[:, 0] if gt.dim() == 4 else gt
    steps = loss.descriptors(kwargs['preds_S'], kwargs['preds_T'],
                             kwargs['logits_T'], full_labels)
    if steps is None:
        raise ValueError('no pixel of this image can be sampled (none is '
                         'labelled and predicted right by the teacher)')
    shuffled_S, shuffled_T = steps['shuffled_S'], steps['shuffled_T']
    rows_valid, columns_valid = steps['rows_valid'], steps['columns_valid']
    groups, img_valid = steps['groups_per_img'], steps['num_present'] > 0
    value = loss.loss_weight * descriptor_kl(
        shuffled_S, shuffled_T, rows_valid, columns_valid, groups, img_valid,
        loss.tau)
    if not np.isclose(float(value), reference, rtol=1e-4, atol=1e-6):
        print_log(
            f'the recomputed GSKD loss {float(value):.6g} differs from '
            f'GSKDLoss ({reference:.6g}): the plot may not show what the '
            'loss computes',
            logger='current',
            level=logging.WARNING)

    num_groups = int(groups[0])
    width = columns_valid.shape[2]
    one = torch.ones(1, dtype=torch.long)
    desc_kl = [
        float(loss.loss_weight * descriptor_kl(
            shuffled_S[..., g * width:(g + 1) * width],
            shuffled_T[..., g * width:(g + 1) * width], rows_valid,
            columns_valid[:, g:g + 1], one, img_valid, loss.tau))
        for g in range(num_groups)
    ]

    def descriptors(shuffled: torch.Tensor) -> np.ndarray:
        b = shuffled.shape[1]
        out = shuffled[0].view(b, -1, width).transpose(0, 1)[:num_groups]
        # Missing columns of a partial last group show as NaN (blank).
        mask = columns_valid[0, :num_groups, None, :].expand_as(out)
        return torch.where(mask, out, float('nan')).numpy()

    image = sample['inputs'].flip(0).permute(1, 2, 0).numpy()  # BGR->RGB
    padded = np.zeros(tuple(inputs.shape[-2:]) + (3, ), dtype=np.uint8)
    padded[:image.shape[0], :image.shape[1]] = image
    present = torch.nonzero(steps['counts'][0] > 0)[:, 0].numpy()
    return dict(
        image=padded,
        labels=full_labels[0].numpy(),
        feat_valid=steps['valid'][0].view(
            kwargs['preds_S'].shape[-2:]).numpy(),
        index=steps['index'][0].numpy(),
        sample_class=np.repeat(present, loss.num_samples),
        classes=present,
        V_t=steps['sim_T'][0].numpy(),
        V_s=steps['sim_S'][0].numpy(),
        desc_t=descriptors(shuffled_T),
        desc_s=descriptors(shuffled_S),
        desc_kl=np.array(desc_kl),
        loss=float(value),
        loss_reference=reference,
        num_samples=loss.num_samples,
        tau=loss.tau,
        loss_weight=loss.loss_weight,
        pseudo_labels=pseudo)


# ---------------------------------------------------------------- plotting
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


def plot_gskd_similarity(result: Dict[str, np.ndarray],
                         class_names: Sequence[str],
                         palette: Sequence[Sequence[int]],
                         out_file: str,
                         title: Optional[str] = None,
                         num_descriptors: int = 3) -> str:
    """Draw the figure of :func:`gskd_similarity`'s result.

    Args:
        result (dict): Output of :func:`gskd_similarity`.
        class_names (Sequence[str]): Names of the classes.
        palette (Sequence): RGB colour of every class.
        out_file (str): PNG file to write.
        title (str, optional): First line of the figure title.
        num_descriptors (int): Descriptors to show. Defaults to 3.

    Returns:
        str: ``out_file``.
    """
    n = result['num_samples']
    classes = result['classes']
    image, labels = result['image'], result['labels']
    h, w = result['feat_valid'].shape
    scale_y, scale_x = image.shape[0] / h, image.shape[1] / w
    num_desc = min(num_descriptors, len(result['desc_t']))
    # One colour scale for every similarity panel: up to 1 (the diagonal),
    # down to the lowest similarity of either network.
    vmin = min(0.0, float(result['V_t'].min()), float(result['V_s'].min()))

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

    # Image with the sampled pixels.
    ax = fig.add_subplot(top[0])
    ax.imshow(image)
    rows, cols = np.divmod(result['index'], w)
    ax.scatter(
        (cols + 0.5) * scale_x - 0.5, (rows + 0.5) * scale_y - 0.5,
        c=np.asarray(palette)[result['sample_class']] / 255,
        s=36,
        edgecolors='k',
        linewidths=0.8)
    ax.set_title(f'image and the {len(result["index"])} sampled pixels\n'
                 f'({n} per class; colour = class)')
    ax.set_xlabel('x (pixels)')
    ax.set_ylabel('y (pixels)')

    # Labels, darkened where nothing may be sampled.
    ax = fig.add_subplot(top[1])
    ax.imshow(colorize(labels, palette))
    blocked = np.kron(~result['feat_valid'],
                      np.ones((int(scale_y), int(scale_x))))
    ax.imshow(
        np.zeros(blocked.shape + (4, )) + [0, 0, 0, 0.55] * blocked[..., None],
        interpolation='nearest')
    which = 'teacher prediction' if result['pseudo_labels'] else 'labels'
    ax.set_title(f'{which} at {h}x{w} feature stride;\n'
                 'dark: not sampled (ignored / teacher wrong)')
    ax.set_xlabel('x (pixels)')
    ax.set_yticks([])
    ax.legend(
        handles=class_legend(class_names, palette, classes),
        loc='upper center',
        bbox_to_anchor=(0.5, -0.2),
        ncol=2,
        fontsize=8)

    # Self-similarity maps and their difference.
    b = len(result['index'])
    maps = (('V_t', 'teacher $V_t$'), ('V_s', 'student $V_s$ (projected)'))
    for k, (key, name) in enumerate(maps):
        ax = fig.add_subplot(top[2 + k])
        im = ax.imshow(result[key], cmap=SIM_CMAP, vmin=vmin, vmax=1)
        _mark_classes(ax, classes, n, class_names)
        ax.set_title(f'{name}: cosine similarity\n'
                     f'of the {b} samples ({b}x{b})')
        ax.set_xlabel('sample (grouped by class)')
        if k == 0:
            ax.set_ylabel('sample (grouped by class)')
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='cosine')
    ax = fig.add_subplot(top[4])
    diff = result['V_s'] - result['V_t']
    lim = max(float(np.abs(diff).max()), 1e-6)
    im = ax.imshow(diff, cmap=DIFF_CMAP, vmin=-lim, vmax=lim)
    _mark_classes(ax, classes, n, class_names)
    ax.set_title('$V_s - V_t$\n'
                 f'(mean |diff| = {np.abs(diff).mean():.3f})')
    ax.set_xlabel('sample (grouped by class)')
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='difference')

    # Descriptors: rows keep the class order, columns are shuffled per row.
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
        for k, (key, who) in enumerate((('desc_t', 'teacher'),
                                        ('desc_s', 'student'))):
            ax = fig.add_subplot(bottom[2 * g + k])
            im = ax.imshow(
                result[key][g],
                cmap=SIM_CMAP,
                vmin=vmin,
                vmax=1,
                aspect='auto',
                interpolation='nearest')
            _mark_classes(ax, classes, n, class_names, x=False)
            if k:
                ax.set_yticklabels([])
            ax.set_title(
                f'descriptor {g + 1}, {who}' +
                (f'\nKL term {result["desc_kl"][g]:.3g}' if k else '\n'),
                fontsize=10)
            ax.set_xlabel('shuffled column')
            width = result[key].shape[2]
            ax.set_xticks(np.arange(0, width, max(1, width // 5)))
    fig.colorbar(im, cax=fig.add_subplot(bottom[-1]), label='cosine')

    lines = [title] if title else []
    lines.append(
        f'GSKD on this image: {len(classes)} class(es) x N={n} samples, '
        f'{len(result["desc_t"])} descriptors of {result["desc_t"].shape[2]}'
        f' columns (row-wise shuffled); T={result["tau"]:g}, weight '
        f'{result["loss_weight"]:g}: loss = {result["loss"]:.4g}')
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


def dataset_classes(cfg: Config, num_classes: int) -> Tuple[list, list]:
    """Class names and palette of the config's test dataset.

    Args:
        cfg (Config): Config with a ``test_dataloader``.
        num_classes (int): Classes of the model, for the fallbacks.

    Returns:
        tuple[list, list]: Names (the indices if the dataset names none)
        and RGB colours (random but fixed if it has no palette).
    """
    from mmseg.registry import DATASETS
    dataset = cfg.test_dataloader.dataset
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmseg')):
        metainfo = dict(getattr(DATASETS.get(dataset.type), 'METAINFO', {}))
    metainfo.update(dataset.get('metainfo') or {})
    names = metainfo.get('classes') or [str(c) for c in range(num_classes)]
    palette = metainfo.get('palette') or np.random.default_rng(0).integers(
        0, 255, (num_classes, 3)).tolist()
    return list(names), [list(c) for c in palette]


def visualize(config: str,
              checkpoint: str,
              image: str,
              out_file: str,
              ann: Optional[str] = None,
              seed: int = 0,
              num_descriptors: int = 3,
              title: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Build the distiller, compute and plot GSKD for one image.

    Args:
        config (str): Distillation config with a ``GSKDLoss``.
        checkpoint (str): Checkpoint of that distiller.
        image (str): Image file.
        out_file (str): PNG file to write.
        ann (str, optional): Label map of the image (default: see
            :func:`default_annotation`).
        seed (int): Seed of the sampling. Defaults to 0.
        num_descriptors (int): Descriptors to show. Defaults to 3.
        title (str, optional): First line of the figure title (default:
            the config and image names).

    Returns:
        dict: The result of :func:`gskd_similarity`.
    """
    model, cfg = build_distiller(config, checkpoint)
    if ann is None:
        ann = default_annotation(cfg, image)
    result = gskd_similarity(model, load_sample(cfg, image, ann), seed)
    class_names, palette = dataset_classes(
        cfg, model.architecture.decode_head.num_classes)
    if title is None:
        title = (f'{osp.basename(config)}\nimage {osp.basename(image)}')
    plot_gskd_similarity(result, class_names, palette, out_file, title,
                         num_descriptors)
    return result


def main() -> None:
    args = parse_args()
    warnings.filterwarnings('ignore', category=UserWarning, module='mmseg')
    visualize(args.config, args.checkpoint, args.image, args.out, args.ann,
              args.seed, args.num_descriptors)
    print_log(f'wrote {args.out}', logger='current')


if __name__ == '__main__':
    main()
