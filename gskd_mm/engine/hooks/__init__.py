# Copyright (c) gskd-mm contributors. All rights reserved.
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .exact_resume_hook import ExactResumeHook
from .gradient_share_balancer_hook import GradientShareBalancerHook
from .loss_gradient_hook import LossGradientHook
from .preemption_hook import (PREEMPTED_EXIT_CODE, PreemptionHook,
                              enable_preemption, stopped_by_signal)

__all__ = [
    'AtomicCheckpointHook', 'ExactResumeHook', 'GradientShareBalancerHook',
    'LossGradientHook', 'PREEMPTED_EXIT_CODE', 'PreemptionHook',
    'enable_preemption', 'stopped_by_signal'
]
