# Copyright (c) gskd-mm contributors. All rights reserved.
"""How far a student's feature structure is from its teacher's."""
from typing import Iterable, Tuple

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


@torch.no_grad()
def structural_gap(student: BaseModel,
                   teacher: BaseModel,
                   dataloader: Iterable[dict],
                   feature: str = 'decode_head.bottleneck',
                   num_samples: int = 8,
                   group_size: int = -1,
                   tau: float = 1.0,
                   seed: int = 0) -> float:
    """GSKD's descriptor KL between a student and its teacher, on a dataset.

    The mechanism metric of GSKD: for every image, ``num_samples`` labelled
    pixels per present class are drawn (the same pixels for every student,
    the draws being seeded by ``seed`` and the batch index), and the
    row-shuffled, column-grouped cosine self-similarity descriptors of the
    teacher's and the student's own features (no projector: the network
    that is deployed) are compared with GSKD's KL (weight 1). It is zero
    when the student's feature structure equals the teacher's, and grows as
    they part. Every student, distilled with GSKD or not, is measured the
    same way.

    Args:
        student (BaseModel): The student segmentor, in eval mode.
        teacher (BaseModel): The teacher segmentor, in eval mode.
        dataloader (Iterable[dict]): Batches of packed samples with
            ``gt_sem_seg`` (e.g. a validation dataloader).
        feature (str): Module of both networks whose output is the
            feature map (the decode head's last layer before the
            classifier). Defaults to 'decode_head.bottleneck'.
        num_samples (int): Points per present class (GSKD's N). Defaults
            to 8.
        group_size (int): Columns per descriptor (GSKD's S). Defaults to -1.
        tau (float): Temperature of the descriptor softmax. Defaults to 1.0.
        seed (int): Seed of the draws. Defaults to 0.

    Returns:
        float: The mean over the images that have labelled pixels of each
        image's mean descriptor KL.

    Raises:
        ValueError: If no image has a labelled pixel, or a network has no
            module ``feature``.
    """
    loss = GSKDLoss(
        num_samples=num_samples,
        group_size=group_size,
        tau=tau,
        valid_mask='labeled')
    total, count = 0.0, 0
    for batch_idx, batch in enumerate(dataloader):
        data_S = student.data_preprocessor(batch, False)
        data_T = teacher.data_preprocessor(batch, False)
        feat_S, _ = _record(student, feature, data_S['inputs'])
        feat_T, logits_T = _record(teacher, feature, data_T['inputs'])
        labels = torch.stack(
            [sample.gt_sem_seg.data[0] for sample in data_S['data_samples']])
        with torch.random.fork_rng():
            torch.manual_seed(seed + batch_idx)
            steps = loss.descriptors(feat_S, feat_T, logits_T, labels)
        if steps is None:
            continue
        num_valid = int((steps['num_present'] > 0).sum())
        mean = loss.reduce(loss.descriptor_losses(steps), steps)
        total += float(mean) * num_valid
        count += num_valid
    if count == 0:
        raise ValueError('no image of the dataloader has a labelled pixel: '
                         'the structural gap needs ground-truth labels')
    return total / count
