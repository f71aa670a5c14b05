# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's data: Synthetic Scenes in the cache, and its baselines."""
import os.path as osp
import sys
from typing import List, Tuple

import numpy as np
from mmengine.logging import print_log
from PIL import Image

from .dataset import (class_pixel_counts, default_cache_dir,
                      generate_synthetic_scenes, split_names)
from .scenes import IGNORE_INDEX
from .training import LOGGER

# The demo's Synthetic Scenes: 64x64 images, generated with seed 0.
IMG_SIZE = 64
DATA_SEED = 0


def generate_params(num_train: int, num_val: int) -> dict:
    """The demo dataset's generation parameters at a size."""
    return dict(
        num_train=num_train,
        num_val=num_val,
        img_size=IMG_SIZE,
        seed=DATA_SEED)


def prepare_data(num_train: int, num_val: int) -> Tuple[str, dict]:
    """Generate the dataset into the cache (once); return root and params.

    The default size lives at ``<cache>/synthetic_scenes``, where the
    dataset class looks by default; other sizes get their own directory.

    Args:
        num_train (int): Training images.
        num_val (int): Validation images.

    Returns:
        tuple[str, dict]: The dataset directory and its generation
        parameters.
    """
    generate_cfg = generate_params(num_train, num_val)
    default_size = (num_train, num_val) == (300, 60)
    data_root = osp.join(
        default_cache_dir(), 'synthetic_scenes'
        if default_size else f'synthetic_scenes_{num_train}-{num_val}')
    print_log(f'Data: {data_root}', logger=LOGGER)
    fresh = not osp.isfile(osp.join(data_root, 'meta.json'))
    generate_synthetic_scenes(data_root, **generate_cfg)
    if fresh:  # end the line of the generation's progress bar
        sys.stdout.write('\n')
    return data_root, generate_cfg


def richest_val_images(data_root: str, count: int) -> List[int]:
    """Indices of the validation images with the most labelled classes."""
    richness = []
    for name in split_names(data_root, 'val'):
        label = np.asarray(
            Image.open(osp.join(data_root, 'ann_dir', 'val', name + '.png')))
        present = np.unique(label[label != IGNORE_INDEX])
        richness.append(len(present))
    return [int(i) for i in np.argsort(richness, kind='stable')[::-1][:count]]


def majority_class_miou(data_root: str) -> float:
    """Val mIoU (%) of predicting the most frequent class everywhere.

    Every present class but the majority one has IoU 0; the majority class
    has IoU = its share of the labelled pixels (as MMSeg's IoUMetric
    counts them over the whole split).
    """
    counts = class_pixel_counts(data_root, 'val')[:-1]
    present = counts > 0
    return float(100 * counts.max() / counts.sum() / present.sum())
