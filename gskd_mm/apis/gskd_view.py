# Copyright (c) gskd-mm contributors. All rights reserved.
"""What GSKD compares on one image, computed by the distiller's own loss."""
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dataset import pseudo_collate
from mmengine.model import BaseModel
from mmengine.structures import PixelData

from ..models.losses import GSKDLoss


def find_gskd_loss(model: BaseModel) -> Tuple[str, GSKDLoss]:
    """The name and module of a distiller's GSKD loss.

    Args:
        model (BaseModel): A distillation algorithm.

    Returns:
        tuple[str, GSKDLoss]: The loss's name in the distiller, and the loss.

    Raises:
        ValueError: If the distiller has no ``GSKDLoss``.
    """
    for name, loss in model.distiller.distill_losses.items():
        if isinstance(loss, GSKDLoss):
            return name, loss
    raise ValueError('the distiller has no GSKDLoss (losses: '
                     f'{list(model.distiller.distill_losses)}); use a '
                     'config of a recipe with GSKD')


@dataclass
class GSKDView:
    """What GSKD compares on one image (see :func:`gskd_view`).

    Attributes:
        image (np.ndarray): (H, W, 3) RGB image, padded as the model sees
            it.
        labels (np.ndarray): (H, W) labels (or the teacher's prediction).
        feat_valid (np.ndarray): (h, w) mask of the pixels that may be
            sampled.
        index (np.ndarray): (B,) sampled pixels (flat, at h x w).
        sample_class (np.ndarray): (B,) the class of each sample.
        classes (np.ndarray): The present classes, ascending.
        V_t (np.ndarray): (B, B) the teacher's self-similarity.
        V_s (np.ndarray): (B, B) the student's self-similarity.
        desc_t (np.ndarray): (G, B, S) the teacher's descriptors (a partial
            last group's missing columns are NaN).
        desc_s (np.ndarray): (G, B, S) the student's descriptors.
        desc_kl (np.ndarray): (G,) their weighted KL terms.
        loss (float): The mean of ``desc_kl``.
        loss_reference (float): What ``GSKDLoss`` returns for the same
            draws: the same value.
        num_samples (int): GSKD's N.
        tau (float): Its temperature.
        loss_weight (float): Its weight.
        pseudo_labels (bool): Whether ``labels`` are the teacher's
            prediction (the sample had no ``gt_sem_seg``).
    """
    image: np.ndarray
    labels: np.ndarray
    feat_valid: np.ndarray
    index: np.ndarray
    sample_class: np.ndarray
    classes: np.ndarray
    V_t: np.ndarray
    V_s: np.ndarray
    desc_t: np.ndarray
    desc_s: np.ndarray
    desc_kl: np.ndarray
    loss: float
    loss_reference: float
    num_samples: int
    tau: float
    loss_weight: float
    pseudo_labels: bool


@torch.no_grad()
def _descriptor_maps(shuffled: torch.Tensor, steps,
                     num_groups: int) -> np.ndarray:
    """The (G, B, S) descriptors of the first image; missing columns of a
    partial last group are NaN (blank in a plot)."""
    width = steps.columns_valid.shape[2]
    b = shuffled.shape[1]
    out = shuffled[0].view(b, -1, width).transpose(0, 1)[:num_groups]
    mask = steps.columns_valid[0, :num_groups, None, :].expand_as(out)
    return torch.where(mask, out, float('nan')).numpy()


def _loss_inputs(model: BaseModel, name: str,
                 sample: dict) -> Tuple[dict, torch.Tensor, bool]:
    """Run student and teacher on ``sample`` as in training and read the
    inputs of the loss ``name`` (of :func:`gskd_view`).

    Returns:
        tuple[dict, Tensor, bool]: The loss's keyword arguments, the
        preprocessed inputs, and whether the labels are the teacher's
        prediction (the sample has no ``gt_sem_seg``).
    """
    mapping = model.distiller.loss_forward_mappings[name]
    data = model.data_preprocessor(pseudo_collate([sample]), False)
    inputs, samples = data['inputs'], data['data_samples']
    pseudo = 'gt_sem_seg' not in samples[0]
    if pseudo:
        logits = model.teacher(inputs, samples, mode='tensor')
        logits = F.interpolate(logits, size=inputs.shape[-2:], mode='bilinear')
        samples[0].gt_sem_seg = PixelData(data=logits.argmax(1))
    with model.distiller.teacher_recorders:
        model.teacher(inputs, samples, mode='loss')
    with model.distiller.student_recorders:
        model.architecture(inputs, samples, mode='loss')
    kwargs = {
        key: model.distiller.get_record(**record)
        for key, record in mapping.items()
    }
    return kwargs, inputs, pseudo


@torch.no_grad()
def gskd_view(model: BaseModel, sample: dict, seed: int = 0) -> GSKDView:
    """Compute what GSKD compares for one image.

    Student and teacher run as in training; sampling, similarity, grouping
    and the KL terms are the loss's own (:meth:`GSKDLoss.descriptors`).

    Args:
        model (BaseModel): A distiller with a ``GSKDLoss``, in eval mode.
        sample (dict): One packed sample (see
            :func:`gskd_mm.apis.load_sample`). Without ``gt_sem_seg``, the
            teacher's prediction is used as labels.
        seed (int): Seed of the random sampling and shuffling.

    Returns:
        GSKDView: The image, samples, similarity maps and descriptors.

    Raises:
        ValueError: No ``GSKDLoss``, or no pixel that can be sampled.
    """
    name, loss = find_gskd_loss(model)
    kwargs, inputs, pseudo = _loss_inputs(model, name, sample)
    gt = kwargs['gt_labels']
    labels = gt[:, 0] if gt.dim() == 4 else gt
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reference = float(loss(**kwargs))
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the same draws, step by step
        steps = loss.descriptors(kwargs['preds_S'], kwargs['preds_T'],
                                 kwargs['logits_T'], labels)
    if steps is None:
        raise ValueError('no pixel of this image can be sampled (none is '
                         'labelled and predicted right by the teacher)')
    terms = loss.descriptor_losses(steps)
    num_groups = int(steps.groups_per_img[0])

    image = sample['inputs'].flip(0).permute(1, 2, 0).numpy()  # BGR->RGB
    padded = np.zeros(tuple(inputs.shape[-2:]) + (3, ), dtype=np.uint8)
    padded[:image.shape[0], :image.shape[1]] = image
    present = torch.nonzero(steps.counts[0] > 0)[:, 0].numpy()
    return GSKDView(
        image=padded,
        labels=labels[0].numpy(),
        feat_valid=steps.valid[0].view(
            kwargs['preds_S'].shape[-2:]).numpy(),
        index=steps.index[0].numpy(),
        sample_class=np.repeat(present, loss.num_samples),
        classes=present,
        V_t=steps.sim_T[0].numpy(),
        V_s=steps.sim_S[0].numpy(),
        desc_t=_descriptor_maps(steps.shuffled_T, steps, num_groups),
        desc_s=_descriptor_maps(steps.shuffled_S, steps, num_groups),
        desc_kl=terms[0, :num_groups].numpy(),
        loss=float(loss.reduce(terms, steps)),
        loss_reference=reference,
        num_samples=loss.num_samples,
        tau=loss.tau,
        loss_weight=loss.loss_weight,
        pseudo_labels=pseudo)
