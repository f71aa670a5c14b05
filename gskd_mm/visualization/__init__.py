# Copyright (c) gskd-mm contributors. All rights reserved.
from .similarity import (class_legend, colorize, dataset_classes,
                         plot_gskd_similarity)

__all__ = [
    'class_legend', 'colorize', 'dataset_classes', 'plot_gskd_similarity'
]
