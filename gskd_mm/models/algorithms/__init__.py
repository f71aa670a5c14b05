# Copyright (c) gskd-mm contributors. All rights reserved.
from .adversarial_distill import AdversarialEvalTeacherDistill
from .eval_teacher_distill import EvalTeacherDistill

__all__ = ['AdversarialEvalTeacherDistill', 'EvalTeacherDistill']
