# Copyright (c) gskd-mm contributors. All rights reserved.
from mmrazor.models.losses import ChannelWiseDivergence
from mmrazor.registry import MODELS
from torch import Tensor

from .utils import float32_forward


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
    Arguments are those of ``ChannelWiseDivergence``.
    """

    @float32_forward
    def forward(self, preds_S: Tensor, preds_T: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            preds_S (Tensor): Student maps, (N, C, H, W).
            preds_T (Tensor): Teacher maps, (N, C, H, W).

        Returns:
            Tensor: The weighted loss, a float32 scalar.
        """
        if preds_S.dim() != 4 or preds_S.shape != preds_T.shape:
            raise ValueError(
                'preds_S and preds_T must both be (N, C, H, W) of the same '
                f'shape, got {tuple(preds_S.shape)} and '
                f'{tuple(preds_T.shape)}; project student features to the '
                'teacher width with a connector and record both at the same '
                'stride')
        return super().forward(preds_S, preds_T)
