# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CIRKD terms against their loop versions, and their memory."""
import io

import pytest
import torch
import torch.nn as nn

from gskd_mm.models import (CIRKDMemoryPixelLoss, CIRKDMemoryRegionLoss,
                            CIRKDMiniBatchPixelLoss, GSKDLoss, GSKDProjector,
                            PixelWiseKDLoss)

from gskd_mm.testing import cirkd_loop_reference as loop


def features(n, channels=16, size=(8, 8), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *size, generator=gen)


def labels_with_ignore(n, num_classes, size=(16, 16), seed=0, ignore=0.2):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n, *size), generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < ignore] = 255
    return labels


# ------------------------------------------------------------- logits KD
@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_pixel_kd_agrees_with_loop(tau):
    z_s, z_t = features(3, 5, seed=1), features(3, 5, seed=2)
    value = PixelWiseKDLoss(tau=tau, loss_weight=2.0)(z_s, z_t)
    torch.testing.assert_close(value,
                               2.0 * loop.pixel_kd_loss_loop(z_s, z_t, tau))


def test_pixel_kd_is_zero_for_equal_logits_and_trains_the_student_only():
    z_t = features(2, 5, seed=2)
    assert PixelWiseKDLoss()(z_t.clone(), z_t).item() == pytest.approx(
        0.0, abs=1e-7)
    z_s = features(2, 5, seed=1).requires_grad_()
    z_t.requires_grad_()
    PixelWiseKDLoss()(z_s, z_t).backward()
    assert z_s.grad.abs().sum() > 0 and z_t.grad is None


# ---------------------------------------------------- mini-batch pixel pairs
@pytest.mark.parametrize('tau', [0.1, 1.0])
def test_minibatch_agrees_with_loop_for_other_widths(tau):
    # Student and teacher widths differ: the maps are P x P either way.
    f_s, f_t = features(3, 8, (4, 6), seed=1), features(3, 16, (4, 6), 2)
    value = CIRKDMiniBatchPixelLoss(tau=tau, loss_weight=3.0)(f_s, f_t)
    torch.testing.assert_close(
        value, 3.0 * loop.minibatch_pixel_loss_loop(f_s, f_t, tau))


def test_minibatch_pairs_are_ordered_and_include_self_pairs():
    # One image: only the pair (0, 0), i.e. a self-similarity KL.
    f_s, f_t = features(2, 8, seed=1), features(2, 8, seed=2)
    loss = CIRKDMiniBatchPixelLoss()
    one = loss(f_s[:1], f_t[:1])
    torch.testing.assert_close(
        one, loop.minibatch_pixel_loss_loop(f_s[:1], f_t[:1]))
    # Swapping images permutes the pairs: same loss.
    torch.testing.assert_close(loss(f_s, f_t), loss(f_s.flip(0),
                                                    f_t.flip(0)))
    assert loss(f_t.clone(), f_t).item() == pytest.approx(0.0, abs=1e-6)


def test_minibatch_trains_the_student_only():
    f_s = features(2, 8, seed=1).requires_grad_()
    f_t = features(2, 16, seed=2).requires_grad_()
    CIRKDMiniBatchPixelLoss()(f_s, f_t).backward()
    assert f_s.grad.abs().sum() > 0 and f_t.grad is None


# Block sizes: one row; rows that do not divide an image's pixels; about
# one image's; all rows at once.
@pytest.mark.parametrize('block_size', [1, 7 * 3 * 24, 24 * 3 * 24, 2**24])
@pytest.mark.parametrize('tau', [0.1, 1.0])
def test_minibatch_blocks_equal_all_at_once(block_size, tau):
    f_t = features(3, 16, (4, 6), seed=2)
    values, grads = [], []
    for fn in (CIRKDMiniBatchPixelLoss(tau, 2.0, block_size=block_size),
               lambda s, t: 2.0 * loop.minibatch_pixel_loss_dense(s, t, tau)):
        f_s = features(3, 8, (4, 6), seed=1).requires_grad_()
        value = fn(f_s, f_t)
        value.backward(torch.tensor(3.0))  # an upstream gradient, too
        values.append(value)
        grads.append(f_s.grad)
    torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    assert grads[0].abs().sum() > 0


def test_minibatch_without_gradient_and_bad_block_size():
    f_s, f_t = features(2, 8, seed=1), features(2, 16, seed=2)
    with torch.no_grad():
        value = CIRKDMiniBatchPixelLoss(block_size=5)(f_s, f_t)
    assert not value.requires_grad
    torch.testing.assert_close(value,
                               loop.minibatch_pixel_loss_dense(f_s, f_t))
    with pytest.raises(ValueError, match='block_size must be'):
        CIRKDMiniBatchPixelLoss(block_size=0)


