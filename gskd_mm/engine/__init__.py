# Copyright (c) gskd-mm contributors. All rights reserved.
from .amp import enable_amp
from .discriminator_optim_constructor import \
    DiscriminatorOptimWrapperConstructor
from .hooks import (PREEMPTED_EXIT_CODE, AtomicCheckpointHook,
                    ExactResumeHook, GradientShareBalancerHook,
                    LossGradientHook, PreemptionHook, enable_preemption,
                    stopped_by_signal)

__all__ = [
    'AtomicCheckpointHook', 'DiscriminatorOptimWrapperConstructor',
    'ExactResumeHook', 'GradientShareBalancerHook', 'LossGradientHook',
    'PREEMPTED_EXIT_CODE', 'PreemptionHook', 'enable_amp',
    'enable_preemption', 'stopped_by_signal'
]
