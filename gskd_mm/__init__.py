# Copyright (c) gskd-mm contributors. All rights reserved.
"""gskd-mm: Global Structural Similarity Knowledge Distillation for MMRazor.

Importing the package registers its losses and connectors into MMRazor's
``MODELS`` registry (configs do it with
``custom_imports = dict(imports=['gskd_mm'])``).
"""
# Before anything imports MMRazor: keep it importable on torch 2.x even
# where the .pth start-up hook is not installed (e.g. a bare source tree).
import gskd_mm_mmrazor_compat  # noqa: F401  isort: skip

from .models import *  # noqa: F401,F403,E402
from .version import __version__  # noqa: E402

__all__ = ['__version__']
