# Copyright (c) gskd-mm contributors. All rights reserved.
from .sagan_discriminator import SAGANDiscriminator

__all__ = ['SAGANDiscriminator']
