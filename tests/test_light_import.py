# Copyright (c) gskd-mm contributors. All rights reserved.
"""``import gskd_mm`` (every recipe's ``custom_imports``) stays light.

A fresh interpreter imports the package and lists what it loaded: no FLOP
counting, no measurement or benchmark code and no test helpers; the names
those modules give ``gskd_mm.analysis`` still load on first use.
"""
import json
import sys

from helpers import run_with_deadline

#: Modules that ``import gskd_mm`` must not load, and why.
HEAVY = {
    'mmengine.analysis': 'FLOP counting',
    'fvcore': 'FLOP counting',
    'gskd_mm.analysis.budget': 'the Runner building of kd_budget',
    'gskd_mm.analysis.step_benchmark': 'step timing',
    'gskd_mm.analysis.offline': 'offline recipes of the tools',
    'gskd_mm.analysis.measure': 'the tools\' measurement harness',
    'gskd_mm.testing.loss_benchmark': 'the loss benchmarks',
    'gskd_mm.utils.cli': 'the tools\' argument checks',
    'gskd_mm.testing': 'test data and loop references',
}

LIST_MODULES = ('import json, sys, {module}; '
                'print(json.dumps(sorted(sys.modules)))')


def loaded_by(module: str) -> list:
    """The modules a fresh interpreter holds after importing ``module``."""
    result = run_with_deadline(
        [sys.executable, '-c', LIST_MODULES.format(module=module)],
        timeout=120)
    assert result.returncode == 0, result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_gskd_mm_is_light():
    loaded = loaded_by('gskd_mm')
    assert 'gskd_mm.engine.hooks.gradient_share_balancer_hook' in loaded
    heavy = [
        f'{name} ({why})' for name, why in HEAVY.items()
        if any(m == name or m.startswith(name + '.') for m in loaded)
    ]
    assert not heavy, f'import gskd_mm loaded: {", ".join(heavy)}'


def test_lazy_names_still_import():
    from gskd_mm import analysis
    from gskd_mm.analysis import KDBudget, offline_recipe, run_measurement
    from gskd_mm.analysis.budget import KDBudget as budget_kd
    assert KDBudget is budget_kd
    assert callable(offline_recipe) and callable(run_measurement)
    assert analysis.step_benchmark.__name__ == \
        'gskd_mm.analysis.step_benchmark'
    for name in analysis.__all__:
        assert getattr(analysis, name) is not None, name
