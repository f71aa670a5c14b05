# Copyright (c) gskd-mm contributors. All rights reserved.
from .gskd_view import find_gskd_loss, gskd_view
from .inference import (default_annotation, init_distiller, init_student,
                        load_sample)
from .loss_gradients import loss_gradient_norms, term_gradient_norms

__all__ = [
    'default_annotation', 'find_gskd_loss', 'gskd_view', 'init_distiller',
    'init_student', 'load_sample', 'loss_gradient_norms',
    'term_gradient_norms'
]
