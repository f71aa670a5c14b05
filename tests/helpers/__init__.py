# Copyright (c) gskd-mm contributors. All rights reserved.
"""Helpers of the tests alone: recipe runners and process harnesses.

What the tests share with the benchmarks and tools (generated data, the
offline recipe, the loop references) is in :mod:`gskd_mm.testing`.
"""
from .processes import (alive, free_port, kill_process_group,
                        run_with_deadline, spawn_with_deadline)
from .recipes import (demo_networks, load_config, num_classes_of,
                      shrink_recipe, train_one_step, zoo_config)

__all__ = [
    'alive', 'demo_networks', 'free_port', 'kill_process_group', 'load_config',
    'num_classes_of', 'run_with_deadline', 'shrink_recipe',
    'spawn_with_deadline', 'train_one_step', 'zoo_config'
]
