# Copyright (c) gskd-mm contributors. All rights reserved.
"""CIRKD's memory-based terms: per-class queues of teacher embeddings.

Each loss holds one queue per class as module buffers (``queue``:
``(classes, memory_size, channels)`` unit vectors, ``queue_ptr``: the next
slot of each class), so checkpoints save them and ``--resume`` restores
them. Every step the teacher's new keys of every rank are gathered
(``mmengine.dist.all_gather``; keys need no gradient) and written by the
same rule on every rank, so the queues stay identical across ranks without
any buffer broadcast. The student's labelled pixels are then contrasted
with a random subset of every class's queue.

Memory: ``classes x memory_size x channels`` float32 per queue, e.g.
19 x 20000 x 512, 0.78 GB, for the Cityscapes pixel queue at the authors'
sizes (see the README for every dataset); the checkpoint holds it too.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather
from mmrazor.registry import MODELS
from torch import Tensor

from ..utils import (check_dense_pair, check_labels, class_counts,
                     float32_forward, resize_labels)


class MemoryContrastLoss(nn.Module):
    """Shared machinery of the memory-based CIRKD terms (not registered).

    Subclasses say what a step enqueues (:meth:`candidates`).

    Args:
        num_classes (int): Classes of the dataset (one queue each).
        channels (int): Teacher feature width (that of the keys).
        memory_size (int): Keys per class.
        contrast_size (int): Keys contrasted per step, over all classes:
            ``contrast_size // num_classes + 1`` per class (the authors'
            rule), at most ``memory_size``. The same random slots are taken
            in every class.
        tau (float): Temperature of the similarities. Defaults to 0.1.
        kd_tau (float): Temperature of the KL between the teacher's and the
            student's similarity distributions. Defaults to 1.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        ignore_index (int): Label of unlabelled pixels, which are neither
            anchors nor enqueued. Defaults to 255.
        init_seed (int): Seed of the random unit vectors the queues start
            with: a fixed seed, so every rank starts from the same queues.
            Defaults to 0.
    """

    def __init__(self,
                 num_classes: int,
                 channels: int,
                 memory_size: int,
                 contrast_size: int,
                 tau: float = 0.1,
                 kd_tau: float = 1.0,
                 loss_weight: float = 1.0,
                 ignore_index: int = 255,
                 init_seed: int = 0) -> None:
        super().__init__()
        for name, value in (('num_classes', num_classes),
                            ('channels', channels),
                            ('memory_size', memory_size),
                            ('contrast_size', contrast_size)):
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < 1:
                raise ValueError(
                    f'{name} must be a positive int, got {value!r}')
        for name, value in (('tau', tau), ('kd_tau', kd_tau)):
            if not value > 0:
                raise ValueError(f'{name} must be > 0, got {value!r}')
        self.num_classes = num_classes
        self.channels = channels
        self.memory_size = memory_size
        self.contrast_size = contrast_size
        self.contrast_per_class = min(contrast_size // num_classes + 1,
                                      memory_size)
        self.tau = float(tau)
        self.kd_tau = float(kd_tau)
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        gen = torch.Generator().manual_seed(init_seed)
        queue = torch.randn(
            num_classes, memory_size, channels, generator=gen)
        # In place: no second copy of a queue that may take gigabytes.
        queue.div_(queue.norm(dim=2, keepdim=True))
        self.register_buffer('queue', queue)
        self.register_buffer('queue_ptr',
                             torch.zeros(num_classes, dtype=torch.long))

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, channels={self.channels}, '
                f'memory_size={self.memory_size}, '
                f'contrast_size={self.contrast_size} '
                f'({self.contrast_per_class} per class), tau={self.tau}, '
                f'kd_tau={self.kd_tau}, loss_weight={self.loss_weight}, '
                f'ignore_index={self.ignore_index}')

    @float32_forward
    def forward(self, preds_S: Tensor, preds_T: Tensor,
                gt_labels: Tensor) -> Tensor:
        """Enqueue the teacher's keys, then contrast with the memory.

        As the authors do, this step's keys are enqueued before the
        contrast, so they can be drawn already.

        Args:
            preds_S (Tensor): Student features projected to the teacher's
                width, (N, C, h, w).
            preds_T (Tensor): Teacher features, (N, C, h, w); detached.
            gt_labels (Tensor): Integer labels, (N, H, W) or (N, 1, H, W);
                resized to (h, w) with nearest interpolation.

        Returns:
            Tensor: The weighted loss, a scalar. It is zero, but still part
            of the graph of ``preds_S``, when no pixel of the batch is
            labelled.
        """
        check_dense_pair(
            'preds_S', 'preds_T', preds_S, preds_T, kind='features')
        if preds_T.shape[1] != self.channels:
            raise ValueError(
                f'features have {preds_T.shape[1]} channels, the memory '
                f'{self.channels}: set channels to the teacher width')
        labels, valid = self.labels_at(gt_labels, preds_S)
        feat_T = F.normalize(preds_T.detach(), dim=1).flatten(2)
        feat_S = F.normalize(preds_S, dim=1).flatten(2)
        with torch.no_grad():
            self.enqueue(*self.candidates(feat_T, labels, valid))
        keys = self.memory_keys(self.sample_slots())
        return self.loss_weight * memory_kl(feat_S, feat_T, keys, valid,
                                            self.tau, self.kd_tau)

    def sample_slots(self) -> Tensor:
        """Draw the queue slots contrasted this step.

        As in CIRKD, the same slots are taken in every class.

        Returns:
            Tensor: (contrast_per_class,) distinct slots, uniformly drawn.
        """
        return torch.randperm(
            self.memory_size,
            device=self.queue.device)[:self.contrast_per_class]

    def labels_at(self, gt_labels: Tensor,
                  feats: Tensor) -> Tuple[Tensor, Tensor]:
        """Labels at feature size and the mask of the labelled pixels.

        Args:
            gt_labels (Tensor): (N, H, W) or (N, 1, H, W) integer labels.
            feats (Tensor): (N, C, h, w) features.

        Returns:
            tuple[Tensor, Tensor]: (N, h * w) long labels and bool mask.
        """
        labels = check_labels(gt_labels, feats.shape[0])
        labels = resize_labels(labels, feats.shape[-2:]).flatten(1)
        valid = labels != self.ignore_index
        if ((labels < 0) | (labels >= self.num_classes))[valid].any():
            raise ValueError(
                f'gt_labels holds values outside [0, {self.num_classes}) '
                f'that are not ignore_index={self.ignore_index}: set '
                'num_classes to the dataset\'s classes')
        return labels, valid

    def candidates(self, feat_T: Tensor, labels: Tensor,
                   valid: Tensor) -> Tuple[Tensor, Tensor]:
        """The keys this step offers to every class's queue.

        Args:
            feat_T (Tensor): (N, C, P) normalised teacher features.
            labels (Tensor): (N, P) labels.
            valid (Tensor): (N, P) mask of the labelled pixels.

        Returns:
            tuple[Tensor, Tensor]: Keys (N, K, F, C) and the (N, K, F) mask
            of the real ones, in enqueue order within each image and class.
        """
        raise NotImplementedError

    def enqueue(self, keys: Tensor, mask: Tensor) -> None:
        """Gather every rank's keys and write them into the queues.

        Each class's queue is a ring: its new keys, in the order (rank,
        image, slot), go to the slots after its pointer, wrapping around;
        when a class has more new keys than slots, the newest
        ``memory_size`` stay. Every rank writes the same gathered keys by
        the same rule, so the queues stay identical across ranks.

        Args:
            keys (Tensor): (N, K, F, C) keys of this rank.
            mask (Tensor): (N, K, F) mask of the real ones.
        """
        keys, mask = gather_padded(keys, mask)
        num_classes, size = self.num_classes, self.memory_size
        keys = keys.transpose(0, 1).reshape(num_classes, -1, self.channels)
        mask = mask.transpose(0, 1).reshape(num_classes, -1)
        order = mask.long().cumsum(1) - 1  # n-th new key of its class
        num_new = mask.sum(1)
        keep = mask & (order >= (num_new - size)[:, None])
        slot = (self.queue_ptr[:, None] + order) % size
        cls = torch.arange(num_classes, device=mask.device)[:, None]
        cls = cls.expand_as(mask)
        self.queue[cls[keep], slot[keep]] = keys[keep].to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + num_new) % size)

    def memory_keys(self, index: Tensor) -> Tensor:
        """The keys at slots ``index`` of every class's queue.

        Args:
            index (Tensor): (S,) slots.

        Returns:
            Tensor: (K * S, C), class by class.
        """
        return self.queue[:, index].flatten(0, 1)


def gather_padded(keys: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    """All-gather every rank's keys and mask, in rank order.

    Ranks may hold different numbers of images (e.g. the last batch of an
    epoch): each pads to the largest with masked-out entries first.

    Args:
        keys (Tensor): (N, K, F, C) keys of this rank.
        mask (Tensor): (N, K, F) mask of the real ones.

    Returns:
        tuple[Tensor, Tensor]: (N', K, F, C) and (N', K, F), N' the sum
        over ranks (padded). Without a process group, the inputs.
    """
    sizes = all_gather(torch.tensor([keys.shape[0]], device=keys.device))
    if len(sizes) == 1:
        return keys, mask
    pad = int(torch.cat(sizes).max()) - keys.shape[0]
    if pad:
        keys = torch.cat([keys, keys.new_zeros(pad, *keys.shape[1:])])
        mask = torch.cat([mask, mask.new_zeros(pad, *mask.shape[1:])])
    # gloo does not gather bool tensors: send bytes.
    keys = torch.cat(all_gather(keys.contiguous()))
    mask = torch.cat(all_gather(mask.to(torch.uint8))).bool()
    return keys, mask


def memory_kl(feat_S: Tensor, feat_T: Tensor, keys: Tensor, valid: Tensor,
              tau: float, kd_tau: float) -> Tensor:
    """KL between the teacher's and student's similarities to the keys.

    Every labelled pixel is an anchor: its similarities to the keys, over
    ``tau``, are turned into distributions with temperature ``kd_tau`` and
    compared with ``KL(teacher || student) * kd_tau**2``, averaged over the
    anchors of the batch.

    Args:
        feat_S (Tensor): (N, C, P) normalised student features.
        feat_T (Tensor): (N, C, P) normalised teacher features.
        keys (Tensor): (M, C) keys.
        valid (Tensor): (N, P) mask of the anchors.
        tau (float): Similarity temperature.
        kd_tau (float): KD temperature.

    Returns:
        Tensor: Scalar loss; zero, in the graph of ``feat_S``, when no
        pixel is valid.
    """
    # Every pixel is computed and the unlabelled ones masked out: no host
    # sync for their number, and the graph exists without any anchor.
    keys = keys.t() / (tau * kd_tau)
    log_p_S = F.log_softmax(feat_S.transpose(1, 2) @ keys, dim=2)
    log_p_T = F.log_softmax(feat_T.transpose(1, 2) @ keys, dim=2)
    kl = F.kl_div(log_p_S, log_p_T, reduction='none', log_target=True)
    kl = kl.sum(2) * valid
    return kl.sum() / valid.sum().clamp(min=1) * kd_tau**2


@MODELS.register_module()
class CIRKDMemoryPixelLoss(MemoryContrastLoss):
    """CIRKD memory pixel-to-pixel term: a queue of teacher pixels.

    Every step, for each image and each class labelled in it, up to
    ``update_size`` of its labelled pixels (uniformly without replacement)
    are enqueued, as teacher embeddings. Every labelled student and teacher
    pixel is contrasted with ``contrast_size // num_classes + 1`` random
    slots of every class's queue. See :class:`MemoryContrastLoss` for the
    other arguments.

    Args:
        update_size (int): Pixels enqueued per class and image.
            Defaults to 16 (CIRKD's).
        memory_size (int): Keys per class. Defaults to 20000 (CIRKD's).
        contrast_size (int): Keys contrasted, over all classes.
            Defaults to 4096 (CIRKD's).
    """

    def __init__(self,
                 num_classes: int,
                 channels: int,
                 memory_size: int = 20000,
                 contrast_size: int = 4096,
                 update_size: int = 16,
                 **kwargs) -> None:
        super().__init__(num_classes, channels, memory_size, contrast_size,
                         **kwargs)
        if isinstance(update_size, bool) or not isinstance(
                update_size, int) or update_size < 1:
            raise ValueError(
                f'update_size must be a positive int, got {update_size!r}')
        self.update_size = update_size

    def extra_repr(self) -> str:
        return super().extra_repr() + f', update_size={self.update_size}'

    def candidates(self, feat_T: Tensor, labels: Tensor,
                   valid: Tensor) -> Tuple[Tensor, Tensor]:
        """Up to ``update_size`` random labelled pixels per class and image.

        The drawn pixels of a class are enqueued in ascending pixel order.

        Args:
            feat_T (Tensor): (N, C, P) normalised teacher features.
            labels (Tensor): (N, P) labels.
            valid (Tensor): (N, P) mask of the labelled pixels.

        Returns:
            tuple[Tensor, Tensor]: Keys (N, K, update_size, C) and their
            (N, K, update_size) mask.
        """
        num_imgs, channels, num_pixels = feat_T.shape
        num_classes = self.num_classes
        device = feat_T.device
        # Labelled pixels grouped by class, in a uniformly random order
        # within each class (unlabelled ones last).
        random_order = torch.rand(num_imgs, num_pixels,
                                  device=device).argsort(dim=1)
        cls = torch.where(valid, labels, num_classes)
        by_class = cls.gather(1, random_order).argsort(dim=1, stable=True)
        class_order = random_order.gather(1, by_class)
        counts = class_counts(labels, valid, num_classes)  # (N, K)
        start = counts.cumsum(1) - counts

        j = torch.arange(self.update_size, device=device)
        mask = j < counts[..., None]  # (N, K, F)
        pos = (start[..., None] + j).clamp(max=num_pixels - 1)
        index = class_order.gather(1, pos.flatten(1)).view(pos.shape)
        # Drawn pixels in ascending order, padding (index P) last.
        index = index.masked_fill(~mask, num_pixels).sort(dim=2).values
        index = index.clamp(max=num_pixels - 1).flatten(1)
        keys = feat_T.gather(2, index[:, None, :].expand(-1, channels, -1))
        keys = keys.view(num_imgs, channels, num_classes, self.update_size)
        return keys.permute(0, 2, 3, 1), mask


@MODELS.register_module()
class CIRKDMemoryRegionLoss(MemoryContrastLoss):
    """CIRKD memory pixel-to-region term: a queue of teacher regions.

    Every step, for each image and each class labelled in it, the mean of
    the class's normalised teacher pixel embeddings (re-normalised) is
    enqueued. Every labelled student and teacher pixel is contrasted with
    ``contrast_size // num_classes + 1`` random slots of every class's
    queue. See :class:`MemoryContrastLoss` for the other arguments.

    Args:
        memory_size (int): Regions per class. Defaults to 2000 (CIRKD's).
        contrast_size (int): Keys contrasted, over all classes.
            Defaults to 1024 (CIRKD's).
    """

    def __init__(self,
                 num_classes: int,
                 channels: int,
                 memory_size: int = 2000,
                 contrast_size: int = 1024,
                 **kwargs) -> None:
        super().__init__(num_classes, channels, memory_size, contrast_size,
                         **kwargs)

    def candidates(self, feat_T: Tensor, labels: Tensor,
                   valid: Tensor) -> Tuple[Tensor, Tensor]:
        """The mean teacher embedding of every labelled class and image.

        Args:
            feat_T (Tensor): (N, C, P) normalised teacher features.
            labels (Tensor): (N, P) labels.
            valid (Tensor): (N, P) mask of the labelled pixels.

        Returns:
            tuple[Tensor, Tensor]: Keys (N, K, 1, C) and their (N, K, 1)
            mask.
        """
        num_imgs, channels, _ = feat_T.shape
        num_classes = self.num_classes
        # Unlabelled pixels add into an extra class, dropped after.
        cls = torch.where(valid, labels, num_classes)
        sums = feat_T.new_zeros(num_imgs, channels, num_classes + 1)
        sums.scatter_add_(2, cls[:, None, :].expand(-1, channels, -1),
                          feat_T)
        counts = class_counts(labels, valid, num_classes)
        means = F.normalize(sums[..., :num_classes], dim=1)
        return means.transpose(1, 2)[:, :, None, :], (counts > 0)[..., None]
