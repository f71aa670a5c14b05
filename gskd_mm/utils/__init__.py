# Copyright (c) gskd-mm contributors. All rights reserved.
from .checkpoint import (allow_mmengine_checkpoints, load_state_dict,
                         read_checkpoint, student_state_dict)
from .setup_env import register_all_modules

__all__ = [
    'allow_mmengine_checkpoints', 'load_state_dict', 'read_checkpoint',
    'student_state_dict', 'register_all_modules'
]
