# Copyright (c) gskd-mm contributors. All rights reserved.
from .teacher_view import RandomCropWithBox, RecordTeacherView

__all__ = ['RandomCropWithBox', 'RecordTeacherView']
