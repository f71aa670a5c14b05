# Copyright (c) gskd-mm contributors. All rights reserved.
"""The library parts of the demo: paired statistics, the pairing checks,
the sweep's methods and the schedule."""
import argparse
import importlib.util
import json
import math
import os.path as osp

import pytest

from projects.gskd_demo.gskd_demo import (GSKD_VARIANTS, ComparisonKind,
                                          MethodKey, RunResult,
                                          matched_methods, method_spec,
                                          paired_differences,
                                          paired_t_interval, pairing_check,
                                          sweep_methods)
from projects.gskd_demo.gskd_demo.methods import (config_dir, load_config,
                                                  read_costs)


K = MethodKey.parse  # a key as written


# ------------------------------------------------------------ statistics
def test_paired_t_interval_hand_checked():
    # d = 1..5: mean 3, sd sqrt(2.5), t(4, 0.975) = 2.776445.
    interval = paired_t_interval([3, 5, 7, 9, 11], [2, 3, 4, 5, 6])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert interval.n == 5
    assert interval.mean == pytest.approx(3.0)
    assert interval.low == pytest.approx(3.0 - half, abs=1e-5)
    assert interval.high == pytest.approx(3.0 + half, abs=1e-5)
    # A 90 % interval is narrower: t(4, 0.95) = 2.131847.
    narrow = paired_t_interval([3, 5, 7, 9, 11], [2, 3, 4, 5, 6], 0.9)
    assert narrow.high - narrow.mean == pytest.approx(
        2.131847 * math.sqrt(2.5) / math.sqrt(5), abs=1e-5)


def test_paired_t_interval_pairs_by_position():
    # A constant difference has no spread, whatever the spread of a and b.
    interval = paired_t_interval([10, 50, 30], [9, 49, 29])
    assert interval.low == pytest.approx(1.0)
    assert interval.high == pytest.approx(1.0)


def test_paired_t_interval_bad_input():
    single = paired_t_interval([2.0], [1.0])
    assert single.mean == 1.0 and math.isnan(single.low)
    with pytest.raises(ValueError, match='same length'):
        paired_t_interval([1, 2], [1])
    with pytest.raises(ValueError, match='same length'):
        paired_t_interval([], [])
    with pytest.raises(ValueError, match='confidence'):
        paired_t_interval([1, 2], [0, 1], confidence=95)


def _run(seed, miou, gap, student='s', data='d', **metrics):
    return RunResult(
        miou=miou,
        metrics={},
        wall_s=1.0,
        iter_ms=1.0,
        iteration_ms=1.0,
        gskd_ms=0.0,
        student_digest=f'{student}{seed}',
        data_digest=f'{data}{seed}',
        checkpoint='',
        scalars='',
        gap=gap,
        seed=seed,
        **metrics)


def test_paired_differences_and_check():
    runs = {
        K('dist'): [_run(0, 30.0, 0.5), _run(1, 40.0, 0.7)],
        K('dist_gskd'): [_run(1, 41.0, 0.4), _run(0, 32.0, 0.3)],
        K('no_kd'): [_run(0, 20.0, 0.9), _run(1, 25.0, 0.9)]}
    paired = paired_differences(runs)
    # GSKD against its base (no CWD or CIRKD runs); every method against
    # no KD at equal iterations.
    assert {k: d.kind for k, d in paired.items()} == {
        'dist vs no_kd': ComparisonKind.KD, 'dist_gskd': ComparisonKind.BASE,
        'dist_gskd vs no_kd': ComparisonKind.KD}
    assert paired['dist_gskd'].baseline == K('dist')
    assert paired['dist vs no_kd'].intervals['miou'].mean == \
        pytest.approx(12.5)
    # Matched by seed, not by position: differences +2 and +1.
    assert paired['dist_gskd'].intervals['miou'].mean == pytest.approx(1.5)
    assert paired['dist_gskd'].intervals['gap'].mean == pytest.approx(-0.25)
    assert pairing_check(runs) == dict(student=True, data=True)
    runs[K('no_kd')][1] = _run(1, 25.0, 0.9, student='other')
    assert pairing_check(runs) == dict(student=False, data=True)


