# Copyright (c) gskd-mm contributors. All rights reserved.
"""How far a student's feature structure is from its teacher's.

One metric, on features (:func:`structural_gap`: the toy of
``tools/analysis_tools/gskd_toy.py``) and on a dataset
(:func:`structural_gaps`: the trained students of the CPU demo).
"""
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple

import torch
from mmengine.model import BaseModel
from torch import Tensor

from ..models.losses import GSKDLoss

__all__ = ['StructuralGap', 'structural_gap', 'structural_gaps']


@dataclass
class StructuralGap:
    """The structural gap over some images: sums and count.

    Sums, not means, so that the gaps of batches add up exactly to the gap
    of a dataset (``a + b``).

    Attributes:
        kl_sum (float): Sum over the images of GSKD's descriptor KL.
        cos_sum (float): Sum over the images of the mean absolute
            difference of the two cosine self-similarity matrices.
        num_images (int): Images with labelled pixels to sample.
    """
    kl_sum: float = 0.0
    cos_sum: float = 0.0
    num_images: int = 0

    def __add__(self, other: 'StructuralGap') -> 'StructuralGap':
        return StructuralGap(self.kl_sum + other.kl_sum,
                             self.cos_sum + other.cos_sum,
                             self.num_images + other.num_images)

    @property
    def kl(self) -> float:
        """The mean descriptor KL over the images."""
        return self.kl_sum / self.num_images

    @property
    def cos(self) -> float:
        """The mean absolute cosine difference over the images."""
        return self.cos_sum / self.num_images


# Only the arguments the authors' loss has always had: the metric stays the
# same whatever options GSKDLoss gains (their defaults are the authors').
def _metric_loss(num_samples: int, group_size: int) -> GSKDLoss:
    return GSKDLoss(
        num_samples=num_samples,
        group_size=group_size,
        tau=1.0,
        valid_mask='labeled')


