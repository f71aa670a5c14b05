# Copyright (c) gskd-mm contributors. All rights reserved.
"""CIRKD's mini-batch pixel-to-pixel term, for all image pairs, in chunks."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmrazor.registry import MODELS
from torch import Tensor

from ..utils import check_dense_pair, float32_forward


class _MiniBatchPixelKL(torch.autograd.Function):
    """``sum KL(teacher || student)`` of the row-softmaxed similarity maps
    of all image pairs, one block of rows at a time.

    Rows ``a`` are the ``N * P`` pixels of the batch, columns the same
    pixels; the softmax of row ``a`` runs over the ``P`` pixels of each
    image. The gradient is computed with the forward, block by block
    (``d KL / d sim = p_S - p_T`` per row and image), so no ``(N * P)**2``
    map is kept for the backward: the peak is a few ``rows x (N * P)``
    blocks.
    """

    @staticmethod
    def forward(ctx, pixels_S: Tensor, pixels_T: Tensor, num_imgs: int,
                tau: float, block_rows: int) -> Tensor:
        """The summed KL.

        Args:
            pixels_S (Tensor): (N * P, Cs) normalised student pixels.
            pixels_T (Tensor): (N * P, Ct) normalised teacher pixels.
            num_imgs (int): N.
            tau (float): Temperature.
            block_rows (int): Rows per block.

        Returns:
            Tensor: The sum over rows and images of the row KL.
        """
        need_grad = ctx.needs_input_grad[0]
        # The temperature scales the small factor, not the maps.
        scaled_S, scaled_T = pixels_S / tau, pixels_T / tau
        grad = torch.zeros_like(pixels_S) if need_grad else None
        total = pixels_S.new_zeros(())
        for start in range(0, pixels_S.shape[0], block_rows):
            rows = slice(start, start + block_rows)
            log_p_S = F.log_softmax(
                (scaled_S[rows] @ pixels_S.t()).view(-1, num_imgs,
                                                     pixels_S.shape[0] //
                                                     num_imgs),
                dim=2)
            log_p_T = F.log_softmax(
                (scaled_T[rows] @ pixels_T.t()).view(log_p_S.shape), dim=2)
            total += F.kl_div(
                log_p_S, log_p_T, reduction='sum', log_target=True)
            if need_grad:
                # d/d sim[a, (j, q)] of the row's KL: p_S - p_T, in place.
                diff = log_p_S.exp_().sub_(log_p_T.exp_()).flatten(1)
                del log_p_T
                # sim = (x_rows / tau) @ x^T: both factors get gradient.
                grad[rows] += diff @ scaled_S
                grad += diff.t() @ scaled_S[rows]
        if need_grad:
            ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        grad, = ctx.saved_tensors
        return grad * grad_output, None, None, None, None


@MODELS.register_module()
class CIRKDMiniBatchPixelLoss(nn.Module):
    """Mini-batch pixel-to-pixel relation distillation (CIRKD).

    For every ordered pair ``(i, j)`` of images of the batch (``i == j``
    included), the ``P x P`` cosine similarities of the ``P = h * w`` pixels
    of ``i`` to those of ``j`` are softmax-ed over the pixels of ``j`` with
    temperature ``tau``; each row of the student's map is matched to the
    teacher's with ``KL(teacher || student)``. The loss is the mean over
    rows, then over the ``N**2`` pairs. Pairs are those of each rank's own
    batch, as in the authors' code: no gather across ranks.

    The similarities only compare pixels within one network, so the
    student's and the teacher's widths may differ: no projector is needed.
    The ``(N * P) x (N * P)`` maps are computed a block of rows at a time
    (rows of several images' pixels against the whole batch), with their
    gradient, so memory is a few ``block x (N * P)`` maps whatever the
    batch size (float32) rather than all ``(N * P)**2`` of them.

    Args:
        tau (float): Temperature of the similarity softmax. Defaults to 0.1
            (CIRKD's).
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        block_size (int): Entries of one block of a similarity map: a block
            has ``max(1, block_size // (N * P))`` rows. Defaults to
            ``2**24`` (64 MB in float32). It changes memory and time, not
            the loss.
    """

    def __init__(self,
                 tau: float = 0.1,
                 loss_weight: float = 1.0,
                 block_size: int = 2**24) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f'tau must be > 0, got {tau!r}')
        if not (isinstance(block_size, int) and block_size > 0):
            raise ValueError(
                f'block_size must be a positive int, got {block_size!r}')
        self.tau = float(tau)
        self.loss_weight = loss_weight
        self.block_size = block_size

    def extra_repr(self) -> str:
        return f'tau={self.tau}, loss_weight={self.loss_weight}'

    @float32_forward
    def forward(self, preds_S: Tensor, preds_T: Tensor) -> Tensor:
        """Compute the loss over every image pair of the batch, in float32.

        Args:
            preds_S (Tensor): Student features, (N, Cs, h, w).
            preds_T (Tensor): Teacher features, (N, Ct, h, w); detached.

        Returns:
            Tensor: The weighted loss, a scalar.
        """
        check_dense_pair(
            'preds_S', 'preds_T', preds_S, preds_T, same_channels=False)
        num_imgs = preds_S.shape[0]
        num_pixels = preds_S.shape[2] * preds_S.shape[3]
        block_rows = max(1, self.block_size // (num_imgs * num_pixels))
        kl = _MiniBatchPixelKL.apply(
            self._pixels(preds_S), self._pixels(preds_T.detach()), num_imgs,
            self.tau, block_rows)
        return self.loss_weight * kl / (num_imgs**2 * num_pixels)

    @staticmethod
    def _pixels(feats: Tensor) -> Tensor:
        """(N, C, h, w) features as (N * P, C) unit vectors (channels last
        by permute)."""
        pixels = F.normalize(feats, dim=1).flatten(2).transpose(1, 2)
        return pixels.reshape(-1, feats.shape[1])
