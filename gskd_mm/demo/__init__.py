# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo (``tools/demo.py``, ``make demo``)."""
from .pipeline import draw_figures, run_demo
from .report import markdown_table, paired_differences, pairing_check
from .runs import GSKD_PAIRS, LOGGER, METHODS, QuietFilter

__all__ = [
    'GSKD_PAIRS', 'LOGGER', 'METHODS', 'QuietFilter', 'draw_figures',
    'markdown_table', 'paired_differences', 'pairing_check', 'run_demo'
]
