# Copyright (c) gskd-mm contributors. All rights reserved.
from .adversarial_distill_ddp import AdversarialDistillDataParallel

__all__ = ['AdversarialDistillDataParallel']
