# Copyright (c) gskd-mm contributors. All rights reserved.
from .eval_teacher_distill import EvalTeacherDistill, teacher_model_config

__all__ = ['EvalTeacherDistill', 'teacher_model_config']
