# Copyright (c) gskd-mm contributors. All rights reserved.
from .adversarial_distill import AdversarialEvalTeacherDistill
from .eval_teacher_distill import EvalTeacherDistill, teacher_model_config

__all__ = [
    'AdversarialEvalTeacherDistill', 'EvalTeacherDistill',
    'teacher_model_config'
]
