# Copyright (c) gskd-mm contributors. All rights reserved.
"""Plain loop implementations of the CIRKD terms, for tests and benchmarks.

Each function follows the method page step by step with Python loops over
images, image pairs and classes, as the authors' code does, so that it is
easy to check by eye. They are the references the vectorised losses of
``gskd_mm.models.losses`` are tested against and the baselines they are
timed against; they are not used in training. Labels are resized with
``F.interpolate(mode='nearest')`` (see :mod:`loop_reference`).

Part of :mod:`gskd_mm.testing`, which ``import gskd_mm`` does not import:
the tests and the benchmarks of ``tools/analysis_tools`` import it.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .loop_reference import resize_labels

__all__ = [
    'pixel_kd_loss_loop', 'minibatch_pixel_loss_loop',
    'minibatch_pixel_loss_dense', 'LoopMemory',
    'memory_loss_loop'
]


def pixel_kd_loss_loop(logits_S: Tensor, logits_T: Tensor,
                       tau: float = 1.0) -> Tensor:
    """Per-pixel logits KD, one image at a time (not weighted).

    Args:
        logits_S (Tensor): (N, K, H, W) student logits.
        logits_T (Tensor): (N, K, H, W) teacher logits.
        tau (float): Temperature. Defaults to 1.0.

    Returns:
        Tensor: ``KL(softmax(z_t/T) || softmax(z_s/T)) * T**2`` averaged
        over the pixels of the batch.
    """
    total = logits_S.new_zeros(())
    num_pixels = 0
    for z_s, z_t in zip(logits_S, logits_T.detach()):
        rows_s = z_s.flatten(1).t()  # (H * W, K)
        rows_t = z_t.flatten(1).t()
        p_t = F.softmax(rows_t / tau, dim=1)
        log_p_s = F.log_softmax(rows_s / tau, dim=1)
        total = total + (p_t * (p_t.log() - log_p_s)).sum()
        num_pixels += rows_s.shape[0]
    return total / num_pixels * tau**2


def minibatch_pixel_loss_loop(preds_S: Tensor,
                              preds_T: Tensor,
                              tau: float = 0.1) -> Tensor:
    """Mini-batch pixel-to-pixel KD, one image pair at a time.

    Args:
        preds_S (Tensor): (N, Cs, h, w) student features.
        preds_T (Tensor): (N, Ct, h, w) teacher features.
        tau (float): Similarity temperature. Defaults to 0.1.

    Returns:
        Tensor: Mean over the ``N**2`` ordered pairs (i, j) of the
        row-averaged ``KL(teacher || student)`` of the softmax-ed
        ``P x P`` similarity maps of the pixels of i to those of j.
    """
    num_imgs = preds_S.shape[0]
    feat_S = F.normalize(preds_S, dim=1)
    feat_T = F.normalize(preds_T.detach(), dim=1)
    total = preds_S.new_zeros(())
    for i in range(num_imgs):
        for j in range(num_imgs):
            # (C, h, w) -> (P, C) by flatten and transpose.
            s_i, s_j = feat_S[i].flatten(1).t(), feat_S[j].flatten(1).t()
            t_i, t_j = feat_T[i].flatten(1).t(), feat_T[j].flatten(1).t()
            log_p_s = F.log_softmax(s_i @ s_j.t() / tau, dim=1)
            p_t = F.softmax(t_i @ t_j.t() / tau, dim=1)
            total = total + F.kl_div(log_p_s, p_t, reduction='batchmean')
    return total / num_imgs**2


def minibatch_pixel_loss_dense(preds_S: Tensor,
                               preds_T: Tensor,
                               tau: float = 0.1) -> Tensor:
    """Mini-batch pixel-to-pixel KD with all pairs in one map (not weighted).

    ``CIRKDMiniBatchPixelLoss`` as it was before it worked in blocks: one
    ``(N * P) x (N * P)`` similarity map per network, softmax-ed per image
    block, and autograd's backward, which keeps those maps alive. The
    reference its blocked computation is tested and timed against.

    Args:
        preds_S (Tensor): (N, Cs, h, w) student features.
        preds_T (Tensor): (N, Ct, h, w) teacher features.
        tau (float): Similarity temperature. Defaults to 0.1.

    Returns:
        Tensor: As :func:`minibatch_pixel_loss_loop`.
    """
    num_imgs, num_pixels = preds_S.shape[0], preds_S[0, 0].numel()

    def log_relations(feats: Tensor) -> Tensor:
        pixels = F.normalize(feats, dim=1).flatten(2).transpose(1, 2)
        pixels = pixels.reshape(-1, feats.shape[1])
        sim = (pixels / tau) @ pixels.t()
        sim = sim.view(num_imgs, -1, num_imgs, sim.shape[1] // num_imgs)
        return F.log_softmax(sim, dim=3)

    kl = F.kl_div(log_relations(preds_S), log_relations(preds_T.detach()),
                  reduction='sum', log_target=True)
    return kl / (num_imgs**2 * num_pixels)


class LoopMemory:
    """Per-class queues of teacher keys, updated one key at a time.

    Args:
        queue (Tensor): (K, Q, C) initial keys; cloned.
        queue_ptr (Tensor): (K,) next slot of every class; cloned.
    """

    def __init__(self, queue: Tensor, queue_ptr: Tensor) -> None:
        self.queue = queue.detach().clone()
        self.queue_ptr = [int(p) for p in queue_ptr]

    def push(self, cls: int, key: Tensor) -> None:
        """Write one key into the ring of class ``cls``."""
        ptr = self.queue_ptr[cls]
        self.queue[cls, ptr] = key
        self.queue_ptr[cls] = (ptr + 1) % self.queue.shape[1]

    def enqueue_pixels(self,
                       preds_T: Tensor,
                       gt_labels: Tensor,
                       update_size: int,
                       ignore_index: int = 255,
                       generator: Optional[torch.Generator] = None) -> None:
        """Enqueue up to ``update_size`` pixels per class and image.

        Images in batch order, classes ascending; a class's pixels are
        drawn uniformly without replacement and pushed in ascending pixel
        order. Several ranks' batches are enqueued by calling this once per
        rank, in rank order.

        Args:
            preds_T (Tensor): (N, C, h, w) teacher features.
            gt_labels (Tensor): (N, H, W) labels.
            update_size (int): Pixels per class and image.
            ignore_index (int): Label of unlabelled pixels.
            generator (torch.Generator, optional): Source of randomness.
        """
        labels = resize_labels(gt_labels, preds_T.shape[-2:])
        feat_T = F.normalize(preds_T.detach(), dim=1)
        for feat, label in zip(feat_T, labels):
            pixels, label = feat.flatten(1).t(), label.flatten()
            for c in torch.unique(label[label != ignore_index]).tolist():
                own = torch.nonzero(label == c).flatten()
                perm = torch.randperm(own.numel(), generator=generator)
                for p in own[perm[:update_size]].sort().values.tolist():
                    self.push(c, pixels[p])

    def enqueue_regions(self,
                        preds_T: Tensor,
                        gt_labels: Tensor,
                        ignore_index: int = 255) -> None:
        """Enqueue the mean embedding of every class of every image.

        Args:
            preds_T (Tensor): (N, C, h, w) teacher features.
            gt_labels (Tensor): (N, H, W) labels.
            ignore_index (int): Label of unlabelled pixels.
        """
        labels = resize_labels(gt_labels, preds_T.shape[-2:])
        feat_T = F.normalize(preds_T.detach(), dim=1)
        for feat, label in zip(feat_T, labels):
            pixels, label = feat.flatten(1).t(), label.flatten()
            for c in torch.unique(label[label != ignore_index]).tolist():
                mean = pixels[label == c].mean(0)
                self.push(c, F.normalize(mean, dim=0))

    def keys(self, index: Tensor) -> Tensor:
        """The keys at slots ``index`` of every class, class by class."""
        blocks: List[Tensor] = []
        for c in range(self.queue.shape[0]):
            blocks.append(self.queue[c, index])
        return torch.cat(blocks)


def memory_loss_loop(preds_S: Tensor,
                     preds_T: Tensor,
                     gt_labels: Tensor,
                     keys: Tensor,
                     tau: float = 0.1,
                     kd_tau: float = 1.0,
                     ignore_index: int = 255) -> Tensor:
    """Contrast every labelled pixel with memory keys, one image at a time.

    Args:
        preds_S (Tensor): (N, C, h, w) projected student features.
        preds_T (Tensor): (N, C, h, w) teacher features.
        gt_labels (Tensor): (N, H, W) labels.
        keys (Tensor): (M, C) keys, e.g. :meth:`LoopMemory.keys`.
        tau (float): Similarity temperature. Defaults to 0.1.
        kd_tau (float): KD temperature. Defaults to 1.0.
        ignore_index (int): Label of unlabelled pixels. Defaults to 255.

    Returns:
        Tensor: ``KL(teacher || student) * kd_tau**2`` of the softmax-ed
        similarities, averaged over the labelled pixels of the batch;
        ``preds_S.sum() * 0`` when there is none.
    """
    labels = resize_labels(gt_labels, preds_S.shape[-2:])
    feat_S = F.normalize(preds_S, dim=1)
    feat_T = F.normalize(preds_T.detach(), dim=1)
    total = preds_S.new_zeros(())
    num_anchors = 0
    for s, t, label in zip(feat_S, feat_T, labels):
        anchors = label.flatten() != ignore_index
        s = s.flatten(1).t()[anchors]  # (M_i, C)
        t = t.flatten(1).t()[anchors]
        log_p_s = F.log_softmax(s @ keys.t() / tau / kd_tau, dim=1)
        p_t = F.softmax(t @ keys.t() / tau / kd_tau, dim=1)
        total = total + F.kl_div(log_p_s, p_t, reduction='sum')
        num_anchors += int(anchors.sum())
    if num_anchors == 0:
        return preds_S.sum() * 0
    return total / num_anchors * kd_tau**2
