# Copyright (c) gskd-mm contributors. All rights reserved.
from .checkpoint import (allow_mmengine_checkpoints, load_state_dict,
                         read_checkpoint, student_state_dict)
from .process_group import ddp_wrapper_holders, destroy_process_group
from .setup_env import register_all_modules

__all__ = [
    'allow_mmengine_checkpoints', 'ddp_wrapper_holders',
    'destroy_process_group', 'load_state_dict', 'read_checkpoint',
    'student_state_dict', 'register_all_modules'
]
