# Copyright (c) gskd-mm contributors. All rights reserved.
"""The library parts of the demo: paired statistics, the structural gaps,
the pairing checks, the sweep's methods and the gradient-share hook."""
import math
import os.path as osp

import pytest
import torch

from gskd_mm.testing import generated_batch
from projects.gskd_demo.gskd_demo import (GSKD_VARIANTS, GradientShareHook,
                                          method_spec, paired_differences,
                                          paired_t_interval, pairing_check,
                                          structural_gap, structural_gaps,
                                          sweep_methods)
from projects.gskd_demo.gskd_demo.gradient_share_hook import gskd_share
from projects.gskd_demo.gskd_demo.methods import config_dir, load_config

from helpers import demo_networks


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


def _run(seed, miou, gap, student='s', data='d'):
    return dict(
        seed=seed,
        miou=miou,
        gap=gap,
        student_digest=f'{student}{seed}',
        data_digest=f'{data}{seed}')


def test_paired_differences_and_check():
    runs = dict(
        dist=[_run(0, 30.0, 0.5), _run(1, 40.0, 0.7)],
        dist_gskd=[_run(1, 41.0, 0.4), _run(0, 32.0, 0.3)],
        no_kd=[_run(0, 20.0, 0.9), _run(1, 25.0, 0.9)])
    paired = paired_differences(runs)
    assert list(paired) == ['dist_gskd']  # no CWD or CIRKD runs
    assert paired['dist_gskd']['baseline'] == 'dist'
    # Matched by seed, not by position: differences +2 and +1.
    assert paired['dist_gskd']['miou']['mean'] == pytest.approx(1.5)
    assert paired['dist_gskd']['gap']['mean'] == pytest.approx(-0.25)
    assert pairing_check(runs) == dict(student=True, data=True)
    runs['no_kd'][1] = _run(1, 25.0, 0.9, student='other')
    assert pairing_check(runs) == dict(student=False, data=True)


def test_a_balanced_variant_is_compared_with_its_base_and_fixed_twin():
    runs = {
        'dist': [_run(0, 30.0, 0.5), _run(1, 40.0, 0.7)],
        'dist_gskd-row-t1': [_run(0, 31.0, 0.4), _run(1, 42.0, 0.6)],
        'dist_gskd-row-t1-bal': [_run(0, 33.0, 0.3), _run(1, 43.0, 0.6)],
    }
    paired = paired_differences(runs)
    assert list(paired) == [
        'dist_gskd-row-t1', 'dist_gskd-row-t1-bal',
        'dist_gskd-row-t1-bal vs dist_gskd-row-t1'
    ]
    twin = paired['dist_gskd-row-t1-bal vs dist_gskd-row-t1']
    assert twin['method'] == 'dist_gskd-row-t1-bal'
    assert twin['baseline'] == 'dist_gskd-row-t1'
    assert twin['miou']['mean'] == pytest.approx(1.5)  # +2 and +1
    assert paired['dist_gskd-row-t1-bal']['baseline'] == 'dist'
    assert paired['dist_gskd-row-t1-bal']['miou']['mean'] == \
        pytest.approx(3.0)
    # Without its fixed twin, only the base.
    del runs['dist_gskd-row-t1']
    assert list(paired_differences(runs)) == ['dist_gskd-row-t1-bal']


# -------------------------------------------------------- structural gap


def _batches():
    torch.manual_seed(1)
    return [generated_batch(2, (64, 64), 7) for _ in range(2)]


def test_structural_gap_zero_for_the_teacher_itself():
    student, teacher = demo_networks()
    batches = _batches()
    assert structural_gap(teacher, teacher, batches) == pytest.approx(
        0.0, abs=1e-9)
    gap = structural_gap(student, teacher, batches)
    assert gap > 1e-6  # GSKD-scaled: KL * T^2 / descriptor length
    # The draws are seeded: the same value again, and the global RNG is
    # left alone.
    state = torch.random.get_rng_state()
    assert structural_gap(student, teacher, batches) == gap
    assert torch.equal(torch.random.get_rng_state(), state)


def test_structural_gap_errors():
    student, teacher = demo_networks()
    with pytest.raises(ValueError, match='decode_head.nothing'):
        structural_gap(student, teacher, _batches(), 'decode_head.nothing')
    unlabelled = _batches()
    for batch in unlabelled:
        for sample in batch['data_samples']:
            sample.gt_sem_seg.data[:] = 255
    with pytest.raises(ValueError, match='labelled pixel'):
        structural_gap(student, teacher, unlabelled)


