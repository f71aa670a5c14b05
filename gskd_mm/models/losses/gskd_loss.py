# Copyright (c) gskd-mm contributors. All rights reserved.
"""Global Structural Similarity Knowledge Distillation (GSKD) loss.

How it is vectorised (one host sync per forward) and what its options do:
``docs/en/advanced_guides/gskd_options.md``.
"""
import numbers
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmrazor.registry import MODELS
from torch import Tensor

from ..utils import (NORMALIZATIONS, check_dense_pair, check_labels,
                     class_balanced_sample, class_counts, descriptor_kl_terms,
                     float32_forward, gather_normalized, grouped_columns,
                     resize_labels, teacher_at_student_size, valid_pixel_mask)

VALID_MASKS = ('teacher_correct', 'labeled')


@dataclass(frozen=True)
class GSKDDescriptors:
    """The steps of GSKD before the KL, for a batch.

    What :meth:`GSKDLoss.descriptors` returns.

    B is the padded number of samples per image, G the largest number of
    groups and S the largest group width.

    Attributes:
        labels (Tensor): (N, h * w) labels at feature size.
        valid (Tensor): (N, h * w) pixels that may be sampled.
        counts (Tensor): (N, K) valid pixels per class.
        num_present (Tensor): (N,) classes present among the valid pixels.
        index (Tensor): (N, B) sampled pixels, class by class (see
            :func:`~gskd_mm.models.utils.class_balanced_sample`).
        rows_valid (Tensor): (N, B) real (not padding) samples.
        sim_S (Tensor): (N, B, B) the student's cosine self-similarities.
        sim_T (Tensor): (N, B, B) the teacher's.
        shuffled_S (Tensor): (N, B, G * S) ``sim_S`` with every row
            shuffled, laid out group by group.
        shuffled_T (Tensor): (N, B, G * S) the teacher's, same shuffle.
        columns (Tensor): (N, B, G * S) the column of ``sim_S`` each
            shuffled entry comes from.
        columns_valid (Tensor): (N, G, S) the columns that exist.
        groups_per_img (Tensor): (N,) groups of each image.
        off_diagonal (Tensor): (N, B, G * S) shuffled entries that are not
            a sample's similarity with itself.
        descriptor_valid (Tensor): (N, G) descriptors with at least one
            entry (with ``exclude_diagonal``, a descriptor can hold nothing
            but diagonal entries).
    """
    labels: Tensor
    valid: Tensor
    counts: Tensor
    num_present: Tensor
    index: Tensor
    rows_valid: Tensor
    sim_S: Tensor
    sim_T: Tensor
    shuffled_S: Tensor
    shuffled_T: Tensor
    columns: Tensor
    columns_valid: Tensor
    groups_per_img: Tensor
    off_diagonal: Tensor
    descriptor_valid: Tensor


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
            normalised: ``'length'`` (the authors': ``KL * tau**2 /
            (B * S)`` of the flattened descriptors), ``'descriptor'`` (not
            divided) or ``'row'`` (a softmax per row, the rows' KL
            averaged). Defaults to 'length'.
        exclude_diagonal (bool): Leave every sample's similarity with
            itself out of every descriptor, as if it were padding.
            Defaults to False.

    Note:
        The defaults give the authors' loss bit for bit. Why the authors'
        loss pulls weakly and how ``normalize``, ``exclude_diagonal`` and
        ``tau`` change that: ``docs/en/advanced_guides/gskd_options.md``.
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
        preds_T = teacher_at_student_size(
            preds_S, preds_T, self.resize_teacher, kind='features')
        steps = self.descriptors(preds_S, preds_T, logits_T, labels)
        if steps is None:
            # Still a function of preds_S, so DDP sees the projector used.
            return preds_S.sum() * 0.0
        return self.reduce(self.descriptor_losses(steps), steps)

    def descriptor_losses(self, steps: GSKDDescriptors) -> Tensor:
        """The weighted KL term of every descriptor.

        Args:
            steps (GSKDDescriptors): Output of :meth:`descriptors`.

        Returns:
            Tensor: (N, G) ``loss_weight`` times the KL term of each image's
            descriptors, normalised as ``normalize`` says; zero for padding
            groups and descriptors with no entry. :meth:`reduce` averages
            them into the loss.
        """
        return self.loss_weight * descriptor_kl_terms(
            steps.shuffled_S,
            steps.shuffled_T,
            steps.rows_valid,
            steps.columns_valid,
            self.tau,
            normalize=self.normalize,
            keep=steps.off_diagonal if self.exclude_diagonal else None)

    @staticmethod
    def reduce(terms: Tensor, steps: GSKDDescriptors) -> Tensor:
        """Average descriptor terms per image, then over images.

        Args:
            terms (Tensor): (N, G) terms, see :meth:`descriptor_losses`.
            steps (GSKDDescriptors): Output of :meth:`descriptors`.

        Returns:
            Tensor: Scalar: the mean over each image's descriptors that have
            an entry, averaged over the images that have such descriptors;
            zero (in the graph of ``terms``) when no image has one.
        """
        descriptor_valid = steps.descriptor_valid
        per_img = terms.sum(1) / descriptor_valid.sum(1).clamp(min=1)
        img_valid = descriptor_valid.any(1)
        # Sum and count rather than boolean indexing: no host sync.
        return (per_img * img_valid).sum() / img_valid.sum().clamp(min=1)

    def descriptors(self, preds_S: Tensor, preds_T: Tensor, logits_T: Tensor,
                    labels: Tensor) -> Optional[GSKDDescriptors]:
        """Sample, build the self-similarity maps, shuffle and group them.

        The steps of :meth:`forward` before the KL, on validated inputs;
        tools that show what GSKD compares call it too.

        Args:
            preds_S (Tensor): Student features, (N, C, h, w).
            preds_T (Tensor): Teacher features, (N, C, h, w); detached here.
            logits_T (Tensor): Teacher logits, (N, K, h', w'); detached here.
            labels (Tensor): Integer labels, (N, H, W).

        Returns:
            GSKDDescriptors | None: The sampled points, similarities and
            descriptors; None when no image has a valid pixel.
        """
        preds_T, logits_T = preds_T.detach(), logits_T.detach()
        labels, valid, counts, num_present, max_present = \
            self._valid_pixels(labels, logits_T, preds_S.shape[-2:])
        if max_present == 0:
            return None

        index, rows_valid = class_balanced_sample(labels, valid, counts,
                                                  max_present,
                                                  self.num_samples)
        columns, columns_valid, groups_per_img = grouped_columns(
            rows_valid, num_present, max_present, self.group_size)
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
        return GSKDDescriptors(
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

    def _valid_pixels(self, labels: Tensor, logits_T: Tensor,
                      size: Tuple[int, int]) -> tuple:
        """The pixels that may be sampled, and the classes among them.

        Args:
            labels (Tensor): Integer labels, (N, H, W).
            logits_T (Tensor): Teacher logits, (N, K, h', w').
            size (tuple[int, int]): The features' (h, w).

        Returns:
            tuple: ``labels`` (N, h * w) at feature size, ``valid`` (N,
            h * w), ``counts`` (N, K) valid pixels per class, ``num_present``
            (N,) and its maximum, an int.
        """
        num_classes = logits_T.shape[1]
        labels = resize_labels(labels, size)
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
        return labels, valid, counts, num_present, max_present

    def _check_inputs(self, preds_S: Tensor, preds_T: Tensor,
                      logits_T: Tensor, gt_labels: Tensor) -> Tensor:
        """Validate the inputs and return labels as (N, H, W).

        ``preds_T`` is checked against ``preds_S`` where it is aligned
        (:func:`teacher_at_student_size`).
        """
        check_dense_pair('preds_S', 'logits_T', preds_S, logits_T,
                         same_channels=False, same_size=False)
        return check_labels(gt_labels, preds_S.shape[0])
