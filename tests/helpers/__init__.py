# Copyright (c) gskd-mm contributors. All rights reserved.
"""Helpers of the tests: data writers, recipe runners, process harnesses.

They are not part of the package. The loop references the losses are
checked against are (``gskd_mm.models.losses.loop_reference`` and
``cirkd_loop_reference``), since the benchmarks time them too.
"""
from .datasets import (make_ade20k, make_cityscapes, make_coco_stuff164k,
                       make_voc12aug, synthetic_sample, voc_palette)
from .processes import free_port, run_with_deadline, spawn_with_deadline
from .recipes import (demo_networks, load_config, num_classes_of,
                      random_seg_batch, shrink_recipe, train_one_step,
                      zoo_config)

__all__ = [
    'demo_networks', 'free_port', 'load_config', 'make_ade20k', 'make_cityscapes',
    'make_coco_stuff164k', 'make_voc12aug', 'num_classes_of',
    'random_seg_batch', 'run_with_deadline', 'shrink_recipe',
    'spawn_with_deadline', 'synthetic_sample', 'train_one_step',
    'voc_palette', 'zoo_config'
]
