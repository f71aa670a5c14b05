# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo of gskd-mm (``projects/gskd_demo/demo.py``, ``make demo``).

Everything only the demo uses: the Synthetic Scenes dataset, the paired
runs, the structural gap, the paired statistics (``stats``), the hooks that
time and fingerprint the runs, the figures and the tables (``tables``).
Import it with the repository root on ``sys.path`` (as
``projects.gskd_demo.gskd_demo``, like MMSeg's projects); importing
``gskd_mm`` does not import it.
"""
from .costs import measure_costs
from .dataset import SyntheticScenesDataset
from .methods import (CACHEABLE, COMPUTE_METHODS, COSTS_FILE, GSKD_PAIRS,
                      GSKD_VARIANTS, METHODS, NO_KD, QUICK_METHODS, MethodKey, MethodSpec,
                      demo_matched_iters, matched_methods, method_spec,
                      read_costs, study_methods, sweep_methods)
from .figures import plot_compute
from .pipeline import draw_figures, run_demo
from .results import (Comparison, ComparisonKind, DemoSummary, MethodSummary,
                      PairedInterval, RunResult, TeacherResult)
from .run_fingerprint_hook import RunFingerprintHook
from .stats import paired_differences, paired_t_interval, pairing_check
from .step_timer_hook import StepTimerHook
from .tables import markdown_table, resolution_note, schedules_table
from .training import LOGGER, QuietFilter, setup_process

__all__ = [
    'CACHEABLE', 'COMPUTE_METHODS', 'COSTS_FILE', 'demo_matched_iters',
    'matched_methods',
    'measure_costs', 'plot_compute', 'read_costs', 'schedules_table',
    'Comparison', 'ComparisonKind', 'DemoSummary', 'GSKD_PAIRS',
    'GSKD_VARIANTS', 'LOGGER', 'METHODS', 'MethodKey', 'MethodSpec',
    'MethodSummary', 'NO_KD', 'PairedInterval', 'QUICK_METHODS',
    'QuietFilter', 'RunFingerprintHook', 'RunResult', 'StepTimerHook',
    'SyntheticScenesDataset', 'TeacherResult', 'draw_figures',
    'markdown_table', 'method_spec', 'paired_differences', 'pairing_check',
    'paired_t_interval', 'resolution_note', 'run_demo', 'setup_process',
    'study_methods', 'sweep_methods'
]
