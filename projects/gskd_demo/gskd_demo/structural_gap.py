# Copyright (c) gskd-mm contributors. All rights reserved.
"""How far a student's feature structure is from its teacher's."""
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.model import BaseModel
from torch import Tensor

from gskd_mm.models.losses import GSKDLoss


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


# The gap metrics of :func:`structural_gaps`, fixed whatever a recipe's
# GSKD loss is set to: the authors' descriptor KL at T = 1 (their length
# normalisation) and the mean absolute difference of the cosine
# self-similarity matrices, on the same fixed draws.
GAP_METRICS = ('kl', 'cos')


@torch.no_grad()
def structural_gaps(student: BaseModel,
                    teacher: BaseModel,
                    dataloader: Iterable[dict],
                    feature: str = 'decode_head.bottleneck',
                    projector: Optional[Callable[[Tensor], Tensor]] = None,
                    num_samples: int = 8,
                    group_size: int = -1,
                    seed: int = 0,
                    cache_teacher: bool = False) -> Dict[str, float]:
    """How far a student's feature structure is from its teacher's.

    For every image, ``num_samples`` labelled pixels per present class are
    drawn (the same pixels for every student, the draws being seeded by
    ``seed`` and the batch index) and the cosine self-similarity matrices
    of the teacher's and the student's features on them are compared in
    two fixed ways:

    * ``kl``: GSKD's descriptor KL (row-shuffled, column-grouped
      descriptors, temperature 1, the authors' division by the descriptor
      length, weight 1), GSKD's own mechanism metric;
    * ``cos``: the mean absolute difference of the two B x B cosine
      self-similarity matrices (in [0, 2]; e.g. 0.1 means two sampled
      points' cosine differs by 0.1 on average), the readable one.

    Both are zero when the structures are equal. The student's features
    are its own (the network that is deployed) or, given ``projector``,
    after it (where a GSKD loss matches them to the teacher's). Every
    student is measured the same way, whatever its training loss.

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
        dict[str, float]: ``kl`` and ``cos``, each the mean over the images
        that have labelled pixels of the image's value.

    Raises:
        ValueError: If no image has a labelled pixel, or a network has no
            module ``feature``.
    """
    # Only the arguments the authors' loss has always had: the metric stays
    # the same whatever options GSKDLoss gains (their defaults are the
    # authors').
    loss = GSKDLoss(
        num_samples=num_samples,
        group_size=group_size,
        tau=1.0,
        valid_mask='labeled')
    total = dict.fromkeys(GAP_METRICS, 0.0)
    count = 0
    for batch_idx, (batch, feat_T, logits_T) in enumerate(
            _teacher_side(teacher, dataloader, feature, cache_teacher)):
        data_S = student.data_preprocessor(batch, False)
        feat_S, _ = _record(student, feature, data_S['inputs'])
        if projector is not None:
            feat_S = projector(feat_S)
        labels = torch.stack(
            [sample.gt_sem_seg.data[0] for sample in data_S['data_samples']])
        with torch.random.fork_rng():
            torch.manual_seed(seed + batch_idx)
            steps = loss.descriptors(feat_S, feat_T, logits_T, labels)
        if steps is None:
            continue
        img_valid = steps.num_present > 0
        num_valid = int(img_valid.sum())
        kl = loss.reduce(loss.descriptor_losses(steps), steps)
        # Mean |V_T - V_S| over each image's pairs of real (not padding)
        # samples, then over the images.
        pairs = (steps.rows_valid[:, :, None]
                 & steps.rows_valid[:, None, :]).float()
        diff = (steps.sim_T - steps.sim_S).abs() * pairs
        cos = diff.sum((1, 2)) / pairs.sum((1, 2)).clamp(min=1)
        total['kl'] += float(kl) * num_valid
        total['cos'] += float(cos[img_valid].sum())
        count += num_valid
    if count == 0:
        raise ValueError('no image of the dataloader has a labelled pixel: '
                         'the structural gap needs ground-truth labels')
    return {k: v / count for k, v in total.items()}


def structural_gap(student: BaseModel,
                   teacher: BaseModel,
                   dataloader: Iterable[dict],
                   feature: str = 'decode_head.bottleneck',
                   **kwargs) -> float:
    """GSKD's descriptor KL between a student and its teacher, on a dataset.

    The ``kl`` of :func:`structural_gaps` (see there for the arguments).

    Returns:
        float: The mean over the images that have labelled pixels of each
        image's mean descriptor KL.
    """
    return structural_gaps(student, teacher, dataloader, feature,
                           **kwargs)['kl']
