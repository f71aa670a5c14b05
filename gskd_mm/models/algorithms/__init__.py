# Copyright (c) gskd-mm contributors. All rights reserved.
from .eval_teacher_distill import EvalTeacherDistill

__all__ = ['EvalTeacherDistill']
