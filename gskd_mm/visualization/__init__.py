# Copyright (c) gskd-mm contributors. All rights reserved.
from .demo_figures import (METHOD_COLOURS, plot_loss_curves, plot_miou,
                           plot_predictions, read_scalars)
from .similarity import (class_legend, colorize, dataset_classes,
                         plot_gskd_similarity)

__all__ = [
    'METHOD_COLOURS', 'class_legend', 'colorize', 'dataset_classes',
    'plot_gskd_similarity', 'plot_loss_curves', 'plot_miou',
    'plot_predictions', 'read_scalars'
]
