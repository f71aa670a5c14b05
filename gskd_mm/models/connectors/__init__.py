# Copyright (c) gskd-mm contributors. All rights reserved.
from .projector import GSKDProjector

__all__ = ['GSKDProjector']
