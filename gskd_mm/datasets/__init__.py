# Copyright (c) gskd-mm contributors. All rights reserved.
from .teacher_view_dataset import (TeacherViewDataset, patch_dataset_cfg,
                                   replay_settings, teacher_view_pipeline)
from .transforms import (RandomCropWithBox, RecordTeacherView,
                         ReplayAugmentations, replay_seed)

__all__ = [
    'RandomCropWithBox', 'RecordTeacherView', 'ReplayAugmentations',
    'TeacherViewDataset', 'patch_dataset_cfg', 'replay_seed',
    'replay_settings', 'teacher_view_pipeline'
]
