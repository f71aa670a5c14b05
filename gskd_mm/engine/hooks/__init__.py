# Copyright (c) gskd-mm contributors. All rights reserved.
from .loss_gradient_hook import LossGradientHook
from .run_fingerprint_hook import RunFingerprintHook
from .step_timer_hook import StepTimerHook

__all__ = ['LossGradientHook', 'RunFingerprintHook', 'StepTimerHook']
