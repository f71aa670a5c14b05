# Copyright (c) gskd-mm contributors. All rights reserved.
"""gskd-mm: Global Structural Similarity Knowledge Distillation for MMRazor.

Importing the package registers its losses and connectors into MMRazor's
``MODELS`` registry and its optimizer constructor into MMEngine's (configs
do it with ``custom_imports = dict(imports=['gskd_mm'])``) and lets torch's
weights-only loading read MMEngine checkpoints
(:func:`gskd_mm.utils.allow_mmengine_checkpoints`).
"""
# Before anything imports MMRazor or mmcv: keep them importable on torch 2.x
# and on mmcv-lite even where the .pth start-up hook is not installed (e.g.
# a bare source tree).
import gskd_mm_compat  # noqa: F401  isort: skip

from .datasets import *  # noqa: F401,F403,E402
from .engine import *  # noqa: F401,F403,E402
from .models import *  # noqa: F401,F403,E402
from .utils import allow_mmengine_checkpoints  # noqa: E402
from .version import __version__  # noqa: E402

# Recipes import gskd_mm (``custom_imports``) before the runner resumes or
# loads checkpoints, which torch >= 2.6 reads with ``weights_only=True``:
# allow-list what MMEngine checkpoints hold, so that ``--resume`` works
# under ``mim train mmrazor`` too, whose train.py knows nothing of gskd-mm.
allow_mmengine_checkpoints()

__all__ = ['__version__']
