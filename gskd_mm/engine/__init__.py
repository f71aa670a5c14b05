# Copyright (c) gskd-mm contributors. All rights reserved.
from .amp import enable_amp
from .discriminator_optim_constructor import \
    DiscriminatorOptimWrapperConstructor
from .hooks import (ExactResumeHook, GradientShareBalancerHook,
                    LossGradientHook)

__all__ = [
    'DiscriminatorOptimWrapperConstructor', 'ExactResumeHook',
    'GradientShareBalancerHook', 'LossGradientHook', 'enable_amp'
]
