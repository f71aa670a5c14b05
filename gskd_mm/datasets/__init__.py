# Copyright (c) gskd-mm contributors. All rights reserved.
from .synthetic import (CLASSES, IGNORE_INDEX, PALETTE, RENDER_COLOURS,
                        SyntheticScenesDataset, class_pixel_counts,
                        default_cache_dir, generate_synthetic_scenes,
                        render_scene, split_names)

__all__ = [
    'CLASSES', 'IGNORE_INDEX', 'PALETTE', 'RENDER_COLOURS',
    'SyntheticScenesDataset', 'class_pixel_counts', 'default_cache_dir',
    'generate_synthetic_scenes', 'render_scene', 'split_names'
]
