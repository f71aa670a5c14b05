# Copyright (c) gskd-mm contributors. All rights reserved.
"""What tests, benchmarks and the analysis tools share, kept out of the
package's import path (``import gskd_mm`` does not import it), as
``mmengine.testing``:

- :mod:`.data`: generated segmentation data (region-shaped scenes), as
  batches and as tiny copies of the recipes' datasets;
- :mod:`.offline`: a recipe run offline (no downloads) at another crop,
  and its distiller built with what weights exist;
- :mod:`.step_benchmark`: timing whole training steps of a recipe;
- :mod:`.loop_reference`, :mod:`.cirkd_loop_reference`: plain loop
  implementations of GSKD and the CIRKD terms, which the vectorised losses
  are tested and timed against.
"""
from .data import (generated_batch, make_ade20k, make_cityscapes,
                   make_coco_stuff164k, make_voc12aug, region_sample,
                   voc_palette)
from .offline import (build_offline_distiller, discriminator_stages,
                      offline_recipe, recipe_crop)

__all__ = [
    'build_offline_distiller', 'discriminator_stages', 'generated_batch',
    'make_ade20k', 'make_cityscapes', 'make_coco_stuff164k', 'make_voc12aug',
    'offline_recipe', 'recipe_crop', 'region_sample', 'voc_palette'
]
