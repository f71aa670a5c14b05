# Copyright (c) gskd-mm contributors. All rights reserved.
from .channel_wise_divergence import Float32ChannelWiseDivergence
from .gskd_loss import GSKDLoss
from .pixel_wise_dist_loss import PixelWiseDISTLoss

__all__ = ['Float32ChannelWiseDivergence', 'GSKDLoss', 'PixelWiseDISTLoss']
