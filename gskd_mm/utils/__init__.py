# Copyright (c) gskd-mm contributors. All rights reserved.
from .checkpoint import (allow_mmengine_checkpoints, load_state_dict,
                         read_checkpoint, student_state_dict)
from .setup_env import register_all_modules
from .stats import PairedInterval, paired_t_interval

__all__ = [
    'allow_mmengine_checkpoints', 'load_state_dict', 'read_checkpoint',
    'student_state_dict',
    'register_all_modules', 'PairedInterval', 'paired_t_interval'
]