def test_a_balanced_variant_is_compared_with_its_base_and_fixed_twin():
    runs = {
        K('dist'): [_run(0, 30.0, 0.5), _run(1, 40.0, 0.7)],
        K('dist_gskd-row-t1'): [_run(0, 31.0, 0.4), _run(1, 42.0, 0.6)],
        K('dist_gskd-row-t1-bal'): [_run(0, 33.0, 0.3), _run(1, 43.0, 0.6)],
    }
    paired = paired_differences(runs)
    assert list(paired) == [
        'dist_gskd-row-t1', 'dist_gskd-row-t1-bal',
        'dist_gskd-row-t1-bal vs dist_gskd-row-t1'
    ]
    twin = paired['dist_gskd-row-t1-bal vs dist_gskd-row-t1']
    assert twin.method == K('dist_gskd-row-t1-bal')
    assert twin.baseline == K('dist_gskd-row-t1')
    assert twin.kind is ComparisonKind.FIXED
    assert twin.intervals['miou'].mean == pytest.approx(1.5)  # +2 and +1
    balanced = paired['dist_gskd-row-t1-bal']
    assert balanced.baseline == K('dist')
    assert paired['dist_gskd-row-t1-bal'].intervals['miou'].mean == \
        pytest.approx(3.0)
    # Without its fixed twin, only the base.
    del runs[K('dist_gskd-row-t1')]
    assert list(paired_differences(runs)) == ['dist_gskd-row-t1-bal']


def test_paired_differences_skip_undefined_metrics():
    def run(seed, miou, gap, proj):
        return _run(seed, miou, gap, gap_cos=gap / 10, gap_proj=proj,
                    gap_proj_cos=proj)
    runs = {
        K('cwd'): [run(0, 30.0, 0.5, None), run(1, 31.0, 0.6, None)],
        K('cwd_gskd'): [run(0, 32.0, 0.4, 0.2), run(1, 34.0, 0.4, 0.3)],
        K('cwd_gskd-row'): [run(1, 30.0, 0.7, 0.1), run(0, 29.0, 0.7, 0.2)],
    }
    paired = paired_differences(runs)
    assert set(paired) == {'cwd_gskd', 'cwd_gskd-row'}
    for d in paired.values():
        assert d.baseline == K('cwd')
        assert set(d.intervals) == {'miou', 'gap', 'gap_cos'}
    assert paired['cwd_gskd'].intervals['miou'].mean == pytest.approx(2.5)
    assert paired['cwd_gskd-row'].intervals['miou'].mean == pytest.approx(-1.0)
    assert paired['cwd_gskd-row'].intervals['gap'].mean == pytest.approx(0.15)


def test_compute_matched_and_doubling_comparisons():
    """A method against no KD at the iterations its steps cost, and no KD
    at twice the iterations against no KD, paired by seed."""
    runs = {
        K('no_kd'): [_run(0, 20.0, 0.9), _run(1, 22.0, 0.9)],
        K('dist'): [_run(0, 30.0, 0.5), _run(1, 31.0, 0.5)],
        K('no_kd@270'): [_run(0, 28.0, 0.9), _run(1, 27.0, 0.9)],
        K('no_kd@300'): [_run(0, 29.0, 0.9), _run(1, 30.0, 0.9)],
    }
    costs = {K('dist'): 1.79}  # 150 x 1.79 = 268.5, to 10: 270
    assert matched_methods(list(runs), 150, costs) == [K('no_kd@270')]
    paired = paired_differences(runs, 150, costs)
    kinds = {
        k: (str(d.method), str(d.baseline), d.kind.value)
        for k, d in paired.items()
    }
    assert kinds == {
        'no_kd@300 vs no_kd': ('no_kd@300', 'no_kd', 'doubling'),
        'dist vs no_kd': ('dist', 'no_kd', 'kd'),
        'dist vs no_kd@270': ('dist', 'no_kd@270', 'compute'),
    }
    assert paired['dist vs no_kd@270'].intervals['miou'].mean == \
        pytest.approx(3.0)  # +2 and +4
    assert paired['no_kd@300 vs no_kd'].intervals['miou'].mean == \
        pytest.approx(8.5)
    # Without costs, no compute-matched pair; an unmeasured method is named.
    assert 'dist vs no_kd@270' not in paired_differences(runs, 150)
    with pytest.raises(KeyError, match='cwd'):
        matched_methods([K('cwd')], 150, costs)
    spec = method_spec(K('no_kd@270'))
    assert spec.iters == 270 and spec.label == 'no KD, 270 it'
    for bad in ('no_kd@x', 'no_kd@0', 'no_kd@-2'):
        with pytest.raises(ValueError, match='positive integer'):
            K(bad)
    with pytest.raises(ValueError, match='positive integer'):
        MethodKey('no_kd', iters=0)


