# Copyright (c) gskd-mm contributors. All rights reserved.
"""A plain loop implementation of the GSKD loss, for tests and benchmarks.

This module follows the method page step by step, with Python loops over
images, classes, rows and groups, so that it is easy to check against the
definition by eye. It is the reference the vectorised
``gskd_mm.models.losses.GSKDLoss`` is tested against, and the "loop over
classes and groups" baseline it is timed against. It is slow on purpose
(one host sync per class and per group) and is not used in training.

Randomness comes only from ``torch.randperm`` with an optional
``torch.Generator``, so ``torch.manual_seed`` makes a call repeatable. The
generator may live on a different device than the data: permutations are
drawn on the generator's device and then moved to the data's device.

Part of :mod:`gskd_mm.testing`, which ``import gskd_mm`` does not import:
the tests and the benchmarks of ``tools/analysis_tools`` import it.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'resize_labels', 'valid_pixel_mask', 'class_balanced_sample',
    'gskd_loss_loop', 'sampling_counts', 'sample_composition'
]


def _randperm(n: int, device: torch.device,
              generator: Optional[torch.Generator] = None) -> Tensor:
    """A uniform random permutation of ``range(n)`` on ``device``.

    Args:
        n (int): Length of the permutation.
        device (torch.device): Device of the returned tensor.
        generator (torch.Generator, optional): Source of randomness; the
            permutation is drawn on its device. Defaults to None (the
            default generator of ``device``).

    Returns:
        Tensor: (n,) long permutation on ``device``.
    """
    draw_device = generator.device if generator is not None else device
    perm = torch.randperm(n, generator=generator, device=draw_device)
    return perm.to(device)


def _repeat_cyclically(items: Tensor, length: int) -> Tensor:
    """Repeat ``items`` end to end and cut the result to ``length``.

    Args:
        items (Tensor): (M,) tensor with M >= 1.
        length (int): Length of the result.

    Returns:
        Tensor: (length,) tensor ``items[0], ..., items[M-1], items[0], ...``.
    """
    num_repeats = -(-length // items.numel())  # ceil division
    return items.repeat(num_repeats)[:length]


def resize_labels(gt_labels: Tensor, size: Sequence[int]) -> Tensor:
    """Resize integer label maps with nearest interpolation.

    Args:
        gt_labels (Tensor): Integer labels, (N, H, W) or (N, 1, H, W).
        size (Sequence[int]): Target size (h, w).

    Returns:
        Tensor: (N, h, w) long labels.
    """
    if gt_labels.dim() == 3:
        gt_labels = gt_labels.unsqueeze(1)
    resized = F.interpolate(
        gt_labels.float(), size=tuple(size), mode='nearest')
    return resized.squeeze(1).long()


def valid_pixel_mask(labels: Tensor,
                     logits_T: Tensor,
                     ignore_index: int = 255,
                     valid_mask: str = 'teacher_correct') -> Tensor:
    """The pixels that may be sampled.

    Args:
        labels (Tensor): (N, h, w) labels, already at feature size.
        logits_T (Tensor): Teacher logits, (N, K, h', w'). Resized
            bilinearly (``align_corners=False``) to (h, w) when their size
            differs, then the teacher prediction is their argmax.
        ignore_index (int): Label of unlabelled pixels. Defaults to 255.
        valid_mask (str): ``'teacher_correct'`` (labelled and the teacher's
            prediction equals the label) or ``'labeled'`` (every labelled
            pixel). Defaults to 'teacher_correct'.

    Returns:
        Tensor: (N, h, w) bool mask of the valid pixels.
    """
    if valid_mask not in ('teacher_correct', 'labeled'):
        raise ValueError(f'unknown valid_mask {valid_mask!r}')
    valid = labels != ignore_index
    if valid_mask == 'labeled':
        return valid
    h, w = labels.shape[-2:]
    logits_T = logits_T.detach()
    if tuple(logits_T.shape[-2:]) != (h, w):
        logits_T = F.interpolate(
            logits_T.float(), size=(h, w), mode='bilinear',
            align_corners=False)
    pred_T = logits_T.argmax(dim=1)
    return valid & (pred_T == labels)


def class_balanced_sample(
        labels_i: Tensor,
        valid_i: Tensor,
        num_samples: int,
        generator: Optional[torch.Generator] = None) -> Tensor:
    """Class-balanced sampling of the valid pixels of one image.

    For every class ``c`` present among the valid pixels, in ascending
    order, ``num_samples`` (N) indices are taken:

    - ``K >= N`` valid pixels of class ``c``: N of them, uniformly without
      replacement;
    - ``K < N``: all K of them, filled with N - K of the image's other valid
      pixels (valid and not of class ``c``), uniformly without replacement;
      when there are fewer other valid pixels than needed, all of them are
      taken in a random order and repeated cyclically;
    - no other valid pixel at all: the class's own K pixels are repeated
      cyclically.

    Args:
        labels_i (Tensor): (h, w) labels of one image.
        valid_i (Tensor): (h, w) bool mask of its valid pixels.
        num_samples (int): Points per present class (N).
        generator (torch.Generator, optional): Source of randomness.
            Defaults to None.

    Returns:
        Tensor: (N * |C|,) long indices into the flattened (h * w) image, the
        N points of each class contiguous and the classes in ascending
        order. Empty when the image has no valid pixel.
    """
    labels_flat = labels_i.flatten()
    valid_flat = valid_i.flatten().bool()
    device = labels_flat.device
    classes = torch.unique(labels_flat[valid_flat])  # sorted ascending
    blocks: List[Tensor] = []
    for c in classes.tolist():
        is_c = labels_flat == c
        own = torch.nonzero(valid_flat & is_c).flatten()
        own = own[_randperm(own.numel(), device, generator)]
        if own.numel() >= num_samples:
            blocks.append(own[:num_samples])
            continue
        num_fill = num_samples - own.numel()
        others = torch.nonzero(valid_flat & ~is_c).flatten()
        others = others[_randperm(others.numel(), device, generator)]
        if others.numel() >= num_fill:
            fill = others[:num_fill]
        elif others.numel() > 0:
            fill = _repeat_cyclically(others, num_fill)
        else:
            fill = _repeat_cyclically(own, num_fill)
        blocks.append(torch.cat([own, fill]))
    if not blocks:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(blocks)


def _kl(desc_S: Tensor, desc_T: Tensor, tau: float) -> Tensor:
    """``KL(softmax(desc_T / tau) || softmax(desc_S / tau)) * tau**2``."""
    log_p_S = F.log_softmax(desc_S / tau, dim=0)
    log_p_T = F.log_softmax(desc_T / tau, dim=0)
    return F.kl_div(log_p_S, log_p_T, reduction='sum',
                    log_target=True) * tau**2


def gskd_loss_loop(preds_S: Tensor,
                   preds_T: Tensor,
                   logits_T: Tensor,
                   gt_labels: Tensor,
                   num_samples: int = 8,
                   group_size: int = -1,
                   tau: float = 1.0,
                   ignore_index: int = 255,
                   valid_mask: str = 'teacher_correct',
                   generator: Optional[torch.Generator] = None,
                   normalize: str = 'length',
                   exclude_diagonal: bool = False,
                   draws: Optional[Sequence[Optional[Tuple[Tensor, Tensor]]]]
                   = None) -> Tensor:
    """The GSKD loss computed with plain loops (not weighted).

    Per image: resize the labels to the feature size, find the valid
    pixels, draw class-balanced sample points (the same for teacher and
    student), take the cosine self-similarity matrices ``V = F F^T``
    (B x B), shuffle the columns of every row with its own permutation (the
    same for teacher and student) and cut the shuffled columns into groups
    of S columns. With ``exclude_diagonal``, the entry of row r that came
    from column r (the sample's similarity with itself) is left out of its
    group. Every group is then compared, by ``normalize``:

    - ``'length'``: its entries flattened,
      ``KL(softmax(D_t / T) || softmax(D_s / T)) * T^2 / (entries)``;
    - ``'descriptor'``: the same KL ``* T^2``, not divided;
    - ``'row'``: the KL of every row's entries ``* T^2``, averaged over the
      rows that have an entry.

    The loss of an image is the mean over its groups that have an entry;
    the result is the mean over the images with such a group.

    Args:
        preds_S (Tensor): Student (projected) features, (N, C, h, w).
        preds_T (Tensor): Teacher features, (N, C, h, w); detached.
        logits_T (Tensor): Teacher logits, (N, K, h', w').
        gt_labels (Tensor): Integer labels, (N, H, W) or (N, 1, H, W).
        num_samples (int): Points per present class (N). Defaults to 8.
        group_size (int): Columns per group (S). ``S > 0`` is an absolute
            width, ``S < 0`` means ``|S| * |C|`` with ``|C|`` the number of
            classes present in the image. A width of at least B gives one
            group of B columns; when B % S != 0 the last group is partial.
            Defaults to -1.
        tau (float): Softmax temperature (T). Defaults to 1.0.
        ignore_index (int): Label of unlabelled pixels. Defaults to 255.
        valid_mask (str): ``'teacher_correct'`` or ``'labeled'``, see
            :func:`valid_pixel_mask`. Defaults to 'teacher_correct'.
        generator (torch.Generator, optional): Source of randomness.
            Defaults to None.
        normalize (str): ``'length'``, ``'descriptor'`` or ``'row'``.
            Defaults to 'length'.
        exclude_diagonal (bool): Leave every sample's similarity with
            itself out. Defaults to False.
        draws (Sequence[tuple[Tensor, Tensor] | None], optional): For every
            image, the ``(index, perms)`` to use instead of random draws:
            ``index`` (B,) its sample points (as
            :func:`class_balanced_sample` returns them) and ``perms``
            (B, B) the column permutation of every row; None for an image
            with no valid pixel. Defaults to None (draw them).

    Returns:
        Tensor: Scalar loss, not multiplied by any loss weight, computed
        in float32 (float64 for float64 features). When nothing is compared
        it is ``preds_S.sum() * 0`` (zero, and still part of the graph of
        ``preds_S``).
    """
    if normalize not in ('length', 'descriptor', 'row'):
        raise ValueError(f'unknown normalize {normalize!r}')
    h, w = preds_S.shape[-2:]
    preds_T = preds_T.detach()
    labels = resize_labels(gt_labels, (h, w))
    valid = valid_pixel_mask(labels, logits_T, ignore_index, valid_mask)

    image_losses: List[Tensor] = []
    for i in range(preds_S.shape[0]):
        if draws is None:
            index = class_balanced_sample(labels[i], valid[i], num_samples,
                                          generator)
        else:
            index = (draws[i][0] if draws[i] is not None else
                     torch.zeros(0, dtype=torch.long))
        num_points = index.numel()  # B = N * |C|
        if num_points == 0:
            continue
        num_present = num_points // num_samples  # |C|

        # (C, h, w) -> (h * w, C): channels last by permute, not reshape.
        pixels_S = preds_S[i].permute(1, 2, 0).reshape(h * w, -1)
        pixels_T = preds_T[i].permute(1, 2, 0).reshape(h * w, -1)
        # Similarities, softmax and KL in float32 at least (float64 kept).
        dtype = torch.promote_types(preds_S.dtype, torch.float32)
        feat_S = F.normalize(pixels_S[index].to(dtype), p=2, dim=1)
        feat_T = F.normalize(pixels_T[index].to(dtype), p=2, dim=1)
        sim_S = feat_S @ feat_S.t()  # (B, B)
        sim_T = feat_T @ feat_T.t()

        # Row-wise shuffle: every row gets its own column permutation.
        if draws is None:
            perms = torch.stack([
                _randperm(num_points, index.device, generator)
                for _ in range(num_points)
            ])
        else:
            perms = draws[i][1]
        rows_S, rows_T = [], []
        for row in range(num_points):
            rows_S.append(sim_S[row, perms[row]])
            rows_T.append(sim_T[row, perms[row]])
        shuffled_S = torch.stack(rows_S)
        shuffled_T = torch.stack(rows_T)

        # Column-wise grouping.
        if group_size > 0:
            width = group_size
        else:
            width = -group_size * num_present
        width = min(width, num_points)
        group_losses = []
        for start in range(0, num_points, width):
            rows_kept = []  # (student, teacher) entries of every row
            for row in range(num_points):
                cols = range(start, min(start + width, num_points))
                kept = [
                    col for col in cols
                    if not (exclude_diagonal and int(perms[row, col]) == row)
                ]
                rows_kept.append(
                    (shuffled_S[row, kept], shuffled_T[row, kept]))
            if normalize == 'row':
                row_terms = [
                    _kl(d_S, d_T, tau) for d_S, d_T in rows_kept
                    if d_S.numel() > 0
                ]
                if row_terms:
                    group_losses.append(torch.stack(row_terms).mean())
                continue
            desc_S = torch.cat([d_S for d_S, _ in rows_kept])
            desc_T = torch.cat([d_T for _, d_T in rows_kept])
            if desc_S.numel() == 0:
                continue
            kl = _kl(desc_S, desc_T, tau)
            if normalize == 'length':
                kl = kl / desc_S.numel()
            group_losses.append(kl)
        if group_losses:
            image_losses.append(torch.stack(group_losses).mean())

    if not image_losses:
        return preds_S.sum() * 0
    return torch.stack(image_losses).mean()


def sampling_counts(labels: Tensor, valid: Tensor,
                    num_samples: int) -> List[Dict[int, Tuple[int, int]]]:
    """What class-balanced sampling must take from every class.

    Args:
        labels (Tensor): (N, h, w) labels at feature size.
        valid (Tensor): (N, h, w) bool mask of the valid pixels.
        num_samples (int): Points per present class (N).

    Returns:
        list[dict[int, tuple[int, int]]]: For every image, a dict mapping
        each class present among its valid pixels to ``(own, filled)``:
        ``own = min(K, N)`` distinct pixels of the class itself (K its
        number of valid pixels) and ``filled = N - own`` filler points.
        Classes appear in ascending order; an image without valid pixels
        gives an empty dict.
    """
    result = []
    for labels_i, valid_i in zip(labels, valid):
        present = labels_i[valid_i.bool()]
        classes, counts = torch.unique(present, return_counts=True)
        per_class = {}
        for c, k in zip(classes.tolist(), counts.tolist()):
            own = min(k, num_samples)
            per_class[c] = (own, num_samples - own)
        result.append(per_class)
    return result


def sample_composition(labels_i: Tensor, valid_i: Tensor, index: Tensor,
                       num_samples: int) -> Dict[int, Tuple[int, int]]:
    """Describe a sample of one image in the format of
    :func:`sampling_counts`.

    The sample is cut into blocks of ``num_samples`` points and block ``j``
    is attributed to the ``j``-th present class (ascending order). For each
    block the result holds ``(own, filled)``: ``own`` is the number of
    distinct pixels of that class in the block, ``filled`` the number of
    the other points. A correct class-balanced sample therefore gives
    exactly ``sampling_counts(...)[i]``. Points that are not valid pixels
    are reported separately under the key ``-1`` as ``(count, 0)`` so that
    a comparison with :func:`sampling_counts` fails on them.

    Args:
        labels_i (Tensor): (h, w) labels of one image.
        valid_i (Tensor): (h, w) bool mask of its valid pixels.
        index (Tensor): (B,) indices into the flattened image, as returned
            by :func:`class_balanced_sample`.
        num_samples (int): Points per present class (N).

    Returns:
        dict[int, tuple[int, int]]: ``{class: (own, filled)}``.
    """
    labels_flat = labels_i.flatten()
    valid_flat = valid_i.flatten().bool()
    index = index.flatten().long()
    classes = torch.unique(labels_flat[valid_flat]).tolist()
    result: Dict[int, Tuple[int, int]] = {}
    num_invalid = int((~valid_flat[index]).sum())
    if num_invalid:
        result[-1] = (num_invalid, 0)
    for j in range(index.numel() // num_samples):
        block = index[j * num_samples:(j + 1) * num_samples]
        c = classes[j] if j < len(classes) else -2
        own = torch.unique(block[labels_flat[block] == c]).numel()
        result[c] = (own, block.numel() - own)
    if index.numel() % num_samples:
        result[-3] = (index.numel() % num_samples, 0)
    return result