def test_structural_gaps_both_metrics_and_projector():
    student, teacher = demo_networks()
    batches = _batches()
    same = structural_gaps(teacher, teacher, batches)
    assert same['kl'] == pytest.approx(0.0, abs=1e-9)
    assert same['cos'] == pytest.approx(0.0, abs=1e-6)
    own = structural_gaps(student, teacher, batches)
    assert own['kl'] == structural_gap(student, teacher, batches)
    assert 0 < own['cos'] < 2  # mean |cosine difference|
    # Student features (16 channels) through a projector to the teacher's
    # 32: a different gap, on the same draws.
    torch.manual_seed(2)
    projector = torch.nn.Conv2d(16, 32, 1, bias=False)
    projected = structural_gaps(student, teacher, batches,
                                projector=projector)
    assert projected['kl'] != own['kl'] and projected['cos'] != own['cos']
    # The identity as projector changes nothing.
    assert structural_gaps(
        student, teacher, batches, projector=lambda x: x) == own


def test_paired_differences_skip_undefined_metrics():
    def run(seed, miou, gap, proj):
        return dict(seed=seed, miou=miou, gap=gap, gap_cos=gap / 10,
                    gap_proj=proj, gap_proj_cos=proj)
    runs = {
        'cwd': [run(0, 30.0, 0.5, None), run(1, 31.0, 0.6, None)],
        'cwd_gskd': [run(0, 32.0, 0.4, 0.2), run(1, 34.0, 0.4, 0.3)],
        'cwd_gskd-row': [run(1, 30.0, 0.7, 0.1), run(0, 29.0, 0.7, 0.2)],
    }
    paired = paired_differences(runs)
    assert set(paired) == {'cwd_gskd', 'cwd_gskd-row'}
    for d in paired.values():
        assert d['baseline'] == 'cwd'
        assert set(d) == {'method', 'baseline', 'miou', 'gap', 'gap_cos'}
    assert paired['cwd_gskd']['miou']['mean'] == pytest.approx(2.5)
    assert paired['cwd_gskd-row']['miou']['mean'] == pytest.approx(-1.0)
    assert paired['cwd_gskd-row']['gap']['mean'] == pytest.approx(0.15)


# --------------------------------------------------------------- sweep
def test_sweep_methods_and_their_overrides_land_in_the_config():
    keys = sweep_methods()
    assert len(keys) == 3 * (2 + len(GSKD_VARIANTS))
    assert keys[:2] == ['dist', 'dist_gskd']
    data = dict(data_root='/nonexistent', generate_cfg=dict(num_train=1))
    for key in keys:
        spec = method_spec(key)
        if spec.loss_gskd is None:
            continue
        base, _, variant = key.partition('_')
        assert spec.baseline == base
        options = GSKD_VARIANTS[variant]['options']
        assert spec.loss_gskd == dict(
            options, loss_weight=GSKD_VARIANTS[variant]['loss_weight'][base])
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
    assert method_spec('dist_gskd').loss_gskd is None
    assert method_spec('dist_gskd').baseline == 'dist'
    assert method_spec('no_kd').baseline is None
    for bad in ('dist_gskd-nope', 'no_kd_gskd-row', 'nothing'):
        with pytest.raises(ValueError, match='unknown demo method'):
            method_spec(bad)
    with pytest.raises(ValueError, match='unknown demo method'):
        sweep_methods(variants=['nope'])
    assert osp.isdir(config_dir())


# ------------------------------------------------------- gradient share
class _Runner:

    def __init__(self, model):
        self.model = model


def test_gradient_share_hook_leaves_training_alone(monkeypatch):
    import projects.gskd_demo.gskd_demo.gradient_share_hook as module
    model = torch.nn.Sequential(torch.nn.Linear(3, 3),
                                torch.nn.BatchNorm1d(3))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def fake_norms(model, data_batch):
        # Side effects as a training forward has: BN statistics, RNG.
        model.train()
        model(torch.randn(4, 3))
        return {'decode.loss_ce': dict(student=2.0, share=1.0),
                'distill.loss_gskd': dict(student=1.0, share=0.5)}

    monkeypatch.setattr(module, '_loss_gradient_norms', lambda: fake_norms)
    hook = GradientShareHook()
    state = torch.random.get_rng_state()
    hook.before_train_iter(_Runner(model), 0, dict(inputs=[]))
    assert torch.equal(torch.random.get_rng_state(), state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())
    assert gskd_share(hook.norms) == 0.5
    hook.norms['distill.loss_gskd']['share'] = 7.0
    hook.before_train_iter(_Runner(model), 1, dict(inputs=[]))
    assert gskd_share(hook.norms) == 7.0  # measured once, on batch 0
    assert gskd_share({'decode.loss_ce': dict(share=1.0)}) is None

    monkeypatch.setattr(module, '_loss_gradient_norms', lambda: None)
    absent = GradientShareHook()
    absent.before_train_iter(_Runner(model), 0, dict(inputs=[]))
    assert not absent.available and absent.norms is None


# ------------------------------------------------------------ schedule
def test_every_student_has_the_same_schedule_scaled_to_the_run():
    from projects.gskd_demo.gskd_demo.methods import METHODS, TEACHER_CONFIG
    schedules = set()
    for key in METHODS:
        cfg = load_config(method_spec(key).config, '/nonexistent', {}, 150,
                          4, 0)
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
