# Copyright (c) gskd-mm contributors. All rights reserved.
"""The library parts of the demo: paired statistics, the structural gap,
per-descriptor GSKD terms, the pairing checks and the hooks."""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from gskd_mm.apis import init_student
from gskd_mm.models.losses import GSKDLoss
from gskd_mm.testing import random_seg_batch
from gskd_mm.utils import register_all_modules, student_state_dict
from projects.gskd_demo.gskd_demo import (paired_differences,
                                          paired_t_interval, pairing_check,
                                          structural_gap)

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS_BASE = osp.join(PROJECT, 'configs', '_base_', 'models',
                       'deeplabv3_r18-d4_demo.py')


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


# -------------------------------------------------------- structural gap
def _demo_networks():
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(MODELS_BASE)
    with DefaultScope.overwrite_default_scope('mmseg'):
        torch.manual_seed(0)
        student = MODELS.build(cfg.model).eval()
        teacher = MODELS.build(cfg.teacher).eval()
    return student, teacher


def _batches():
    torch.manual_seed(1)
    return [random_seg_batch(2, (64, 64), 7) for _ in range(2)]


def test_structural_gap_zero_for_the_teacher_itself():
    student, teacher = _demo_networks()
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
    student, teacher = _demo_networks()
    with pytest.raises(ValueError, match='decode_head.nothing'):
        structural_gap(student, teacher, _batches(), 'decode_head.nothing')
    unlabelled = _batches()
    for batch in unlabelled:
        for sample in batch['data_samples']:
            sample.gt_sem_seg.data[:] = 255
    with pytest.raises(ValueError, match='labelled pixel'):
        structural_gap(student, teacher, unlabelled)


# ------------------------------------------------ GSKD per descriptor
def test_descriptor_losses_average_to_the_loss():
    torch.manual_seed(0)
    loss = GSKDLoss(num_samples=4, group_size=3, tau=2.0, loss_weight=3.0)
    preds_S = torch.randn(3, 8, 6, 6)
    preds_T = torch.randn(3, 8, 6, 6)
    logits_T = torch.randn(3, 5, 6, 6)
    labels = torch.randint(0, 5, (3, 12, 12))
    torch.manual_seed(7)
    expected = loss(preds_S, preds_T, logits_T, labels)
    torch.manual_seed(7)
    steps = loss.descriptors(preds_S, preds_T, logits_T, labels)
    terms = loss.descriptor_losses(steps)
    assert terms.shape == steps['columns_valid'].shape[:2]
    assert (terms >= 0).all()
    torch.testing.assert_close(loss.reduce(terms, steps), expected)
    # Padding groups carry no term.
    groups = steps['groups_per_img']
    for img in range(3):
        assert (terms[img, int(groups[img]):] == 0).all()


# ------------------------------------------------------------ students
def test_student_state_dict_strips_only_leading_prefix():
    weight = torch.ones(1)
    assert student_state_dict({
        'architecture.head.architecture.w': weight,
        'teacher.architecture.w': weight,
        'distiller.connectors.p.architecture.w': weight,
    }) == {
        'head.architecture.w': weight
    }
    with pytest.raises(ValueError, match='architecture'):
        student_state_dict({'w': weight})


def test_init_student_of_a_distill_config(tmp_path):
    register_all_modules(init_default_scope=False)
    config = osp.join(
        PROJECT, 'configs',
        'dist_deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py')
    student, _ = _demo_networks()
    state = {f'architecture.{k}': v for k, v in student.state_dict().items()}
    state['teacher.x'] = torch.zeros(1)
    ckpt = str(tmp_path / 'distill.pth')
    torch.save(dict(state_dict=state), ckpt)
    loaded = init_student(config, ckpt)
    assert not loaded.training
    for key, value in student.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


# --------------------------------------------------------- visualisation
def test_dataset_classes_from_mmseg_metainfo():
    from projects.gskd_demo.gskd_demo import synthetic
    from gskd_mm.visualization import dataset_classes
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(
        osp.join(PROJECT, 'configs',
                 'deeplabv3_r18-w8-d4_synthetic-64x64.py'))
    cfg.test_dataloader.dataset.data_root = '/nonexistent'  # nothing read
    names, palette = dataset_classes(cfg)
    assert names == list(synthetic.CLASSES)
    assert palette == [list(c) for c in synthetic.PALETTE]
    # Without a palette, MMSeg's fixed random one, one colour per class.
    cfg = Config(
        dict(
            default_scope='mmseg',
            test_dataloader=dict(
                dataset=dict(
                    type='BaseSegDataset',
                    data_root='/nonexistent',
                    metainfo=dict(classes=('a', 'b', 'c')),
                    data_prefix=dict(img_path='i', seg_map_path='s')))))
    names, palette = dataset_classes(cfg)
    assert names == ['a', 'b', 'c']
    assert len(palette) == 3 and palette == dataset_classes(cfg)[1]
