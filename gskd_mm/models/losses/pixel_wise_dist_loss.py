# Copyright (c) gskd-mm contributors. All rights reserved.
from mmrazor.models.losses import DISTLoss
from mmrazor.registry import MODELS
from torch import Tensor

from ..utils import float32_forward, teacher_at_student_size


@MODELS.register_module()
class PixelWiseDISTLoss(DISTLoss):
    """DIST on dense logits, with every pixel as an instance.

    MMRazor's ``DISTLoss`` relates a (instances, classes) matrix: the
    inter-class relation correlates each instance's class distribution, the
    intra-class relation correlates each class over the instances. For
    segmentation the instances are the pixels of the batch, so
    (N, K, H, W) logits become (N * H * W, K) before the relations are
    taken.

    Args:
        resize_teacher (bool): Resize teacher logits of another height x
            width to the student's (bilinear; see
            :func:`teacher_at_student_size`). If False, such logits raise a
            ValueError. Defaults to False.
        **kwargs: The arguments of ``DISTLoss`` (``inter_loss_weight``,
            ``intra_loss_weight``, ``tau``, ``loss_weight``,
            ``teacher_detach``).
    """

    def __init__(self, resize_teacher: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.resize_teacher = resize_teacher

    @float32_forward
    def forward(self, logits_S: Tensor, logits_T: Tensor) -> Tensor:
        """Compute DIST over the pixels of the batch, in float32.

        Args:
            logits_S (Tensor): Student logits, (N, K, H, W).
            logits_T (Tensor): Teacher logits, (N, K, H', W').

        Returns:
            Tensor: The weighted DIST loss, a scalar.
        """
        logits_T = teacher_at_student_size(logits_S, logits_T,
                                           self.resize_teacher, 'logits_S',
                                           'logits_T')
        num_classes = logits_S.shape[1]
        return super().forward(
            logits_S.permute(0, 2, 3, 1).reshape(-1, num_classes),
            logits_T.permute(0, 2, 3, 1).reshape(-1, num_classes))
