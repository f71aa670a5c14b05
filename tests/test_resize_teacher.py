# Copyright (c) gskd-mm contributors. All rights reserved.
"""Teacher and student maps of different height x width (resize_teacher).

A SegFormer head works at stride 4, a dilated CNN at stride 8. With
``resize_teacher=True`` GSKD, CWD, DIST and per-pixel KD resize the teacher's maps to the
student's bilinearly; maps of equal size give exactly the loss without it,
and different sizes without it fail with an error that names the fix.
"""
import pytest
import torch
import torch.nn.functional as F

from gskd_mm.models.losses import (Float32ChannelWiseDivergence, GSKDLoss,
                                   PixelWiseDISTLoss, PixelWiseKDLoss)

LOSSES = ('gskd', 'cwd', 'dist', 'kd')


def build(name, resize_teacher):
    if name == 'gskd':
        return GSKDLoss(
            num_samples=4, valid_mask='labeled', resize_teacher=resize_teacher)
    if name == 'cwd':
        return Float32ChannelWiseDivergence(
            tau=4.0, loss_weight=3.0, resize_teacher=resize_teacher)
    if name == 'kd':
        return PixelWiseKDLoss(tau=2.0, resize_teacher=resize_teacher)
    return PixelWiseDISTLoss(resize_teacher=resize_teacher)


def maps(size_S=(8, 8), size_T=(8, 8), seed=0, channels=16, classes=5):
    """Student and teacher maps, logits and labels of one batch."""
    gen = torch.Generator().manual_seed(seed)
    return dict(
        feat_S=torch.randn(2, channels, *size_S, generator=gen),
        feat_T=torch.randn(2, channels, *size_T, generator=gen),
        logits_S=torch.randn(2, classes, *size_S, generator=gen),
        logits_T=torch.randn(2, classes, *size_T, generator=gen),
        labels=torch.randint(0, classes, (2, 32, 32), generator=gen))


def run(name, loss, x, feat_T=None, logits_T=None):
    """The loss on ``x``, with the teacher's maps optionally replaced."""
    feat_T = x['feat_T'] if feat_T is None else feat_T
    logits_T = x['logits_T'] if logits_T is None else logits_T
    torch.manual_seed(0)  # GSKD draws its points and shuffles
    if name == 'gskd':
        return loss(x['feat_S'], feat_T, logits_T, x['labels'])
    if name == 'cwd':
        return loss(x['feat_S'], feat_T)
    return loss(x['logits_S'], logits_T)


def teacher_arg(name):
    return 'logits_T' if name in ('dist', 'kd') else 'feat_T'


@pytest.mark.parametrize('name', LOSSES)
def test_same_size_is_exactly_the_loss_without_resizing(name):
    x = maps()
    aligned = run(name, build(name, True), x)
    plain = run(name, build(name, False), x)
    assert torch.equal(aligned, plain)
    assert aligned > 0


@pytest.mark.parametrize('name', LOSSES)
def test_a_finer_teacher_is_taken_at_the_student_positions(name):
    """A stride-4 teacher against a stride-8 student.

    The stride-4 maps here repeat each value of stride-8 maps over a 2x2
    block, so the teacher at the image position of a stride-8 pixel (the
    centre of the block) is that value: the loss must equal the loss on
    the stride-8 maps.
    """
    coarse = maps()
    key = teacher_arg(name)
    fine = F.interpolate(coarse[key], scale_factor=2, mode='nearest')
    fine_logits = F.interpolate(
        coarse['logits_T'], scale_factor=2, mode='nearest')
    loss = build(name, True)
    expected = run(name, loss, coarse)
    if name == 'gskd':
        got = run(name, loss, coarse, feat_T=fine, logits_T=fine_logits)
    else:
        got = run(name, loss, coarse, **{key: fine})
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('name', LOSSES)
def test_a_coarser_teacher_trains_the_student(name):
    """A stride-8 teacher against a stride-4 student: the loss is finite
    and non-zero, and its gradient reaches the student."""
    x = maps(size_S=(16, 16), size_T=(8, 8))
    student = 'logits_S' if name in ('dist', 'kd') else 'feat_S'
    x[student].requires_grad_(True)
    value = run(name, build(name, True), x)
    assert torch.isfinite(value) and value > 0
    value.backward()
    assert x[student].grad.abs().sum() > 0


@pytest.mark.parametrize('name', LOSSES)
def test_different_sizes_without_resizing_name_the_fix(name):
    x = maps(size_S=(8, 8), size_T=(16, 16))
    with pytest.raises(ValueError, match='resize_teacher=True'):
        run(name, build(name, False), x)


@pytest.mark.parametrize('name', LOSSES)
def test_different_channels_still_fail_with_resizing(name):
    x = maps()
    key = teacher_arg(name)
    with pytest.raises(ValueError, match='same batch size and channels'):
        run(name, build(name, True), x, **{key: x[key][:, :3]})
