# Copyright (c) gskd-mm contributors. All rights reserved.
from .loss_gradient_hook import LossGradientHook

__all__ = ['LossGradientHook']