@torch.no_grad()
def structural_gap(feat_S: Tensor,
                   feat_T: Tensor,
                   logits_T: Tensor,
                   labels: Tensor,
                   seed: int = 0,
                   num_samples: int = 8,
                   group_size: int = -1) -> StructuralGap:
    """The structural gap between two batches of feature maps.

    For every image, ``num_samples`` labelled pixels per present class are
    drawn (seeded by ``seed``, so every student is measured on the same
    draws) and the cosine self-similarity matrices of the teacher's and the
    student's features on them are compared in two fixed ways:

    * ``kl``: GSKD's descriptor KL (row-shuffled, column-grouped
      descriptors, temperature 1, the authors' division by the descriptor
      length, weight 1), GSKD's own mechanism metric;
    * ``cos``: the mean absolute difference of the two B x B cosine
      self-similarity matrices over the image's real samples (in [0, 2];
      e.g. 0.1 means two sampled points' cosine differs by 0.1 on
      average), the readable one.

    Both are zero when the structures are equal.

    Args:
        feat_S (Tensor): (N, C, h, w) student features (projected to the
            teacher's width where they differ).
        feat_T (Tensor): (N, C_T, h, w) teacher features.
        logits_T (Tensor): (N, K, h', w') teacher logits.
        labels (Tensor): (N, H, W) labels (255: ignored).
        seed (int): Seed of the draws. Defaults to 0.
        num_samples (int): Points per present class (GSKD's N). Defaults
            to 8.
        group_size (int): Columns per descriptor (GSKD's S). Defaults to -1.

    Returns:
        StructuralGap: The sums over the images with labelled pixels.
    """
    loss = _metric_loss(num_samples, group_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        steps = loss.descriptors(feat_S, feat_T, logits_T, labels)
    if steps is None:
        return StructuralGap()
    img_valid = steps.num_present > 0
    num_valid = int(img_valid.sum())
    kl = loss.reduce(loss.descriptor_losses(steps), steps)
    # Mean |V_T - V_S| over each image's pairs of real (not padding)
    # samples.
    pairs = (steps.rows_valid[:, :, None]
             & steps.rows_valid[:, None, :]).float()
    diff = (steps.sim_T - steps.sim_S).abs() * pairs
    cos = diff.sum((1, 2)) / pairs.sum((1, 2)).clamp(min=1)
    return StructuralGap(
        float(kl) * num_valid, float(cos[img_valid].sum()), num_valid)


def _record(model: BaseModel, source: str,
            inputs: Tensor) -> Tuple[Tensor, Tensor]:
    """Run ``model`` in tensor mode: the output of ``source``, the logits."""
    try:
        module = model.get_submodule(source)
    except AttributeError as e:
        raise ValueError(f'{type(model).__name__} has no module {source!r}; '
                         'give the name of the decode head\'s last feature '
                         'layer (e.g. decode_head.bottleneck, '
                         'decode_head.fusion_conv)') from e
    record = []
    handle = module.register_forward_hook(
        lambda _module, _args, output: record.append(output))
    try:
        logits = model(inputs, mode='tensor')
    finally:
        handle.remove()
    return record[-1], logits


# The teacher's side of the gaps, per (teacher, dataloader, feature), for
# callers that measure many students against one fixed teacher on the same
# images (every run of a demo process). The entry holds the teacher and the
# dataloader, so that their ids cannot be reused while it lives.
_TEACHER_SIDE: dict = {}


def _teacher_side(teacher: BaseModel, dataloader: Iterable[dict],
                  feature: str,
                  cache: bool) -> List[Tuple[dict, Tensor, Tensor]]:
    """Every batch with the teacher's features and logits on it."""
    key = (id(teacher), id(dataloader), feature)
    if cache and key in _TEACHER_SIDE:
        return _TEACHER_SIDE[key][2]
    batches = []
    for batch in dataloader:
        data_T = teacher.data_preprocessor(batch, False)
        batches.append((batch, *_record(teacher, feature, data_T['inputs'])))
    if cache:
        _TEACHER_SIDE[key] = (teacher, dataloader, batches)
    return batches


@torch.no_grad()
def structural_gaps(student: BaseModel,
                    teacher: BaseModel,
                    dataloader: Iterable[dict],
                    feature: str = 'decode_head.bottleneck',
                    projector: Optional[Callable[[Tensor], Tensor]] = None,
                    num_samples: int = 8,
                    group_size: int = -1,
                    seed: int = 0,
                    cache_teacher: bool = False) -> StructuralGap:
    """How far a student's feature structure is from its teacher's, on a
    dataset.

    :func:`structural_gap` of every batch (the draws of batch ``i`` seeded
    by ``seed + i``, the same for every student), summed.

    Args:
        student (BaseModel): The student segmentor, in eval mode.
        teacher (BaseModel): The teacher segmentor, in eval mode.
        dataloader (Iterable[dict]): Batches of packed samples with
            ``gt_sem_seg`` (e.g. a validation dataloader).
        feature (str): Module of both networks whose output is the
            feature map (the decode head's last layer before the
            classifier). Defaults to 'decode_head.bottleneck'.
        projector (Callable, optional): Applied to the student's features
            first (e.g. a distiller's ``gskd_projector``, in eval mode).
            Defaults to None: the student's own features.
        num_samples (int): Points per present class (GSKD's N). Defaults
            to 8.
        group_size (int): Columns per descriptor (GSKD's S). Defaults to -1.
        seed (int): Seed of the draws. Defaults to 0.
        cache_teacher (bool): Keep the batches and the teacher's features
            for the next call with the same teacher, dataloader and
            feature (the teacher must not change in between). Defaults to
            False.

    Returns:
        StructuralGap: Its ``kl`` and ``cos`` are the means over the images
        that have labelled pixels.

    Raises:
        ValueError: If no image has a labelled pixel, or a network has no
            module ``feature``.
    """
    total = StructuralGap()
    for batch_idx, (batch, feat_T, logits_T) in enumerate(
            _teacher_side(teacher, dataloader, feature, cache_teacher)):
        data_S = student.data_preprocessor(batch, False)
        feat_S, _ = _record(student, feature, data_S['inputs'])
        if projector is not None:
            feat_S = projector(feat_S)
        labels = torch.stack(
            [sample.gt_sem_seg.data[0] for sample in data_S['data_samples']])
        total = total + structural_gap(feat_S, feat_T, logits_T, labels,
                                       seed + batch_idx, num_samples,
                                       group_size)
    if total.num_images == 0:
        raise ValueError('no image of the dataloader has a labelled pixel: '
                         'the structural gap needs ground-truth labels')
    return total
