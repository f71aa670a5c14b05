# Copyright (c) gskd-mm contributors. All rights reserved.
"""Helpers for tests and benchmarks (not needed for training)."""
from .datasets import (make_ade20k, make_cityscapes, make_coco_stuff164k,
                       make_voc12aug, synthetic_sample, voc_palette)
from .recipes import (iter_dicts, num_classes_of, random_seg_batch,
                      shrink_recipe, train_one_step)

__all__ = [
    'iter_dicts', 'make_ade20k', 'make_cityscapes', 'make_coco_stuff164k',
    'make_voc12aug',
    'num_classes_of', 'random_seg_batch', 'shrink_recipe', 'synthetic_sample',
    'train_one_step', 'voc_palette'
]