# ----------------------------------------------------------------- memory
def pixel_loss(**kwargs):
    settings = dict(
        num_classes=4, channels=16, memory_size=12, contrast_size=10**6,
        update_size=10**3)
    settings.update(kwargs)
    return CIRKDMemoryPixelLoss(**settings)


def region_loss(**kwargs):
    settings = dict(
        num_classes=4, channels=16, memory_size=5, contrast_size=10**6)
    settings.update(kwargs)
    return CIRKDMemoryRegionLoss(**settings)


def loop_enqueue(memory, kind, f_t, labels, update_size=10**3):
    if kind == 'pixel':
        memory.enqueue_pixels(f_t, labels, update_size)
    else:
        memory.enqueue_regions(f_t, labels)


@pytest.mark.parametrize('kind', ['pixel', 'region'])
@pytest.mark.parametrize('tau, kd_tau', [(0.1, 1.0), (0.5, 2.0)])
def test_memory_agrees_with_loop_over_steps(kind, tau, kd_tau):
    # Deterministic core: every labelled pixel is enqueued (update_size
    # above any class's count) and the whole queue is contrasted, so the
    # random draws cannot matter. The queues are small: they wrap around
    # several times, and a step can bring more keys than a queue holds.
    make = pixel_loss if kind == 'pixel' else region_loss
    loss = make(tau=tau, kd_tau=kd_tau, loss_weight=0.5)
    memory = loop.LoopMemory(loss.queue, loss.queue_ptr)
    for step in range(4):
        f_s = features(2, seed=10 * step + 1)
        f_t = features(2, seed=10 * step + 2)
        labels = labels_with_ignore(2, 4, seed=step)
        value = loss(f_s, f_t, labels)
        loop_enqueue(memory, kind, f_t, labels)
        torch.testing.assert_close(loss.queue, memory.queue)
        assert loss.queue_ptr.tolist() == memory.queue_ptr
        expected = loop.memory_loss_loop(
            f_s, f_t, labels, memory.keys(torch.arange(loss.memory_size)),
            tau, kd_tau)
        torch.testing.assert_close(value, 0.5 * expected)


@pytest.mark.parametrize('kind', ['pixel', 'region'])
def test_memory_contrasts_the_same_slots_of_every_class(kind):
    make = pixel_loss if kind == 'pixel' else region_loss
    loss = make(contrast_size=6)  # 6 // 4 + 1 = 2 slots per class
    assert loss.contrast_per_class == 2
    memory = loop.LoopMemory(loss.queue, loss.queue_ptr)
    f_s, f_t = features(2, seed=1), features(2, seed=2)
    labels = labels_with_ignore(2, 4)
    index = torch.tensor([3, 0])
    loss.sample_slots = lambda: index
    value = loss(f_s, f_t, labels)
    loop_enqueue(memory, kind, f_t, labels)
    torch.testing.assert_close(
        value,
        loop.memory_loss_loop(f_s, f_t, labels, memory.keys(index)))
    torch.testing.assert_close(
        loss.memory_keys(index), memory.keys(index))


def test_memory_slots_are_a_uniform_subset():
    loss = pixel_loss(memory_size=6, contrast_size=4)  # 2 per class
    torch.manual_seed(0)
    draws = torch.stack([loss.sample_slots() for _ in range(3000)])
    assert draws.shape == (3000, 2)
    assert (draws[:, 0] != draws[:, 1]).all()
    freq = torch.bincount(draws.flatten(), minlength=6) / 3000
    torch.testing.assert_close(freq, torch.full((6, ), 1 / 3), atol=0.04,
                               rtol=0)


def test_enqueued_pixels_are_a_uniform_subset_in_pixel_order():
    # Class 0 has 6 labelled pixels and update_size = 2: each is enqueued
    # with probability 1/3. Class 1 has 1 pixel: always enqueued.
    loss = pixel_loss(num_classes=2, channels=1, update_size=2)
    labels = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 255]])
    feat = torch.arange(8.0).view(1, 1, 8)  # key = pixel index
    valid = labels != 255
    torch.manual_seed(0)
    picked = []
    for _ in range(3000):
        keys, mask = loss.candidates(feat, labels, valid)
        assert mask.tolist() == [[[True, True], [True, False]]]
        assert keys[0, 1, 0, 0] == 6
        own = keys[0, 0, :, 0]
        assert own[0] < own[1]  # ascending pixel order, distinct
        picked.append(own)
    freq = torch.bincount(torch.cat(picked).long(), minlength=6) / 3000
    torch.testing.assert_close(freq, torch.full((6, ), 1 / 3), atol=0.04,
                               rtol=0)


