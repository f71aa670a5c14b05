# Copyright (c) gskd-mm contributors. All rights reserved.
import torch.nn as nn
import torch.nn.functional as F
from mmrazor.registry import MODELS
from torch import Tensor

from ..utils import float32_forward, teacher_at_student_size


@MODELS.register_module()
class PixelWiseKDLoss(nn.Module):
    """Logits KD with every pixel as an instance (CIRKD's logits term).

    ``KL(softmax(z_t / T) || softmax(z_s / T)) * T**2`` over the classes of
    every pixel, averaged over the pixels of the batch, ignored ones
    included (as CIRKD does: the teacher's soft labels exist everywhere).

    Args:
        tau (float): Temperature T. Defaults to 1.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        resize_teacher (bool): Resize teacher logits of another height x
            width to the student's (bilinear); without it, different sizes
            raise an error. Defaults to False.
    """

    def __init__(self,
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 resize_teacher: bool = False) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f'tau must be > 0, got {tau!r}')
        self.tau = float(tau)
        self.loss_weight = loss_weight
        self.resize_teacher = resize_teacher

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, loss_weight={self.loss_weight}, '
                f'resize_teacher={self.resize_teacher}')

    @float32_forward
    def forward(self, logits_S: Tensor, logits_T: Tensor) -> Tensor:
        """Compute the per-pixel KD loss, in float32.

        Args:
            logits_S (Tensor): Student logits, (N, K, H, W).
            logits_T (Tensor): Teacher logits, (N, K, H', W'); detached.
                Of another size only with ``resize_teacher``.

        Returns:
            Tensor: The weighted loss, a scalar.
        """
        logits_T = teacher_at_student_size(logits_S, logits_T,
                                           self.resize_teacher, 'logits_S',
                                           'logits_T')
        log_p_S = F.log_softmax(logits_S / self.tau, dim=1)
        log_p_T = F.log_softmax(logits_T.detach() / self.tau, dim=1)
        kl = F.kl_div(log_p_S, log_p_T, reduction='none',
                      log_target=True).sum(1)
        return self.loss_weight * kl.mean() * self.tau**2
