# Copyright (c) gskd-mm contributors. All rights reserved.
from mmrazor.models.losses import DISTLoss
from mmrazor.registry import MODELS
from torch import Tensor

from .utils import float32_forward


@MODELS.register_module()
class PixelWiseDISTLoss(DISTLoss):
    """DIST on dense logits, with every pixel as an instance.

    MMRazor's ``DISTLoss`` relates a (instances, classes) matrix: the
    inter-class relation correlates each instance's class distribution, the
    intra-class relation correlates each class over the instances. For
    segmentation the instances are the pixels of the batch, so
    (N, K, H, W) logits become (N * H * W, K) before the relations are
    taken. Arguments are those of ``DISTLoss``.
    """

    @float32_forward
    def forward(self, logits_S: Tensor, logits_T: Tensor) -> Tensor:
        """Compute DIST over the pixels of the batch, in float32.

        Args:
            logits_S (Tensor): Student logits, (N, K, H, W).
            logits_T (Tensor): Teacher logits, (N, K, H, W).

        Returns:
            Tensor: The weighted DIST loss, a scalar.
        """
        if logits_S.dim() != 4 or logits_S.shape != logits_T.shape:
            raise ValueError(
                'logits_S and logits_T must both be (N, K, H, W) of the same '
                f'shape, got {tuple(logits_S.shape)} and '
                f'{tuple(logits_T.shape)}; record both at the same stride '
                '(e.g. decode_head.conv_seg of student and teacher)')
        num_classes = logits_S.shape[1]
        return super().forward(
            logits_S.permute(0, 2, 3, 1).reshape(-1, num_classes),
            logits_T.permute(0, 2, 3, 1).reshape(-1, num_classes))
