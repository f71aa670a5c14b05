# Copyright (c) gskd-mm contributors. All rights reserved.
from .channel_wise_divergence import Float32ChannelWiseDivergence
from .cirkd_memory_loss import CIRKDMemoryPixelLoss, CIRKDMemoryRegionLoss
from .cirkd_mini_batch_loss import CIRKDMiniBatchPixelLoss
from .gskd_loss import GSKDLoss
from .hinge_adversarial_loss import HingeDiscriminatorLoss, HingeGeneratorLoss
from .pixel_wise_dist_loss import PixelWiseDISTLoss
from .pixel_wise_kd_loss import PixelWiseKDLoss

__all__ = [
    'CIRKDMemoryPixelLoss', 'CIRKDMemoryRegionLoss', 'CIRKDMiniBatchPixelLoss',
    'Float32ChannelWiseDivergence', 'GSKDLoss', 'HingeDiscriminatorLoss',
    'HingeGeneratorLoss', 'PixelWiseDISTLoss', 'PixelWiseKDLoss'
]
