# Copyright (c) gskd-mm contributors. All rights reserved.
from mmrazor.models.losses import ChannelWiseDivergence
from mmrazor.registry import MODELS
from torch import Tensor

from ..utils import float32_forward, teacher_at_student_size


@MODELS.register_module()
class Float32ChannelWiseDivergence(ChannelWiseDivergence):
    """MMRazor's ``ChannelWiseDivergence``, computed in float32.

    The same loss (per channel, a softmax over the pixels with temperature
    ``tau``; KL teacher -> student, times ``tau**2``, divided by
    channels x images). Under CPU autocast MMRazor's version runs its
    softmaxes and sum over ``N x C x H x W`` entries in float16 or bfloat16
    and returns a half-precision loss, off by up to 0.6 % (bfloat16,
    ``tau=4``) from float32 maths on the same inputs; this one casts its
    inputs to float32 and disables autocast (:func:`float32_forward`).
    MMRazor's version also ``view``s its inputs, which fails on the
    non-contiguous maps of a SegFormer head; this one makes them contiguous.

    Args:
        tau (float): Temperature. Defaults to 1.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        resize_teacher (bool): Resize teacher maps of another height x width
            to the student's (bilinear; see
            :func:`teacher_at_student_size`). If False, such maps raise a
            ValueError. Defaults to False.
    """

    def __init__(self,
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 resize_teacher: bool = False) -> None:
        super().__init__(tau=tau, loss_weight=loss_weight)
        self.resize_teacher = resize_teacher

    @float32_forward
    def forward(self, preds_S: Tensor, preds_T: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            preds_S (Tensor): Student maps, (N, C, H, W).
            preds_T (Tensor): Teacher maps, (N, C, H', W').

        Returns:
            Tensor: The weighted loss, a float32 scalar.
        """
        preds_T = teacher_at_student_size(preds_S, preds_T,
                                          self.resize_teacher)
        return super().forward(preds_S.contiguous(), preds_T.contiguous())
