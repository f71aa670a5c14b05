# Copyright (c) gskd-mm contributors. All rights reserved.
"""Global Structural Similarity Knowledge Distillation (GSKD) loss.

Every step of the method is a batched tensor operation: class-balanced
sampling is two sorts per batch, the row-wise shuffle is one sort of random
keys, and the descriptors are a masked log-softmax over a padded
``(images, groups, rows * columns)`` layout. The whole forward makes a single
host-device sync (for the largest number of classes in an image, which sets
the padded shapes) regardless of the number of classes or groups.
"""
import numbers
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmrazor.registry import MODELS
from torch import Tensor

from .utils import (check_dense_pair, check_labels, float32_forward,
                    teacher_at_student_size)

VALID_MASKS = ('teacher_correct', 'labeled')
NORMALIZATIONS = ('length', 'descriptor', 'row')


@MODELS.register_module()
class GSKDLoss(nn.Module):
    """Global Structural Similarity Knowledge Distillation loss.

    Per image, ``num_samples`` pixels are drawn for every class present among
    the valid pixels (class-balanced), the cosine self-similarity matrices of
    the sampled teacher and student features (``B x B``) are row-wise
    shuffled and cut into groups of columns, and each group (a semi-global
    descriptor) of the student is matched to the teacher's with a
    temperature-scaled KL divergence.

    Args:
        num_samples (int): Points drawn per present class (N). Classes with
            fewer valid pixels are filled with other valid pixels of the
            image. Defaults to 8.
        group_size (int): Columns per descriptor (S). ``S > 0`` is an
            absolute width; ``S < 0`` means ``|S|`` times the number of
            classes present in the image. Defaults to -1.
        tau (float): Temperature of the descriptor softmax. Defaults to 1.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        ignore_index (int): Label of pixels that are never sampled.
            Defaults to 255.
        valid_mask (str): Which labelled pixels may be sampled:
            ``'teacher_correct'`` (the teacher's argmax equals the label, as
            the method's authors do) or ``'labeled'`` (every pixel whose
            label is not ``ignore_index``). Defaults to 'teacher_correct'.
        resize_teacher (bool): Resize teacher features of another height x
            width to the student's (bilinear; see
            :func:`teacher_at_student_size`), so that every sampled point is
            the same image position in both maps. If False, such features
            raise a ValueError. Defaults to False.
        normalize (str): How the KL of a ``B x S`` descriptor is
            normalised. ``'length'``: the KL between the softmaxes of the
            flattened descriptors, ``* tau**2 / (B * S)`` (its number of
            entries), as the method's authors do. ``'descriptor'``: the same
            KL ``* tau**2``, not divided. ``'row'``: each of the B rows is a
            distribution over its S columns; the KL of every row
            ``* tau**2``, averaged over the descriptor's rows that have an
            entry. Defaults to 'length'.
        exclude_diagonal (bool): Leave every sample's similarity with
            itself (the cosine-1 entry of ``V``, at column == row before the
            shuffle) out of every descriptor, as if it were padding. A
            sample drawn twice (fill of a class with no other valid pixel)
            keeps its similarity with its copy. Defaults to False.

    Note:
        At the authors' settings (the defaults) GSKD pulls weakly on the
        student, for three reasons that ``normalize`` and
        ``exclude_diagonal`` address:

        - a descriptor's softmax runs over ``B * S`` cosines in [-1, 1], so
          at ``tau = 1`` it is almost flat ('row' softmaxes over S entries);
        - its KL is divided by ``B * S`` (about 2,000 on Cityscapes);
          'descriptor' and 'row' do not divide by it;
        - the diagonal of ``V`` (cosine 1 in both networks, at the same
          shuffled positions) sits inside every descriptor: at a lower
          ``tau`` both distributions peak on it and the loss vanishes
          instead of sharpening, unless ``exclude_diagonal`` removes it.

        The defaults give the authors' loss bit for bit.
    """

    def __init__(self,
                 num_samples: int = 8,
                 group_size: int = -1,
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 ignore_index: int = 255,
                 valid_mask: str = 'teacher_correct',
                 resize_teacher: bool = False,
                 normalize: str = 'length',
                 exclude_diagonal: bool = False) -> None:
        super().__init__()
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) \
                or num_samples < 1:
            raise ValueError(
                f'num_samples must be a positive int, got {num_samples!r}')
        if isinstance(group_size, bool) or not isinstance(group_size, int) \
                or group_size == 0:
            raise ValueError(
                'group_size must be a non-zero int (S > 0: columns per '
                'group, S < 0: |S| x classes present), got '
                f'{group_size!r}')
        if isinstance(tau, bool) or not isinstance(tau, numbers.Real) \
                or not tau > 0:
            raise ValueError(f'tau must be a number > 0, got {tau!r}')
        if valid_mask not in VALID_MASKS:
            raise ValueError(f'valid_mask must be one of {VALID_MASKS}, '
                             f'got {valid_mask!r}')
        if normalize not in NORMALIZATIONS:
            raise ValueError(f'normalize must be one of {NORMALIZATIONS} '
                             "('length': the authors' KL / (B * S)), got "
                             f'{normalize!r}')
        if not isinstance(exclude_diagonal, bool):
            raise ValueError('exclude_diagonal must be True or False, got '
                             f'{exclude_diagonal!r}')
        self.num_samples = num_samples
        self.group_size = group_size
        self.tau = float(tau)
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self.valid_mask = valid_mask
        self.resize_teacher = resize_teacher
        self.normalize = normalize
        self.exclude_diagonal = exclude_diagonal

    def extra_repr(self) -> str:
        return (f'num_samples={self.num_samples}, '
                f'group_size={self.group_size}, tau={self.tau}, '
                f'loss_weight={self.loss_weight}, '
                f'ignore_index={self.ignore_index}, '
                f'valid_mask={self.valid_mask!r}, '
                f'resize_teacher={self.resize_teacher}, '
                f'normalize={self.normalize!r}, '
                f'exclude_diagonal={self.exclude_diagonal}')

    @float32_forward
    def forward(self, preds_S: Tensor, preds_T: Tensor, logits_T: Tensor,
                gt_labels: Tensor) -> Tensor:
        """Compute the GSKD loss of a batch, in float32 (also under autocast).

        Args:
            preds_S (Tensor): Student features projected to the teacher's
                width, (N, C, h, w).
            preds_T (Tensor): Teacher features, (N, C, h, w), or of another
                height x width with ``resize_teacher``.
            logits_T (Tensor): Teacher logits, (N, K, h', w'); resized to
                (h, w) to find the pixels the teacher gets right.
            gt_labels (Tensor): Integer labels, (N, H, W) or (N, 1, H, W);
                resized to (h, w) with nearest interpolation.

        Returns:
            Tensor: The weighted loss, a scalar. It is zero, but still part
            of the graph of ``preds_S``, when no image has a valid pixel.
        """
        labels = self._check_inputs(preds_S, preds_T, logits_T, gt_labels)
        preds_T = teacher_at_student_size(preds_S, preds_T,
                                          self.resize_teacher)
        steps = self.descriptors(preds_S, preds_T, logits_T, labels)
        if steps is None:
            # Still a function of preds_S, so DDP sees the projector used.
            return preds_S.sum() * 0.0
        return self.reduce(self.descriptor_losses(steps), steps)

    def descriptor_losses(self, steps: Dict[str, Tensor]) -> Tensor:
        """The weighted KL term of every descriptor.

        Args:
            steps (dict[str, Tensor]): Output of :meth:`descriptors`.

        Returns:
            Tensor: (N, G) ``loss_weight`` times the KL term of each image's
            descriptors, normalised as ``normalize`` says; zero for padding
            groups and descriptors with no entry. :meth:`reduce` averages
            them into the loss.
        """
        return self.loss_weight * descriptor_kl_terms(
            steps['shuffled_S'],
            steps['shuffled_T'],
            steps['rows_valid'],
            steps['columns_valid'],
            self.tau,
            normalize=self.normalize,
            keep=steps['off_diagonal'] if self.exclude_diagonal else None)

    @staticmethod
    def reduce(terms: Tensor, steps: Dict[str, Tensor]) -> Tensor:
        """Average descriptor terms per image, then over images.

        Args:
            terms (Tensor): (N, G) terms, see :meth:`descriptor_losses`.
            steps (dict[str, Tensor]): Output of :meth:`descriptors`.

        Returns:
            Tensor: Scalar: the mean over each image's descriptors that have
            an entry, averaged over the images that have such descriptors;
            zero (in the graph of ``terms``) when no image has one.
        """
        descriptor_valid = steps['descriptor_valid']
        per_img = terms.sum(1) / descriptor_valid.sum(1).clamp(min=1)
        img_valid = descriptor_valid.any(1)
        # Sum and count rather than boolean indexing: no host sync.
        return (per_img * img_valid).sum() / img_valid.sum().clamp(min=1)

    def descriptors(self, preds_S: Tensor, preds_T: Tensor, logits_T: Tensor,
                    labels: Tensor) -> Optional[Dict[str, Tensor]]:
        """Sample, build the self-similarity maps, shuffle and group them.

        The steps of :meth:`forward` before the KL, on validated inputs;
        tools that show what GSKD compares call it too.

        Args:
            preds_S (Tensor): Student features, (N, C, h, w).
            preds_T (Tensor): Teacher features, (N, C, h, w); detached here.
            logits_T (Tensor): Teacher logits, (N, K, h', w'); detached here.
            labels (Tensor): Integer labels, (N, H, W).

        Returns:
            dict[str, Tensor] | None: None when no image has a valid pixel.
            Else, with B the padded number of samples: ``labels`` and
            ``valid`` (N, h * w) at feature size; ``counts`` (N, K) valid
            pixels per class; ``num_present`` (N,); ``index`` and
            ``rows_valid`` (N, B), see :func:`class_balanced_sample`;
            ``sim_S`` and ``sim_T`` (N, B, B) cosine self-similarities;
            ``shuffled_S`` and ``shuffled_T`` (N, B, G * S) their rows
            shuffled and laid out group by group; ``columns`` (N, B, G * S)
            the column of ``sim_S`` each shuffled entry comes from;
            ``columns_valid`` (N, G, S) and ``groups_per_img`` (N,), see
            :meth:`_grouped_columns`; ``off_diagonal`` (N, B, G * S) the
            shuffled entries that are not a sample's similarity with
            itself; ``descriptor_valid`` (N, G) the descriptors with at
            least one entry (with ``exclude_diagonal``, a descriptor can
            hold nothing but diagonal entries).
        """
        preds_T, logits_T = preds_T.detach(), logits_T.detach()
        num_classes = logits_T.shape[1]
        labels = resize_labels(labels, preds_S.shape[-2:])
        valid = valid_pixel_mask(labels, logits_T, self.ignore_index,
                                 self.valid_mask).flatten(1)
        labels = labels.flatten(1)
        out_of_range = (labels != self.ignore_index) & (
            (labels < 0) | (labels >= num_classes))
        counts = class_counts(labels, valid, num_classes)
        num_present = (counts > 0).sum(1)
        # The one host sync of the forward: the padded shapes depend on it,
        # and the label range check rides along.
        max_present, num_out_of_range = torch.stack(
            [num_present.max(), out_of_range.sum()]).tolist()
        if num_out_of_range:
            raise ValueError(
                f'gt_labels holds values outside [0, {num_classes}) that are '
                f'not ignore_index={self.ignore_index}; labels must index '
                'the classes of logits_T, and unlabelled pixels must carry '
                'ignore_index')
        if max_present == 0:
            return None

        index, rows_valid = class_balanced_sample(labels, valid, counts,
                                                  max_present,
                                                  self.num_samples)
        columns, columns_valid, groups_per_img = self._grouped_columns(
            rows_valid, num_present, max_present)
        feat_S = gather_normalized(preds_S, index)
        feat_T = gather_normalized(preds_T, index)
        sim_S = feat_S @ feat_S.transpose(1, 2)
        sim_T = feat_T @ feat_T.transpose(1, 2)
        rows = torch.arange(columns.shape[1], device=columns.device)
        off_diagonal = columns != rows[:, None]
        # (N, B, G, S) entries a descriptor compares -> (N, G) any entry.
        entries = rows_valid[:, :, None, None] & columns_valid[:, None]
        if self.exclude_diagonal:
            entries = entries & off_diagonal.view(entries.shape)
        descriptor_valid = entries.any(3).any(1)
        return dict(
            labels=labels,
            valid=valid,
            counts=counts,
            num_present=num_present,
            index=index,
            rows_valid=rows_valid,
            sim_S=sim_S,
            sim_T=sim_T,
            shuffled_S=sim_S.gather(2, columns),
            shuffled_T=sim_T.gather(2, columns),
            columns=columns,
            columns_valid=columns_valid,
            groups_per_img=groups_per_img,
            off_diagonal=off_diagonal,
            descriptor_valid=descriptor_valid)

    def _grouped_columns(self, rows_valid: Tensor, num_present: Tensor,
                         max_present: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Shuffle every row's columns and lay them out in groups.

        Args:
            rows_valid (Tensor): (N, B) mask of real (not padding) samples.
            num_present (Tensor): (N,) number of classes per image.
            max_present (int): ``num_present.max()``.

        Returns:
            tuple[Tensor, Tensor, Tensor]: Column indices into the
            similarity matrices, (N, B, G * S) for G groups of at most S
            columns; the (N, G, S) mask of the columns that exist; the (N,)
            number of groups of each image.
        """
        num_imgs, max_samples = rows_valid.shape
        num_samples = rows_valid.sum(1)  # B of each image
        if self.group_size > 0:
            width = torch.full_like(num_samples, self.group_size)
        else:
            width = -self.group_size * num_present
        # A group wider than the B columns of its image is all of them.
        width = torch.minimum(width, num_samples).clamp(min=1)
        max_width = min(
            self.group_size if self.group_size > 0 else -self.group_size *
            max_present, max_samples)
        max_groups = -(-max_samples // max_width)
        groups_per_img = -(-num_samples // width)

        # Row-wise shuffle: sorting random keys gives every row its own
        # uniform permutation; padding columns sort last.
        keys = torch.rand(
            num_imgs, max_samples, max_samples, device=rows_valid.device)
        keys.masked_fill_(~rows_valid[:, None, :], 2.0)
        perm = keys.argsort(dim=2)

        # Shuffled position of column k of group g: g * width + k.
        group = torch.arange(max_groups, device=perm.device)[:, None]
        within = torch.arange(max_width, device=perm.device)
        position = group * width[:, None, None] + within  # (N, G, S)
        columns_valid = (within < width[:, None, None]) & (
            position < num_samples[:, None, None])
        position = torch.where(columns_valid, position, 0).flatten(1)
        columns = perm.gather(
            2, position[:, None, :].expand(-1, max_samples, -1))
        return columns, columns_valid, groups_per_img

    def _check_inputs(self, preds_S: Tensor, preds_T: Tensor,
                      logits_T: Tensor, gt_labels: Tensor) -> Tensor:
        """Validate the inputs and return labels as (N, H, W).

        ``preds_T`` is checked against ``preds_S`` where it is aligned
        (:func:`teacher_at_student_size`).
        """
        check_dense_pair('preds_S', 'logits_T', preds_S, logits_T,
                         same_channels=False, same_size=False)
        return check_labels(gt_labels, preds_S.shape[0])


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

    # Valid pixels in a uniformly random order (invalid ones last) ...
    keys = torch.rand(num_imgs, num_pixels, device=device)
    random_order = keys.masked_fill(~valid, 2.0).argsort(dim=1)
    # ... and grouped by class, keeping that random order inside a class.
    class_key = torch.where(valid, labels, num_classes)
    by_class = class_key.gather(1, random_order).argsort(dim=1, stable=True)
    class_order = random_order.gather(1, by_class)
    # Position of each pixel in `random_order`.
    rank_in_random = torch.empty_like(random_order).scatter_(
        1, random_order,
        torch.arange(num_pixels, device=device).expand(num_imgs, -1))

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

    index = torch.where(j < count[..., None], own, fill)
    rows_valid = slot_valid[..., None].expand(-1, -1, num_samples)
    return index.flatten(1), rows_valid.flatten(1)


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


def descriptor_kl_terms(sim_S: Tensor,
                        sim_T: Tensor,
                        rows_valid: Tensor,
                        columns_valid: Tensor,
                        tau: float,
                        normalize: str = 'length',
                        keep: Optional[Tensor] = None) -> Tensor:
    """KL between every teacher and student descriptor, as in GSKD.

    With ``normalize='length'`` (the authors'), each descriptor is
    flattened, softmax-ed with temperature ``tau`` and compared with
    ``KL(teacher || student) * tau**2 / length``, ``length`` its number of
    entries. ``'descriptor'`` leaves out the division. ``'row'`` softmaxes
    every row of a descriptor over its columns and averages the rows'
    ``KL * tau**2`` over the rows that have an entry.

    Args:
        sim_S (Tensor): (N, B, G * S) student similarities, shuffled and
            laid out group by group.
        sim_T (Tensor): The teacher's, same layout.
        rows_valid (Tensor): (N, B) mask of real rows.
        columns_valid (Tensor): (N, G, S) mask of real columns.
        tau (float): Temperature.
        normalize (str): 'length', 'descriptor' or 'row'. Defaults to
            'length'.
        keep (Tensor, optional): (N, B, G * S) mask of the entries to
            compare, on top of the real rows and columns (e.g. off the
            diagonal). Defaults to None (all of them).

    Returns:
        Tensor: (N, G) terms; zero for groups with no entry (padding).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f'normalize must be one of {NORMALIZATIONS}, got '
                         f'{normalize!r}')
    num_imgs, rows, _ = sim_S.shape
    max_groups, max_width = columns_valid.shape[1:]
    # Masked entries get a huge negative logit: zero probability, no NaN
    # even for padding groups or rows that have no entry at all.
    floor = torch.finfo(torch.float32).min

    if normalize == 'row':
        shape = (num_imgs, rows, max_groups, max_width)
        mask = rows_valid[:, :, None, None] & columns_valid[:, None]
        if keep is not None:
            mask = mask & keep.view(shape)
        log_p_S = F.log_softmax(
            (sim_S.view(shape) / tau).masked_fill(~mask, floor), dim=3)
        log_p_T = F.log_softmax(
            (sim_T.view(shape) / tau).masked_fill(~mask, floor), dim=3)
        kl = torch.where(mask, log_p_T.exp() * (log_p_T - log_p_S),
                         0.0).sum(3)  # (N, B, G)
        rows_in = mask.any(3).sum(1)
        return (kl * tau**2).sum(1) / rows_in.clamp(min=1)

    def group_major(sim: Tensor) -> Tensor:
        # (N, B, G*S) -> (N, G, B*S): one flat descriptor per group.
        return sim.view(num_imgs, rows, max_groups, max_width).transpose(
            1, 2).reshape(num_imgs, max_groups, rows * max_width)

    mask = rows_valid[:, None, :, None] & columns_valid[:, :, None, :]
    mask = mask.reshape(num_imgs, max_groups, rows * max_width)
    if keep is not None:
        mask = mask & group_major(keep)
    log_p_S = F.log_softmax(
        (group_major(sim_S) / tau).masked_fill(~mask, floor), dim=2)
    log_p_T = F.log_softmax(
        (group_major(sim_T) / tau).masked_fill(~mask, floor), dim=2)
    kl = torch.where(mask, log_p_T.exp() * (log_p_T - log_p_S), 0.0).sum(2)
    if normalize == 'descriptor':
        return kl * tau**2
    return kl * tau**2 / mask.sum(2).clamp(min=1)
