# Copyright (c) gskd-mm contributors. All rights reserved.
from .discriminator_optim_constructor import \
    DiscriminatorOptimWrapperConstructor

__all__ = ['DiscriminatorOptimWrapperConstructor']