@pytest.mark.parametrize('kind', ['pixel', 'region'])
def test_memory_survives_a_state_dict_round_trip(kind):
    make = pixel_loss if kind == 'pixel' else region_loss
    loss = make()
    for step in range(3):
        loss(features(2, seed=step), features(2, seed=step + 5),
             labels_with_ignore(2, 4, seed=step))
    assert loss.queue_ptr.sum() > 0
    buffer = io.BytesIO()
    torch.save(nn.ModuleDict(dict(term=loss)).state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert set(state) == {'term.queue', 'term.queue_ptr'}
    fresh = nn.ModuleDict(dict(term=make(init_seed=1)))
    assert not torch.equal(fresh.term.queue, loss.queue)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.term.queue, loss.queue)
    assert torch.equal(fresh.term.queue_ptr, loss.queue_ptr)


@pytest.mark.parametrize('kind', ['pixel', 'region'])
def test_no_labelled_pixel_gives_zero_in_the_graph_and_no_enqueue(kind):
    loss = (pixel_loss if kind == 'pixel' else region_loss)()
    before = loss.queue.clone()
    f_s = features(2).requires_grad_()
    value = loss(f_s, features(2, seed=3), torch.full((2, 16, 16), 255))
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert torch.equal(f_s.grad, torch.zeros_like(f_s))
    assert torch.equal(loss.queue, before)
    assert loss.queue_ptr.tolist() == [0] * 4


@pytest.mark.parametrize('kind', ['pixel', 'region'])
def test_memory_trains_the_student_only(kind):
    loss = (pixel_loss if kind == 'pixel' else region_loss)()
    f_s = features(2, seed=1).requires_grad_()
    f_t = features(2, seed=2).requires_grad_()
    loss(f_s, f_t, labels_with_ignore(2, 4)).backward()
    assert f_s.grad.abs().sum() > 0 and f_t.grad is None
    assert not loss.queue.requires_grad


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_memory_half_precision_inputs_match_float32(dtype):
    labels = labels_with_ignore(2, 4)
    f_s, f_t = features(2, seed=1), features(2, seed=2)
    reference = pixel_loss()(f_s.to(dtype).float(), f_t.to(dtype).float(),
                             labels)
    value = pixel_loss()(f_s.to(dtype), f_t.to(dtype), labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference, rtol=1e-3, atol=1e-6)


def test_memory_bad_settings_and_inputs_are_rejected():
    for kwargs, match in [(dict(num_classes=0), 'num_classes'),
                          (dict(memory_size=2.5), 'memory_size'),
                          (dict(update_size=0), 'update_size'),
                          (dict(tau=0.0), 'tau'), (dict(kd_tau=-1.0),
                                                   'kd_tau')]:
        with pytest.raises(ValueError, match=match):
            pixel_loss(**kwargs)
    loss = pixel_loss()
    f, labels = features(2), labels_with_ignore(2, 4)
    with pytest.raises(ValueError, match='outside \\[0, 4\\)'):
        loss(f, f, labels.masked_fill(labels == 0, 7))
    with pytest.raises(ValueError, match='channels'):
        loss(features(2, 8), features(2, 8), labels)
    with pytest.raises(ValueError, match='preds_S .* preds_T'):
        loss(f, features(2, 16, (4, 4)), labels)
    with pytest.raises(TypeError, match='integer'):
        loss(f, f, labels.float())
    with pytest.raises(ValueError, match='batch size'):
        loss(f, f, labels[:1])
    with pytest.raises(ValueError, match='logits_S must be'):
        PixelWiseKDLoss()(f[0], f[0])
    with pytest.raises(ValueError, match='batch size and H x W'):
        CIRKDMiniBatchPixelLoss()(f, features(2, 16, (4, 4)))


# ------------------------------------------------------ all terms together
def test_gradients_reach_the_student_and_its_projectors_only():
    torch.manual_seed(0)
    student = nn.Conv2d(3, 8, 3, padding=1)
    classifier_S = nn.Conv2d(8, 4, 1)
    teacher = nn.Conv2d(3, 16, 3, padding=1)
    classifier_T = nn.Conv2d(16, 4, 1)
    cirkd_projector = GSKDProjector(8, 16, norm_cfg=dict(type='BN'))
    gskd_projector = GSKDProjector(8, 16, norm_cfg=dict(type='BN'))
    images = torch.randn(2, 3, 8, 8)
    labels = labels_with_ignore(2, 4, size=(8, 8))
    f_s, f_t = student(images), teacher(images)
    z_s, z_t = classifier_S(f_s), classifier_T(f_t)
    total = (
        PixelWiseKDLoss()(z_s, z_t) + CIRKDMiniBatchPixelLoss()(f_s, f_t) +
        pixel_loss()(cirkd_projector(f_s), f_t, labels) +
        region_loss()(cirkd_projector(f_s), f_t, labels) +
        GSKDLoss(valid_mask='labeled')(gskd_projector(f_s), f_t, z_t,
                                       labels))
    total.backward()
    for module in (student, classifier_S, cirkd_projector, gskd_projector):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for module in (teacher, classifier_T):
        assert all(p.grad is None for p in module.parameters())
