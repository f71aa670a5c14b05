# Copyright (c) gskd-mm contributors. All rights reserved.
from typing import Dict, Optional

from mmcv.cnn import ConvModule
from mmrazor.models.architectures.connectors.base_connector import \
    BaseConnector
from mmrazor.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class GSKDProjector(BaseConnector):
    """The GSKD projector: Conv1x1 -> norm -> ReLU -> Conv1x1.

    Maps student features to the teacher's width before GSKD compares them.
    It trains with the student and is dropped with the distiller after
    training. MMRazor's ``ConvModuleConnector`` is one conv block; this is
    two, and a single connector (rather than a list of two) keeps its
    channels overridable by config inheritance.

    Args:
        in_channels (int): Student feature channels.
        out_channels (int): Teacher feature channels.
        norm_cfg (dict): Norm of the hidden layer. Defaults to SyncBN, which
            is plain BN outside distributed training.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm_cfg: Dict = dict(type='SyncBN'),
                 init_cfg: Optional[Dict] = None) -> None:
        super().__init__(init_cfg)
        self.hidden = ConvModule(
            in_channels, out_channels, 1, bias=False, norm_cfg=norm_cfg)
        self.out = ConvModule(
            out_channels, out_channels, 1, bias=False, act_cfg=None)

    def forward_train(self, feature: Tensor) -> Tensor:
        """Project a feature map.

        Args:
            feature (Tensor): (N, in_channels, H, W) student features.

        Returns:
            Tensor: (N, out_channels, H, W).
        """
        return self.out(self.hidden(feature))