def test_cached_methods_are_matched_two_ways_from_a_cost_table(tmp_path):
    """A cached method gets no KD at equal compute with its cache pass
    amortised (schedule x ratio + pass, to 10) and without it (schedule x
    ratio, to 10), from the costs file; an online method one way."""
    table = tmp_path / 'step_costs.json'
    table.write_text(json.dumps(dict(methods={
        'no_kd': dict(ratio=1.0),
        'dist': dict(ratio=1.6),
        'dist_cached': dict(ratio=1.08, pass_cpu_s=12.0, pass_iters=37.4),
    })))
    costs, passes = read_costs(str(table)), read_costs(str(table),
                                                       'pass_iters')
    assert costs == {K('no_kd'): 1.0, K('dist'): 1.6, K('dist_cached'): 1.08}
    assert passes == {K('dist_cached'): 37.4}
    # 150 x 1.6 = 240; 150 x 1.08 = 162 -> 160; 162 + 37.4 = 199.4 -> 200.
    assert matched_methods([K('no_kd'), K('dist'), K('dist_cached')], 150,
                           costs, passes) == [
                               K('no_kd@240'), K('no_kd@160'),
                               K('no_kd@200')]
    # At 600 the pass weighs less: 648 -> 650; 685.4 -> 690.
    assert matched_methods([K('dist_cached')], 600, costs, passes) == [
        K('no_kd@650'), K('no_kd@690')]
    runs = {
        K('no_kd'): [_run(0, 20.0, 0.9), _run(1, 22.0, 0.9)],
        K('dist'): [_run(0, 30.0, 0.5), _run(1, 31.0, 0.5)],
        K('dist_cached'): [_run(0, 29.0, 0.5), _run(1, 32.0, 0.5)],
        K('no_kd@160'): [_run(0, 23.0, 0.9), _run(1, 24.0, 0.9)],
        K('no_kd@200'): [_run(0, 26.0, 0.9), _run(1, 26.0, 0.9)],
    }
    paired = paired_differences(runs, 150, costs, pass_costs=passes)
    kinds = {k: d.kind for k, d in paired.items()}
    assert kinds['dist_cached vs no_kd@160'] is ComparisonKind.COMPUTE
    assert kinds['dist_cached vs no_kd@200'] is \
        ComparisonKind.COMPUTE_AMORTISED
    assert kinds['dist_cached'] is ComparisonKind.BASE  # online DIST
    assert paired['dist_cached'].baseline == K('dist')
    assert paired['dist_cached vs no_kd@200'].intervals['miou'].mean == \
        pytest.approx(4.5)  # +3 and +6
    # Without the pass, only the reused-cache budget; the demo refuses to
    # match a cached method whose pass was not measured.
    assert 'dist_cached vs no_kd@200' not in paired_differences(
        runs, 150, costs)
    with pytest.raises(KeyError, match='cache pass of .dist_cached'):
        matched_methods([K('dist_cached')], 150, costs)


