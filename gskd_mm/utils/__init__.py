# Copyright (c) gskd-mm contributors. All rights reserved.
from .checkpoint import (ATOMIC_BACKEND, AtomicLocalBackend,
                         allow_mmengine_checkpoints, checkpoint_to_resume,
                         load_state_dict, read_checkpoint, restore_drawn_seed,
                         student_state_dict, write_atomically)
from .process_group import (ddp_wrapper_holders, descendants,
                            destroy_process_group, kill_process_tree)
from .setup_env import register_all_modules

__all__ = [
    'ATOMIC_BACKEND', 'AtomicLocalBackend', 'checkpoint_to_resume',
    'restore_drawn_seed', 'write_atomically', 'allow_mmengine_checkpoints', 'ddp_wrapper_holders',
    'destroy_process_group', 'load_state_dict', 'read_checkpoint',
    'student_state_dict', 'register_all_modules'
]
