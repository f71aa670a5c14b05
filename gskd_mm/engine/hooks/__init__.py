# Copyright (c) gskd-mm contributors. All rights reserved.
from .exact_resume_hook import ExactResumeHook
from .gradient_share_balancer_hook import GradientShareBalancerHook
from .loss_gradient_hook import LossGradientHook

__all__ = ['ExactResumeHook', 'GradientShareBalancerHook', 'LossGradientHook']
