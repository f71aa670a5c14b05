# Copyright (c) gskd-mm contributors. All rights reserved.
from typing import Dict

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmrazor.registry import MODELS
from torch import Tensor
from torch.nn.utils.parametrizations import spectral_norm


class SelfAttention(nn.Module):
    """SAGAN self-attention: ``x + gamma * attention(x)``, gamma from 0.

    Query and key are 1x1 convs to ``channels // 8``, the value a 1x1 conv
    to ``channels``; every position attends over all positions.

    Args:
        channels (int): Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the attention.

        Args:
            x (Tensor): (N, C, H, W).

        Returns:
            Tensor: (N, C, H, W).
        """
        n, c, h, w = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)  # N, HW, C/8
        key = self.key(x).flatten(2)  # N, C/8, HW
        attention = torch.bmm(query, key).softmax(dim=-1)  # N, HW, HW
        value = self.value(x).flatten(2)  # N, C, HW
        out = torch.bmm(value, attention.transpose(1, 2)).view(n, c, h, w)
        return self.gamma * out + x


@MODELS.register_module()
class SAGANDiscriminator(BaseModule):
    """The discriminator of adversarial distillation on segmentation logits.

    The architecture CWD's and CIRKD's trainers use (a SAGAN discriminator):
    a norm layer on the input logits, ``num_stages`` spectral-normalised
    4x4 stride-2 convs with LeakyReLU(0.1), channels ``base_channels``
    doubling per stage, self-attention after each of the last two stages,
    and a spectral-free 4x4 conv to one score per position. The default
    (4 stages from 64 channels: 64, 128, 256 + attention, 512 + attention)
    is theirs; it needs logits of at least 64 x 64 (512 x 512 crops at
    stride 8). Fewer stages take smaller maps, e.g. in tests.

    Args:
        in_channels (int): Channels of the logits (the number of classes).
        base_channels (int): Channels of the first stage. Defaults to 64.
        num_stages (int): Stride-2 stages. Defaults to 4.
        norm_cfg (dict): Norm on the input. Defaults to SyncBN, plain BN
            outside distributed training.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 base_channels: int = 64,
                 num_stages: int = 4,
                 norm_cfg: Dict = dict(type='SyncBN'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        if num_stages < 1:
            raise ValueError(f'num_stages must be >= 1, got {num_stages}')
        self.num_stages = num_stages
        self.norm = build_norm_layer(norm_cfg, in_channels)[1]
        stages = []
        channels = in_channels
        for i in range(num_stages):
            out_channels = base_channels * 2**i
            layers = [
                spectral_norm(nn.Conv2d(channels, out_channels, 4, 2, 1)),
                nn.LeakyReLU(0.1)
            ]
            if i >= num_stages - 2:
                layers.append(SelfAttention(out_channels))
            stages.append(nn.Sequential(*layers))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.last = nn.Conv2d(channels, 1, 4)

    @property
    def min_input_size(self) -> int:
        """The smallest height and width the stages and last conv take."""
        return self.input_size_of(self.num_stages)

    @staticmethod
    def input_size_of(num_stages: int) -> int:
        """The smallest logits (height and width) that ``num_stages``
        stages and the last 4x4 conv take."""
        return 4 * 2**num_stages

    @classmethod
    def stages_that_fit(cls, size: int, num_stages: int = 4) -> int:
        """How many stages, at most ``num_stages``, logits of a size take.

        Args:
            size (int): The smaller side of the logits.
            num_stages (int): The stages asked for. Defaults to 4.

        Returns:
            int: ``num_stages``, or fewer (at least 1) where the logits are
            too small for them.
        """
        fit = 1
        while fit < num_stages and cls.input_size_of(fit + 1) <= size:
            fit += 1
        return fit

    def forward(self, logits: Tensor) -> Tensor:
        """Score a batch of logits.

        Args:
            logits (Tensor): (N, in_channels, H, W) segmentation logits.

        Returns:
            Tensor: (N, 1, H', W') scores, higher for "teacher-like".
        """
        if logits.dim() != 4 or min(logits.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f'the discriminator needs (N, C, H, W) logits with H, W >= '
                f'{self.min_input_size} for {self.num_stages} stages, got '
                f'{tuple(logits.shape)}: use larger crops or fewer '
                '`num_stages`')
        return self.last(self.stages(self.norm(logits)))
