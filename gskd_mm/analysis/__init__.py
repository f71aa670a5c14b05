# Copyright (c) gskd-mm contributors. All rights reserved.
"""Measuring and analysing distillation, as ``mmengine.analysis`` does for
models: the library of the engine's measuring hooks and of the analysis
tools (``tools/analysis_tools``). It imports only :mod:`gskd_mm.models` and
:mod:`gskd_mm.utils` of the package.

- :mod:`.loss_gradients`: how hard every loss term pulls on the student
  (:class:`TermGradient`);
- :mod:`.structural_gap`: how far a student's feature structure is from its
  teacher's (:class:`StructuralGap`);
- :mod:`.offline`: a recipe run offline (no downloads) at another crop;
- :mod:`.step_benchmark`: timing whole training steps of a recipe;
- :mod:`.budget`: a recipe's compute against its student trained alone,
  and the student-only baseline of equal compute (:class:`KDBudget`);
- :mod:`.measure`: running a measurement in a child process, peak memory;
- :mod:`.tables`: the tables the tools print.

Note:
    :mod:`.offline`, :mod:`.budget`, :mod:`.step_benchmark` and
    :mod:`.measure` load on first use (FLOP
    counting, the Runner and the benchmarks are not needed to train), so
    ``import gskd_mm`` stays light.
"""
import importlib
from typing import Any

from .loss_gradients import (TermGradient, TermGradients, average_gradients,
                             loss_gradient_norms, loss_terms, resolve_term,
                             term_gradient_norms, unwrap_model,
                             weights_for_share)
from .structural_gap import StructuralGap, structural_gap, structural_gaps
from .tables import gradient_table, markdown_table, percent, text_table

#: The names loaded on first use, by module.
_LAZY = {
    'budget': ('BUDGET_BASES', 'KDBudget', 'RecipeFlops', 'budget_table',
               'matched_iters', 'recipe_flops', 'segmentor_flops',
               'student_only_config'),
    'offline': ('OfflineDistiller', 'build_offline_distiller',
                'discriminator_stages', 'offline_recipe', 'recipe_crop'),
    'measure': ('MeasurementError', 'PeakMemory', 'run_measurement'),
}
_LAZY_NAMES = {name: mod for mod, names in _LAZY.items() for name in names}
_SUBMODULES = ('budget', 'measure', 'offline', 'step_benchmark')


def __getattr__(name: str) -> Any:
    """Load the heavy modules and their names on first use."""
    if name in _LAZY_NAMES:
        module = importlib.import_module(f'.{_LAZY_NAMES[name]}', __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f'.{name}', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
    'BUDGET_BASES', 'KDBudget', 'MeasurementError', 'OfflineDistiller',
    'RecipeFlops', 'StructuralGap', 'TermGradient', 'TermGradients',
    'average_gradients', 'budget_table', 'build_offline_distiller',
    'discriminator_stages', 'gradient_table', 'loss_gradient_norms',
    'loss_terms', 'markdown_table', 'matched_iters', 'offline_recipe',
    'PeakMemory', 'percent', 'recipe_crop', 'recipe_flops',
    'resolve_term', 'run_measurement', 'segmentor_flops', 'structural_gap',
    'structural_gaps', 'student_only_config', 'term_gradient_norms',
    'text_table', 'unwrap_model', 'weights_for_share'
]
