# Copyright (c) gskd-mm contributors. All rights reserved.
"""The structural gap (gskd_mm.analysis): on features and on a dataset."""
import pytest
import torch
import torch.nn.functional as F

from gskd_mm.analysis import StructuralGap, structural_gap, structural_gaps
from gskd_mm.testing import generated_batch

from helpers import demo_networks


def _batches():
    torch.manual_seed(1)
    return [generated_batch(2, (64, 64), 7) for _ in range(2)]


def _features(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (2, 8, 8), generator=gen)
    feat_T = torch.randn(2, 16, 8, 8, generator=gen)
    logits_T = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    return feat_T, logits_T, labels


def test_gap_of_features_is_zero_for_the_same_structure():
    feat_T, logits_T, labels = _features()
    same = structural_gap(feat_T, feat_T, logits_T, labels)
    assert same.num_images == 2
    assert same.kl == pytest.approx(0.0, abs=1e-9)
    assert same.cos == pytest.approx(0.0, abs=1e-6)
    # A scaled copy has the same cosine structure.
    assert structural_gap(3 * feat_T, feat_T, logits_T,
                          labels).cos == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    gap = structural_gap(other, feat_T, logits_T, labels)
    assert gap.kl > 0 and 0 < gap.cos < 2


def test_gap_of_features_is_seeded_and_leaves_the_global_rng():
    feat_T, logits_T, labels = _features()
    other = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    state = torch.random.get_rng_state()
    first = structural_gap(other, feat_T, logits_T, labels, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert structural_gap(other, feat_T, logits_T, labels, seed=3) == first
    assert structural_gap(other, feat_T, logits_T, labels, seed=4) != first


def test_gap_of_unlabelled_features_counts_no_image():
    feat_T, logits_T, labels = _features()
    gap = structural_gap(feat_T, feat_T, logits_T, torch.full_like(labels,
                                                                   255))
    assert gap == StructuralGap()


def test_gaps_of_batches_add_up():
    a, b = StructuralGap(1.0, 2.0, 2), StructuralGap(3.0, 0.5, 1)
    total = a + b
    assert total == StructuralGap(4.0, 2.5, 3)
    assert total.kl == pytest.approx(4 / 3) and total.cos == pytest.approx(
        2.5 / 3)


def test_dataset_gap_is_zero_for_the_teacher_itself():
    student, teacher = demo_networks()
    batches = _batches()
    same = structural_gaps(teacher, teacher, batches)
    assert same.kl == pytest.approx(0.0, abs=1e-9)
    assert same.cos == pytest.approx(0.0, abs=1e-6)
    gap = structural_gaps(student, teacher, batches)
    assert gap.kl > 1e-6  # GSKD-scaled: KL * T^2 / descriptor length
    assert 0 < gap.cos < 2  # mean |cosine difference|
    # The draws are seeded: the same value again, and the global RNG is
    # left alone.
    state = torch.random.get_rng_state()
    assert structural_gaps(student, teacher, batches) == gap
    assert torch.equal(torch.random.get_rng_state(), state)


def test_dataset_gap_is_the_sum_of_its_batches():
    student, teacher = demo_networks()
    batches = _batches()
    total = structural_gaps(student, teacher, batches)
    parts = [
        structural_gaps(student, teacher, [batch], seed=i)
        for i, batch in enumerate(batches)
    ]
    assert total == parts[0] + parts[1]


def test_dataset_gap_with_a_projector():
    student, teacher = demo_networks()
    batches = _batches()
    own = structural_gaps(student, teacher, batches)
    # Student features (16 channels) through a projector to the teacher's
    # 32: a different gap, on the same draws.
    torch.manual_seed(2)
    projector = torch.nn.Conv2d(16, 32, 1, bias=False)
    projected = structural_gaps(
        student, teacher, batches, projector=projector)
    assert projected.kl != own.kl and projected.cos != own.cos
    # The identity as projector changes nothing.
    assert structural_gaps(
        student, teacher, batches, projector=lambda x: x) == own


def test_dataset_gap_errors():
    student, teacher = demo_networks()
    with pytest.raises(ValueError, match='decode_head.nothing'):
        structural_gaps(student, teacher, _batches(), 'decode_head.nothing')
    unlabelled = _batches()
    for batch in unlabelled:
        for sample in batch['data_samples']:
            sample.gt_sem_seg.data[:] = 255
    with pytest.raises(ValueError, match='labelled pixel'):
        structural_gaps(student, teacher, unlabelled)
