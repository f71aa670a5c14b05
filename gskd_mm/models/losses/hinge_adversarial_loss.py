# Copyright (c) gskd-mm contributors. All rights reserved.
import torch.nn as nn
import torch.nn.functional as F
from mmrazor.registry import MODELS
from torch import Tensor

from ..utils import float32_forward


@MODELS.register_module()
class HingeGeneratorLoss(nn.Module):
    """Hinge adversarial loss of the student (the generator).

    ``-mean(D(z_s))``: the student is pushed towards logits the
    discriminator scores as the teacher's.

    Args:
        loss_weight (float): Weight of the loss. Defaults to 0.001, the
            weight of CWD's and CIRKD's trainers.
    """

    def __init__(self, loss_weight: float = 0.001) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    @float32_forward
    def forward(self, scores_S: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            scores_S (Tensor): Discriminator scores of the student logits.

        Returns:
            Tensor: The weighted loss, a float32 scalar.
        """
        return -self.loss_weight * scores_S.mean()


@MODELS.register_module()
class HingeDiscriminatorLoss(nn.Module):
    """Hinge loss of the discriminator.

    ``mean(relu(1 - D(z_t))) + mean(relu(1 + D(z_s)))``: teacher logits are
    "real", student logits "fake".

    Args:
        loss_weight (float): Weight of the loss. Defaults to 0.1, the
            weight of CWD's and CIRKD's trainers.
    """

    def __init__(self, loss_weight: float = 0.1) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    @float32_forward
    def forward(self, scores_S: Tensor, scores_T: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            scores_S (Tensor): Discriminator scores of the (detached)
                student logits.
            scores_T (Tensor): Discriminator scores of the teacher logits,
                of the same shape.

        Returns:
            Tensor: The weighted loss, a float32 scalar.
        """
        if scores_S.shape != scores_T.shape:
            raise ValueError(
                f'student scores {tuple(scores_S.shape)} and teacher scores '
                f'{tuple(scores_T.shape)} differ: record student and teacher '
                'logits at the same stride')
        return self.loss_weight * (F.relu(1.0 - scores_T).mean() +
                                   F.relu(1.0 + scores_S).mean())
