# Copyright (c) gskd-mm contributors. All rights reserved.
from .adversarial_distill import AdversarialEvalTeacherDistill
from .cached_teacher_distill import (CachedAdversarialTeacherDistill,
                                     CachedTeacherDistill)
from .eval_teacher_distill import EvalTeacherDistill, teacher_model_config

__all__ = [
    'AdversarialEvalTeacherDistill', 'CachedAdversarialTeacherDistill',
    'CachedTeacherDistill', 'EvalTeacherDistill',
    'teacher_model_config'
]