def test_the_demo_scales_a_cache_pass_to_its_training_images():
    """``demo.py`` matches a cached method's amortised run with the pass
    of step_costs.json scaled to the run's training images (the pass runs
    the teacher over each image once per view)."""
    demo_py = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                       'demo.py')
    spec = importlib.util.spec_from_file_location('gskd_demo_cli', demo_py)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    key = K('dist_cached')
    ratio, passes = read_costs()[key], read_costs(field='pass_iters')[key]
    images = read_costs(field='pass_images')[key]
    for num_train in (images, images // 4):
        args = argparse.Namespace(
            sweep=False, study=False, compute=False, matched=True,
            methods=[K('no_kd'), key], iters=150, num_train=num_train)
        mode, methods, costs, pass_costs = demo.chosen_methods(args)
        amortised = max(10, 10 * round(
            (150 * ratio + passes * num_train / images) / 10))
        reused = max(10, 10 * round(150 * ratio / 10))
        assert mode is None and costs[key] == ratio
        assert methods == [K('no_kd'), key] + list(
            dict.fromkeys([K(f'no_kd@{reused}'), K(f'no_kd@{amortised}')]))


def test_method_keys_are_parsed_and_written_in_one_form():
    """A key reads back from its written form, and the written form of
    every key is the one the runs' directories and the JSON use."""
    cases = {
        'no_kd': MethodKey('no_kd'),
        'dist_gskd': MethodKey('dist_gskd'),
        'cwd_gskd-row': MethodKey('cwd', 'gskd-row'),
        'no_kd@250': MethodKey('no_kd', iters=250),
        'cirkd_gskd-row-t1-bal@300':
        MethodKey('cirkd', 'gskd-row-t1-bal', 300),
        'dist_cached': MethodKey('dist', cached=True),
        'dist_gskd-row-t1_cached': MethodKey('dist', 'gskd-row-t1',
                                             cached=True),
    }
    for text, key in cases.items():
        assert K(text) == key and str(key) == text
        assert K(str(key)) == key
    assert K('no_kd@250').is_no_kd and not K('dist').is_no_kd
    assert K('no_kd@250').at(None) == K('no_kd')
    assert K('cwd_cached').online == K('cwd')
    assert method_spec(K('cwd_cached')).label == 'CWD cached'
    with pytest.raises(ValueError, match='teacher cache'):
        K('cirkd_cached')
    # Only a balanced variant has a fixed twin: its variant unbalanced.
    assert K('dist_gskd-row-t1-bal').fixed_twin == K('dist_gskd-row-t1')
    for key in ('dist', 'dist_gskd', 'dist_gskd-row-t1', 'no_kd@250'):
        assert K(key).fixed_twin is None, key


# --------------------------------------------------------------- sweep
def test_sweep_methods_and_their_overrides_land_in_the_config():
    keys = sweep_methods()
    assert len(keys) == 3 * (2 + len(GSKD_VARIANTS))
    assert keys[:2] == [K('dist'), K('dist_gskd')]
    data = dict(data_root='/nonexistent', generate_cfg=dict(num_train=1))
    for key in keys:
        spec = method_spec(key)
        if spec.loss_gskd is None:
            continue
        assert spec.baseline == MethodKey(key.base)
        assert spec.loss_gskd == GSKD_VARIANTS[key.variant]['loss_gskd']
        # As student_runs builds it: the recipe with the authors' GSKD,
        # its loss_gskd updated, the rest of the recipe as it is.
        cfg = load_config(spec.config, data['data_root'],
                          data['generate_cfg'], 10, 2, 0)
        authors = cfg.model.distiller.distill_losses.loss_gskd.copy()
        cfg.model.distiller.distill_losses.loss_gskd.update(spec.loss_gskd)
        built = cfg.model.distiller.distill_losses.loss_gskd
        for name, value in spec.loss_gskd.items():
            assert built[name] == value, (key, name)
        for name in ('type', 'num_samples', 'group_size'):
            assert built[name] == authors[name], (key, name)
    assert method_spec(K('dist_gskd')).loss_gskd is None
    assert method_spec(K('dist_gskd')).baseline == K('dist')
    assert method_spec(K('no_kd')).baseline is None
    for bad in ('dist_gskd-nope', 'no_kd_gskd-row', 'nothing', 'dist_'):
        with pytest.raises(ValueError, match='unknown demo method'):
            K(bad)
    with pytest.raises(ValueError, match='unknown demo method'):
        sweep_methods(variants=['nope'])
    with pytest.raises(ValueError, match='unknown demo method'):
        MethodKey('no_kd', 'gskd-row')
    assert osp.isdir(config_dir())


def test_variants_are_those_of_the_recipes():
    """Each variant is defined once: the shipped recipes' GSKD-row-t1 and
    balancer are the demo's."""
    from mmengine.config import Config
    recipes = osp.join(
        osp.dirname(osp.dirname(config_dir())), '..', 'configs', 'gskd')
    pair = 'deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024'
    fixed = Config.fromfile(osp.join(recipes, f'dist-gskd-row-t1_{pair}.py'))
    loss = fixed.model.distiller.distill_losses.loss_gskd
    variant = GSKD_VARIANTS['gskd-row-t1']['loss_gskd']
    assert {k: loss[k] for k in variant} == variant
    balanced = Config.fromfile(
        osp.join(recipes, f'dist-gskd-row-t1-bal_{pair}.py'))
    hook = next(h for h in balanced.custom_hooks
                if h.type == 'GradientShareBalancerHook')
    demo = GSKD_VARIANTS['gskd-row-t1-bal']
    assert demo['loss_gskd'] == variant
    assert hook.targets == demo['balancer']['targets']


# ------------------------------------------------------------ schedule
def test_every_student_has_the_same_schedule_scaled_to_the_run():
    from projects.gskd_demo.gskd_demo.methods import METHODS, TEACHER_CONFIG
    schedules = set()
    for name in METHODS:
        cfg = load_config(method_spec(MethodKey(name)).config,
                          '/nonexistent', {}, 150, 4, 0)
        warmup, poly = cfg.param_scheduler
        assert (warmup.type, warmup.begin, warmup.end) == ('LinearLR', 0, 15)
        assert (poly.type, poly.begin, poly.end) == ('PolyLR', 15, 150)
        assert cfg.train_cfg.max_iters == 150
        schedules.add(
            repr((cfg.optim_wrapper.optimizer, cfg.optim_wrapper.clip_grad,
                  cfg.param_scheduler)))
    assert len(schedules) == 1  # the same for every method
    assert 'max_norm' in next(iter(schedules))
    # Very short runs keep a valid schedule.
    cfg = load_config(METHODS['dist'][1], '/nonexistent', {}, 2, 4, 0)
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [(0, 1),
                                                                (0, 2)]
    # The teacher's schedule is its own (AdamW, no clip, no warm-up).
    cfg = load_config(TEACHER_CONFIG, '/nonexistent', {}, 800, 8, 0)
    assert cfg.optim_wrapper.clip_grad is None
    assert [(s.type, s.begin, s.end) for s in cfg.param_scheduler] == [
        ('PolyLR', 0, 800)
    ]


# ---------------------------------------------------------------- JSON
def test_results_are_typed_and_their_json_keeps_its_form():
    """A summary's JSON writes method keys and comparison kinds as written
    (the form of runs stored before the keys were typed) and reads back
    into the same typed summary; a run's gradients and balancer updates
    are their dataclasses, stored as plain dicts."""
    import json

    from gskd_mm.analysis.loss_gradients import TermGradient
    from gskd_mm.engine.hooks.gradient_share_balancer_hook import \
        BalancerUpdate
    from projects.gskd_demo.gskd_demo.results import (DatasetInfo,
                                                      DemoSummary, Settings,
                                                      TeacherResult, to_json)
    from projects.gskd_demo.gskd_demo.stats import summarise

    def run(seed, miou):
        return _run(
            seed, miou, 0.5,
            grad_norms={'loss_gskd': TermGradient(0.1, 0.2, 0.3, {'p': 1.0})},
            balancer=[BalancerUpdate(4, 'loss_gskd', None, 0.5)])

    runs = {
        K('no_kd'): [run(0, 20.0), run(1, 22.0)],
        K('dist'): [run(0, 30.0), run(1, 31.0)],
        K('no_kd@270'): [run(0, 28.0), run(1, 27.0)],
    }
    costs = {K('dist'): 1.79}
    teacher = TeacherResult(
        **vars(_run(None, 45.0, 0.0)), untrained_miou=9.0)
    summary = summarise(
        Settings(150, 800, 4, 8, 2, 1),
        DatasetInfo('S', 4, 2, 64, 5, '/d', {}),
        teacher, runs, [dict(kl=1.0, cos=2.0)] * 2, 10.0,
        dict(student=1, teacher=2), 1.0, costs)
    stored = json.loads(json.dumps(summary.to_json()))
    assert list(stored['methods']) == ['no_kd', 'dist', 'no_kd@270']
    assert stored['costs'] == {'dist': 1.79}
    assert stored['paired']['dist vs no_kd@270']['kind'] == 'compute'
    assert stored['paired']['dist vs no_kd@270']['baseline'] == 'no_kd@270'
    first = stored['methods']['dist']['runs'][0]
    assert first['grad_norms'] == {
        'loss_gskd': dict(value=0.1, student=0.2, share=0.3,
                          connectors={'p': 1.0})}
    assert first['balancer'] == [
        dict(iter=4, term='loss_gskd', share=None, weight=0.5)]
    assert to_json(runs[K('dist')][0]) == first
    again = DemoSummary.from_json(stored)
    assert again == summary
    assert again.paired['dist vs no_kd@270'].kind is ComparisonKind.COMPUTE
    assert isinstance(again.methods[K('dist')].runs[0].balancer[0],
                      BalancerUpdate)
    assert again.methods[K('no_kd@270')].iters == 270
