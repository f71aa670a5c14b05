# Copyright (c) gskd-mm contributors. All rights reserved.
"""CIRKD's mini-batch pixel-to-pixel term, for all image pairs at once."""
import torch.nn as nn
import torch.nn.functional as F
from mmrazor.registry import MODELS
from torch import Tensor

from .utils import check_dense_pair, float32_forward


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
    All pairs are one matrix product, ``(N * P) x (N * P)``; memory grows
    with ``(N * P)**2`` (float32; a few such maps are alive at the peak).

    Args:
        tau (float): Temperature of the similarity softmax. Defaults to 0.1
            (CIRKD's).
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, tau: float = 0.1, loss_weight: float = 1.0) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f'tau must be > 0, got {tau!r}')
        self.tau = float(tau)
        self.loss_weight = loss_weight

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
        log_p_T = self._log_relations(preds_T.detach())
        log_p_S = self._log_relations(preds_S)
        kl = F.kl_div(log_p_S, log_p_T, reduction='sum', log_target=True)
        return self.loss_weight * kl / (num_imgs**2 * num_pixels)

    def _log_relations(self, feats: Tensor) -> Tensor:
        """Row-wise log-softmax of the pixel similarities of all pairs.

        Args:
            feats (Tensor): (N, C, h, w) features.

        Returns:
            Tensor: (N, P, N, P): entry ``[i, p, j, q]`` is the log
            probability of pixel ``q`` of image ``j`` given pixel ``p`` of
            image ``i``, normalised over ``q``.
        """
        num_imgs, channels = feats.shape[:2]
        # (N, C, h, w) -> (N * P, C): channels last by permute.
        pixels = F.normalize(feats, dim=1).flatten(2).transpose(1, 2)
        pixels = pixels.reshape(-1, channels)
        # Rows (i, p), columns (j, q); the temperature scales the small
        # factor, not the (N * P)**2 map.
        sim = (pixels / self.tau) @ pixels.t()
        sim = sim.view(num_imgs, -1, num_imgs, sim.shape[1] // num_imgs)
        return F.log_softmax(sim, dim=3)
