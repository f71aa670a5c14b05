# Copyright (c) gskd-mm contributors. All rights reserved.
"""Helpers for tests and benchmarks (not needed for training)."""
from .recipes import (iter_dicts, num_classes_of, random_seg_batch,
                      shrink_recipe)

__all__ = [
    'iter_dicts', 'num_classes_of', 'random_seg_batch', 'shrink_recipe'
]
