# Copyright (c) gskd-mm contributors. All rights reserved.
"""What tests, benchmarks and the analysis tools share, kept out of the
package's import path (``import gskd_mm`` does not import it), as
``mmengine.testing``:

- :mod:`.data`: generated segmentation data (region-shaped scenes), as
  batches and as tiny copies of the recipes' datasets;
- :mod:`.loop_reference`, :mod:`.cirkd_loop_reference`: plain loop
  implementations of GSKD and the CIRKD terms, which the vectorised losses
  are tested and timed against.
"""
from .data import (generated_batch, make_ade20k, make_cityscapes,
                   make_coco_stuff164k, make_voc12aug, region_sample,
                   voc_palette)

__all__ = [
    'generated_batch', 'make_ade20k', 'make_cityscapes',
    'make_coco_stuff164k', 'make_voc12aug', 'region_sample', 'voc_palette'
]
