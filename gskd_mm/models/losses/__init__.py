# Copyright (c) gskd-mm contributors. All rights reserved.
from .gskd_loss import GSKDLoss
from .pixel_wise_dist_loss import PixelWiseDISTLoss

__all__ = ['GSKDLoss', 'PixelWiseDISTLoss']
