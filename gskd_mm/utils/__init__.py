# Copyright (c) gskd-mm contributors. All rights reserved.
from .checkpoint import (ATOMIC_BACKEND, AtomicLocalBackend,
                         allow_mmengine_checkpoints, checkpoint_to_resume,
                         load_state_dict, read_checkpoint, restore_drawn_seed,
                         student_state_dict, write_atomically)
from .process_group import (ddp_wrapper_holders, descendants,
                            destroy_process_group, kill_process_tree)
from .setup_env import register_all_modules

__all__ = [
    'ATOMIC_BACKEND', 'AtomicLocalBackend', 'allow_mmengine_checkpoints',
    'checkpoint_to_resume', 'ddp_wrapper_holders', 'descendants',
    'destroy_process_group', 'kill_process_tree', 'load_state_dict',
    'read_checkpoint', 'register_all_modules', 'restore_drawn_seed',
    'student_state_dict', 'write_atomically'
]
