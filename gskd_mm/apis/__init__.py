# Copyright (c) gskd-mm contributors. All rights reserved.
from .gskd_view import GSKDView, find_gskd_loss, gskd_view
from .inference import (default_annotation, init_distiller, init_student,
                        load_sample)

__all__ = [
    'GSKDView', 'default_annotation', 'find_gskd_loss', 'gskd_view',
    'init_distiller', 'init_student', 'load_sample'
]
