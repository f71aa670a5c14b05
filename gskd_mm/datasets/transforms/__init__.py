# Copyright (c) gskd-mm contributors. All rights reserved.
from .teacher_view import (RandomCropWithBox, RecordTeacherView,
                           ReplayAugmentations, replay_seed)

__all__ = [
    'RandomCropWithBox', 'RecordTeacherView', 'ReplayAugmentations',
    'replay_seed'
]
