# Copyright (c) gskd-mm contributors. All rights reserved.
from .checks import (channel_mismatch_fix, check_dense_pair, check_labels,
                     float32_forward, teacher_at_student_size, to_float32)
from .gskd_descriptors import (NORMALIZATIONS, descriptor_kl_terms,
                               grouped_columns)
from .gskd_sampling import (class_balanced_sample, class_counts,
                            gather_normalized, nearest_source_index,
                            resize_labels, teacher_prediction,
                            valid_pixel_mask)

__all__ = [
    'NORMALIZATIONS', 'channel_mismatch_fix', 'check_dense_pair',
    'check_labels', 'class_balanced_sample', 'class_counts',
    'descriptor_kl_terms', 'float32_forward', 'gather_normalized',
    'grouped_columns', 'nearest_source_index', 'resize_labels',
    'teacher_at_student_size', 'teacher_prediction', 'to_float32',
    'valid_pixel_mask'
]
