# Copyright (c) gskd-mm contributors. All rights reserved.
from .teacher_view_dataset import TeacherViewDataset, teacher_view_pipeline
from .transforms import RandomCropWithBox, RecordTeacherView

__all__ = [
    'RandomCropWithBox', 'RecordTeacherView', 'TeacherViewDataset',
    'teacher_view_pipeline'
]
