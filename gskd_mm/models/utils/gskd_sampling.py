# Copyright (c) gskd-mm contributors. All rights reserved.
"""Class-balanced sampling of GSKD, batched.

Which pixels GSKD may draw (labelled, and by default classified right by
the teacher), how many of each class, and their normalised features: two
sorts per batch instead of a loop over images and classes.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'resize_labels', 'nearest_source_index', 'teacher_prediction',
    'valid_pixel_mask', 'class_counts', 'class_balanced_sample',
    'gather_normalized'
]


def resize_labels(labels: Tensor, size: Tuple[int, int]) -> Tensor:
    """Resize (N, H, W) integer labels to ``size`` with nearest sampling.

    Picks the pixels ``F.interpolate(mode='nearest')`` picks, by indexing:
    no float copy of the full-resolution labels (at Cityscapes scale that
    copy cost more than the rest of the loss's forward).

    Args:
        labels (Tensor): Integer labels, (N, H, W).
        size (tuple[int, int]): Target (h, w).

    Returns:
        Tensor: Long labels, (N, h, w).
    """
    labels = labels.long()
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    rows, cols = (nearest_source_index(in_size, out_size, labels.device)
                  for in_size, out_size in zip(labels.shape[-2:], size))
    return labels[:, rows[:, None], cols]


def nearest_source_index(in_size: int, out_size: int,
                         device: torch.device) -> Tensor:
    """Source index of every output position of a nearest resize.

    PyTorch's rule: ``floor(i * scale)`` with the float32 scale
    ``in_size / out_size``, clamped to the input.

    Args:
        in_size (int): Input length.
        out_size (int): Output length.
        device (torch.device): Device of the result.

    Returns:
        Tensor: (out_size,) long indices into the input.
    """
    scale = torch.tensor(in_size, dtype=torch.float32) / out_size
    index = torch.arange(out_size, dtype=torch.float32) * scale
    return index.floor().long().clamp(max=in_size - 1).to(device)


def teacher_prediction(logits: Tensor, size: Tuple[int, int]) -> Tensor:
    """Argmax of the logits after bilinear resizing to ``size``.

    Args:
        logits (Tensor): (N, K, h', w') logits.
        size (tuple[int, int]): Target (h, w).

    Returns:
        Tensor: (N, h, w) predicted classes.
    """
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(
            logits.float(), size=size, mode='bilinear', align_corners=False)
    return logits.argmax(dim=1)


def valid_pixel_mask(labels: Tensor,
                     logits_T: Tensor,
                     ignore_index: int = 255,
                     valid_mask: str = 'teacher_correct') -> Tensor:
    """The pixels that class-balanced sampling may draw.

    Args:
        labels (Tensor): (N, h, w) labels at feature size.
        logits_T (Tensor): (N, K, h', w') teacher logits.
        ignore_index (int): Label of unlabelled pixels. Defaults to 255.
        valid_mask (str): ``'teacher_correct'``: labelled pixels where the
            teacher's prediction (logits resized to (h, w)) is the label;
            ``'labeled'``: every labelled pixel. Defaults to
            'teacher_correct'.

    Returns:
        Tensor: (N, h, w) bool mask. Labels outside ``[0, K)`` are never
        valid.
    """
    num_classes = logits_T.shape[1]
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    if valid_mask == 'teacher_correct':
        valid &= teacher_prediction(logits_T, labels.shape[-2:]) == labels
    return valid


def class_counts(labels: Tensor, valid: Tensor, num_classes: int) -> Tensor:
    """Count valid pixels per class and image.

    Args:
        labels (Tensor): (N, P) labels, in ``[0, num_classes)`` where valid.
        valid (Tensor): (N, P) mask of pixels to count.
        num_classes (int): Number of classes.

    Returns:
        Tensor: (N, num_classes) counts.
    """
    counts = torch.zeros(
        labels.shape[0], num_classes, dtype=torch.long, device=labels.device)
    return counts.scatter_add_(1, torch.where(valid, labels, 0),
                               valid.long())


def class_balanced_sample(labels: Tensor, valid: Tensor, counts: Tensor,
                          max_present: int,
                          num_samples: int) -> Tuple[Tensor, Tensor]:
    """Draw ``num_samples`` valid pixels per present class, for every image.

    A class with at least ``num_samples`` valid pixels gets that many drawn
    uniformly without replacement. A smaller class keeps all its pixels and
    is filled with the image's other valid pixels, drawn uniformly without
    replacement while they last and then repeated; with no other valid
    pixel, its own pixels are repeated.

    Args:
        labels (Tensor): (N, P) labels.
        valid (Tensor): (N, P) mask of the pixels that may be drawn.
        counts (Tensor): (N, K) valid pixels per class.
        max_present (int): Largest number of present classes in an image.
        num_samples (int): Points per class.

    Returns:
        tuple[Tensor, Tensor]: (N, B) pixel indices with
        ``B = max_present * num_samples``, class by class in ascending class
        order, images with fewer classes padded at the end; the (N, B) mask
        of real samples.
    """
    num_imgs, num_pixels = labels.shape
    num_classes = counts.shape[1]
    device = labels.device
    random_order, class_order, rank_in_random = _random_orders(
        labels, valid, num_classes)

    # Present classes first, in ascending class order.
    present = counts > 0
    classes = torch.where(present,
                          torch.arange(num_classes, device=device),
                          num_classes + torch.arange(num_classes,
                                                     device=device))
    classes = classes.sort(dim=1).values[:, :max_present] % num_classes
    slot_valid = present.gather(1, classes)  # (N, Cmax)
    count = counts.gather(1, classes)
    start = (counts.cumsum(1) - counts).gather(1, classes)
    num_valid = counts.sum(1, keepdim=True)
    num_other = num_valid - count

    j = torch.arange(num_samples, device=device)  # slot within the class
    # Padding slots (count 0) index pixel 0..P-1 too; they are masked out.
    own_pos = (start[..., None] + torch.minimum(j, count[..., None] - 1)).clamp(
        0, num_pixels - 1)
    own = class_order.gather(1, own_pos.flatten(1)).view(own_pos.shape)

    fill = _fill(own, count, start, num_other, random_order, class_order,
                 rank_in_random, num_samples)

    index = torch.where(j < count[..., None], own, fill)
    rows_valid = slot_valid[..., None].expand(-1, -1, num_samples)
    return index.flatten(1), rows_valid.flatten(1)


def _random_orders(labels: Tensor, valid: Tensor,
                   num_classes: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The valid pixels in a random order, that order grouped by class, and
    each pixel's position in the first (of :func:`class_balanced_sample`)."""
    num_imgs, num_pixels = labels.shape
    # Valid pixels in a uniformly random order (invalid ones last) ...
    keys = torch.rand(num_imgs, num_pixels, device=labels.device)
    random_order = keys.masked_fill(~valid, 2.0).argsort(dim=1)
    # ... and grouped by class, keeping that random order inside a class.
    class_key = torch.where(valid, labels, num_classes)
    by_class = class_key.gather(1, random_order).argsort(dim=1, stable=True)
    class_order = random_order.gather(1, by_class)
    # Position of each pixel in `random_order`.
    rank_in_random = torch.empty_like(random_order).scatter_(
        1, random_order,
        torch.arange(num_pixels, device=labels.device).expand(num_imgs, -1))
    return random_order, class_order, rank_in_random


def _fill(own: Tensor, count: Tensor, start: Tensor, num_other: Tensor,
          random_order: Tensor, class_order: Tensor, rank_in_random: Tensor,
          num_samples: int) -> Tensor:
    """The fill of every class slot (of :func:`class_balanced_sample`)."""
    num_imgs, num_pixels = random_order.shape
    max_present = own.shape[1]
    device = own.device
    j = torch.arange(num_samples, device=device)  # slot within the class
    # Fill: the q-th pixel of `random_order` that is not of this class, for
    # q running cyclically from a random start. The class's own pixels sit
    # at sorted positions p_k there, and the q-th other pixel is at
    # q + #{k : p_k - k <= q}.
    own_rank = rank_in_random.gather(1, own.flatten(1)).view(own.shape)
    # Slots beyond the class's own pixels get a rank no q reaches.
    own_rank = own_rank.masked_fill(j >= count[..., None],
                                    num_pixels + num_samples)
    own_rank = own_rank.sort(dim=2).values - j
    fill_start = (torch.rand(num_imgs, max_present, device=device) *
                  num_other).long()
    q = (fill_start[..., None] + j - count[..., None]) % num_other.clamp(
        min=1)[..., None]
    fill_pos = q + (own_rank[:, :, None, :] <= q[..., None]).sum(-1)
    fill = random_order.gather(
        1,
        fill_pos.clamp(max=num_pixels - 1).flatten(1)).view(fill_pos.shape)
    # A class with no other valid pixel to borrow repeats its own pixels.
    cyclic = (start[..., None] + j % count[..., None].clamp(min=1)).clamp(
        max=num_pixels - 1)
    own_repeated = class_order.gather(1, cyclic.flatten(1)).view(
        cyclic.shape)
    fill = torch.where((num_other > 0)[..., None], fill, own_repeated)
    return fill


def gather_normalized(feats: Tensor, index: Tensor) -> Tensor:
    """Pick pixels of a feature map and L2-normalise them over channels.

    Args:
        feats (Tensor): (N, C, h, w) features.
        index (Tensor): (N, B) flat pixel indices.

    Returns:
        Tensor: (N, B, C) float32 unit vectors.
    """
    flat = feats.flatten(2)  # (N, C, P)
    picked = flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1))
    return F.normalize(picked.float().transpose(1, 2), dim=2)
