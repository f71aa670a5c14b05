# Copyright (c) gskd-mm contributors. All rights reserved.
"""GSKDLoss: the method page, its edge cases and its errors."""
import importlib.util
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from gskd_mm.models.losses import GSKDLoss
from gskd_mm.models.losses.gskd_loss import descriptor_kl_terms
from gskd_mm.models.utils import (class_balanced_sample, class_counts,
                                  resize_labels, valid_pixel_mask)
from gskd_mm.testing import loop_reference


def features(num_imgs=2, channels=16, size=(8, 8), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_imgs, channels, *size, generator=gen)


def one_hot_logits(labels, num_classes):
    """Teacher logits that predict ``labels`` exactly (ignore -> class 0)."""
    labels = labels.clamp(max=num_classes - 1)
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float() * 10


def exact_n_labels(num_imgs, size, classes_per_img, n, ignore=255):
    """Labels where every present class has exactly ``n`` pixels."""
    labels = torch.full((num_imgs, *size), ignore, dtype=torch.long)
    flat = labels.view(num_imgs, -1)
    for i, classes in enumerate(classes_per_img):
        perm = torch.randperm(flat.shape[1])
        for k, c in enumerate(classes):
            flat[i, perm[k * n:(k + 1) * n]] = c
    return labels


def full_matrix_kl(f_s, f_t, labels, tau):
    """GSKD with a single descriptor per image: the whole similarity map.

    Valid when every present class has exactly N valid pixels: sampling then
    takes all of them, and one group of all B columns makes the shuffle
    irrelevant.
    """
    per_img = []
    for fs, ft, lab in zip(f_s, f_t, labels):
        idx = torch.nonzero(lab.flatten() != 255).squeeze(1)
        if idx.numel() == 0:
            continue
        vs = F.normalize(fs.flatten(1)[:, idx].t(), dim=1)
        vt = F.normalize(ft.flatten(1)[:, idx].t(), dim=1)
        ds, dt = (vs @ vs.t()).flatten(), (vt @ vt.t()).flatten()
        kl = F.kl_div(
            F.log_softmax(ds / tau, 0),
            F.log_softmax(dt / tau, 0),
            log_target=True,
            reduction='sum')
        per_img.append(kl * tau**2 / ds.numel())
    return torch.stack(per_img).mean()


@pytest.mark.parametrize('tau', [1.0, 0.5, 4.0])
@pytest.mark.parametrize('valid_mask', ['teacher_correct', 'labeled'])
def test_equals_full_matrix_kl_when_deterministic(tau, valid_mask):
    torch.manual_seed(0)
    n, k = 4, 5
    labels = exact_n_labels(3, (8, 8), [[0, 2, 3], [1], [0, 1, 2, 3, 4]], n)
    f_s, f_t = features(3, seed=1), features(3, seed=2)
    loss = GSKDLoss(
        num_samples=n,
        group_size=10**6,
        tau=tau,
        loss_weight=2.5,
        valid_mask=valid_mask)
    value = loss(f_s, f_t, one_hot_logits(labels, k), labels)
    expected = 2.5 * full_matrix_kl(f_s, f_t, labels, tau)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)


def test_teacher_correct_mask_drops_pixels_the_teacher_gets_wrong():
    torch.manual_seed(0)
    n = 4
    labels = exact_n_labels(1, (8, 8), [[0, 1, 2]], n)
    logits = one_hot_logits(labels, 3)
    # The teacher is wrong on every pixel of class 2.
    wrong = (labels == 2)
    logits[:, 0][wrong] = 100.0
    f_s, f_t = features(1, seed=1), features(1, seed=2)
    loss = GSKDLoss(num_samples=n, group_size=10**6)
    kept = labels.masked_fill(wrong, 255)
    torch.testing.assert_close(
        loss(f_s, f_t, logits, labels), full_matrix_kl(f_s, f_t, kept, 1.0))


def test_labels_and_logits_at_other_resolutions():
    torch.manual_seed(0)
    n = 2
    small = exact_n_labels(2, (4, 4), [[0, 1], [1, 2]], n)
    # Labels 4x larger than the features and logits 2x: nearest resize of
    # the labels and bilinear resize of the logits must find the same map.
    big = small.repeat_interleave(4, 1).repeat_interleave(4, 2)
    logits = one_hot_logits(small, 3).repeat_interleave(2, 2).repeat_interleave(
        2, 3)
    f_s, f_t = features(2, size=(4, 4), seed=1), features(
        2, size=(4, 4), seed=2)
    loss = GSKDLoss(num_samples=n, group_size=10**6)
    expected = full_matrix_kl(f_s, f_t, small, 1.0)
    torch.testing.assert_close(loss(f_s, f_t, logits, big), expected)
    torch.testing.assert_close(
        loss(f_s, f_t, logits, big[:, None]), expected)


def test_zero_when_features_coincide_positive_when_they_differ():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (2, 16, 16))
    f_t = features(2)
    loss = GSKDLoss(valid_mask='labeled')
    logits = torch.randn(2, 4, 8, 8)
    assert loss(f_t.clone(), f_t, logits, labels).item() == pytest.approx(
        0.0, abs=1e-7)
    assert loss(features(2, seed=5), f_t, logits, labels).item() > 1e-6


def test_gradient_reaches_student_and_not_teacher():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (2, 16, 16))
    f_s = features(2, seed=1).requires_grad_()
    f_t = features(2, seed=2).requires_grad_()
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    GSKDLoss(valid_mask='labeled')(f_s, f_t, logits, labels).backward()
    assert f_s.grad is not None and f_s.grad.abs().sum() > 0
    assert f_t.grad is None and logits.grad is None


def test_images_without_valid_pixels_contribute_nothing():
    torch.manual_seed(0)
    n = 2
    labels = exact_n_labels(2, (8, 8), [[0, 1], [2]], n)
    labels[1] = 255
    f_s, f_t = features(2, seed=1), features(2, seed=2)
    logits = one_hot_logits(labels, 3)
    loss = GSKDLoss(num_samples=n, group_size=10**6)
    torch.testing.assert_close(
        loss(f_s, f_t, logits, labels),
        loss(f_s[:1], f_t[:1], logits[:1], labels[:1]))


def test_no_valid_pixel_in_batch_gives_zero_in_the_graph():
    f_s = features(2).requires_grad_()
    loss = GSKDLoss()(f_s, features(2, seed=3), torch.randn(2, 3, 8, 8),
                      torch.full((2, 8, 8), 255))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(f_s.grad, torch.zeros_like(f_s))


def test_teacher_never_right_gives_zero_in_the_graph():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    logits = one_hot_logits(torch.ones_like(labels), 3)
    f_s = features(2).requires_grad_()
    loss = GSKDLoss()(f_s, features(2, seed=3), logits, labels)
    assert loss.item() == 0.0 and loss.requires_grad


def test_single_class_and_tiny_images():
    torch.manual_seed(0)
    f_s, f_t = features(2, size=(2, 2), seed=1), features(
        2, size=(2, 2), seed=2)
    labels = torch.tensor([[[3, 3], [3, 3]], [[255, 255], [1, 255]]])
    value = GSKDLoss(
        num_samples=8, valid_mask='labeled')(f_s, f_t,
                                             torch.randn(2, 4, 2, 2), labels)
    assert torch.isfinite(value) and value > 0


@pytest.mark.parametrize('group_size', [1, 3, 7, 16, -1, -2, -3])
def test_group_sizes_give_finite_positive_losses(group_size):
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (3, 16, 16))
    labels[0, :8] = 255
    value = GSKDLoss(
        group_size=group_size, valid_mask='labeled')(
            features(3, seed=1), features(3, seed=2), torch.randn(3, 5, 8, 8),
            labels)
    assert torch.isfinite(value) and value > 0


def test_ade20k_scale_many_classes():
    torch.manual_seed(0)
    labels = torch.randint(0, 150, (2, 32, 32))
    value = GSKDLoss(valid_mask='labeled')(
        features(2, 32, (32, 32), seed=1), features(2, 32, (32, 32), seed=2),
        torch.randn(2, 150, 32, 32), labels)
    assert torch.isfinite(value) and value > 0


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_inputs_match_float32(dtype):
    labels = torch.randint(0, 4, (2, 16, 16))
    f_s, f_t = features(2, seed=1), features(2, seed=2)
    logits = torch.randn(2, 4, 8, 8)
    loss = GSKDLoss(valid_mask='labeled')
    torch.manual_seed(0)
    reference = loss(f_s.to(dtype).float(), f_t.to(dtype).float(), logits,
                     labels)
    torch.manual_seed(0)
    value = loss(f_s.to(dtype), f_t.to(dtype), logits.to(dtype), labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference, rtol=1e-3, atol=1e-6)


def test_seed_makes_it_repeatable():
    labels = torch.randint(0, 4, (2, 16, 16))
    args = (features(2, seed=1), features(2, seed=2), torch.randn(2, 4, 8, 8),
            labels)
    loss = GSKDLoss(valid_mask='labeled', group_size=3)
    torch.manual_seed(7)
    first = loss(*args)
    torch.manual_seed(7)
    assert torch.equal(first, loss(*args))
    assert not torch.equal(first, loss(*args))


def sample(labels, num_samples, num_classes):
    """Run the loss's sampler on (N, P) labels, all labelled pixels."""
    valid = labels != 255
    counts = torch.stack([((labels == c) & valid).sum(1)
                          for c in range(num_classes)], 1)
    max_present = int((counts > 0).sum(1).max())
    return class_balanced_sample(labels, valid, counts, max_present,
                                 num_samples)


def test_sampling_is_class_balanced_with_fill():
    torch.manual_seed(0)
    n = 8
    # Image 0: class 0 x 40, class 1 x 3, class 4 x 20; image 1: class 2 x 5.
    labels = torch.full((2, 64), 255)
    labels[0, :40], labels[0, 40:43], labels[0, 43:63] = 0, 1, 4
    labels[1, 10:15] = 2
    index, rows_valid = sample(labels, n, 5)
    assert index.shape == (2, 3 * n)
    assert rows_valid[0].all() and rows_valid[1, :n].all()
    assert not rows_valid[1, n:].any()
    picked = labels.gather(1, index).view(2, 3, n)
    # Classes in ascending order; N own pixels, all distinct, if available.
    assert (picked[0, 0] == 0).all() and (picked[0, 2] == 4).all()
    assert len(set(index[0, :n].tolist())) == n
    # Class 1 keeps its 3 pixels and is filled with 5 distinct others.
    own = index[0, n:2 * n][picked[0, 1] == 1]
    assert sorted(own.tolist()) == [40, 41, 42]
    fill = index[0, n:2 * n][picked[0, 1] != 1]
    assert len(fill) == 5 and len(set(fill.tolist())) == 5
    assert all(labels[0, i] in (0, 4) for i in fill.tolist())
    # No other valid pixel: class 2 repeats its own 5 pixels.
    assert set(index[1, :n].tolist()) == set(range(10, 15))
    assert (picked[1, 0] == 2).all()


def test_sampling_is_uniform():
    # Class 0 has 6 pixels and N = 2: each is drawn with probability 1/3.
    # Class 1 has 1 pixel: its fill draws 1 of the 6 others uniformly.
    labels = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 255]])
    torch.manual_seed(0)
    draws = torch.stack([sample(labels, 2, 2)[0][0] for _ in range(3000)])
    own = torch.bincount(draws[:, :2].flatten(), minlength=8)[:6] / 3000
    fill = torch.bincount(draws[:, 3], minlength=8)[:6] / 3000
    assert (draws[:, 2] == 6).all()
    torch.testing.assert_close(own, torch.full((6, ), 1 / 3), atol=0.04,
                               rtol=0)
    torch.testing.assert_close(fill, torch.full((6, ), 1 / 6), atol=0.04,
                               rtol=0)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_samples=0), 'num_samples'),
    (dict(num_samples=2.5), 'num_samples'),
    (dict(group_size=0), 'group_size'),
    (dict(tau=0.0), 'tau'),
    (dict(tau=-1.0), 'tau'),
    (dict(valid_mask='all'), 'valid_mask'),
    (dict(tau='1'), 'tau'),
    (dict(normalize='flat'), "normalize must be one of .*'row'"),
    (dict(normalize=None), 'normalize'),
    (dict(exclude_diagonal='yes'), 'exclude_diagonal must be True or False'),
    (dict(exclude_diagonal=1), 'exclude_diagonal'),
])
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GSKDLoss(**kwargs)


def test_bad_inputs_are_rejected():
    loss = GSKDLoss()
    f, logits = features(2), torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    with pytest.raises(ValueError, match='preds_S .* preds_T'):
        loss(f, features(2, channels=8), logits, labels)
    with pytest.raises(ValueError, match='preds_S must be'):
        loss(f[0], f[0], logits, labels)
    with pytest.raises(ValueError, match='logits_T must be'):
        loss(f, f, logits[0], labels)
    with pytest.raises(TypeError, match='gt_labels must be an integer'):
        loss(f, f, logits, labels.float())
    with pytest.raises(ValueError, match='gt_labels must be'):
        loss(f, f, logits, labels[0])
    with pytest.raises(ValueError, match='batch size'):
        loss(f, f, logits[:1], labels)
    with pytest.raises(TypeError, match='preds_S must be a torch.Tensor'):
        loss(f.numpy(), f, logits, labels)
    with pytest.raises(ValueError, match='outside \\[0, 3\\)'):
        loss(f, f, logits, labels + 5)


# ------------------------------------------- agreement with the loop version
def test_loop_reference_agrees_when_deterministic():
    # Every present class has exactly N valid pixels and S = B: sampling
    # takes all of them and one group holds every column, so the shuffle
    # changes nothing and both implementations must give the same value.
    torch.manual_seed(0)
    n, k = 3, 6
    labels = exact_n_labels(3, (8, 8), [[0, 2, 5], [1, 3, 4], [0, 1, 2]], n)
    logits = one_hot_logits(labels, k)
    f_s, f_t = features(3, seed=1), features(3, seed=2)
    value = GSKDLoss(num_samples=n, group_size=3 * n)(f_s, f_t, logits,
                                                      labels)
    expected = loop_reference.gskd_loss_loop(
        f_s, f_t, logits, labels, num_samples=n, group_size=3 * n)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(value, full_matrix_kl(f_s, f_t, labels, 1.0))


@pytest.mark.parametrize('valid_mask', ['teacher_correct', 'labeled'])
def test_valid_mask_agrees_with_loop_reference(valid_mask):
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (3, 12, 16))
    labels[torch.rand(labels.shape) < 0.2] = 255
    # Logits at half the resolution, close to the labels: both resize.
    coarse = labels[:, ::2, ::2].clamp(max=4)
    logits = one_hot_logits(coarse, 5) + 3 * torch.randn(3, 5, 6, 8)
    torch.testing.assert_close(
        valid_pixel_mask(labels, logits, 255, valid_mask),
        loop_reference.valid_pixel_mask(labels, logits, 255, valid_mask))


@pytest.mark.parametrize('seed', range(6))
def test_sampling_counts_agree_with_loop_reference(seed):
    # Random class sizes around N: classes with more, as many and fewer
    # valid pixels than N, and images where the fill runs short.
    gen = torch.Generator().manual_seed(seed)
    n, num_classes = 6, 7
    labels = torch.randint(0, num_classes, (4, 6, 6), generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < 0.3] = 255
    labels[1, :, :5] = 255  # a few valid pixels only
    labels[2] = 255  # none
    logits = torch.randn(4, num_classes, 6, 6, generator=gen)
    valid = valid_pixel_mask(labels, logits, 255, 'labeled')
    flat, flat_valid = labels.flatten(1), valid.flatten(1)
    counts = class_counts(flat, flat_valid, num_classes)
    max_present = int((counts > 0).sum(1).max())
    torch.manual_seed(seed)
    index, rows_valid = class_balanced_sample(flat, flat_valid, counts,
                                              max_present, n)
    expected = loop_reference.sampling_counts(labels, valid, n)
    for i in range(len(labels)):
        real = index[i][rows_valid[i]]
        assert len(real) == n * len(expected[i])
        assert loop_reference.sample_composition(labels[i], valid[i], real,
                                                 n) == expected[i], i


def test_expected_loss_agrees_with_loop_reference():
    # Where sampling and shuffling are random, both implementations draw
    # from the same distribution: their mean losses over many draws agree
    # within a few standard errors.
    n, draws = 4, 300
    labels = torch.full((1, 8, 8), 255)
    flat = labels.view(-1)
    flat[:20], flat[20:23], flat[23:50] = 0, 1, 2  # 20, 3 (< N), 27 pixels
    labels = labels[:, torch.randperm(8)][:, :, torch.randperm(8)]
    f_s, f_t = features(1, seed=1), features(1, seed=2)
    logits = torch.randn(1, 3, 8, 8)
    loss = GSKDLoss(num_samples=n, group_size=-1, valid_mask='labeled')
    torch.manual_seed(0)
    fast = torch.stack([loss(f_s, f_t, logits, labels) for _ in range(draws)])
    slow = torch.stack([
        loop_reference.gskd_loss_loop(
            f_s, f_t, logits, labels, num_samples=n, valid_mask='labeled')
        for _ in range(draws)
    ])
    assert fast.std() > 0 and slow.std() > 0  # the draws do matter
    stderr = ((fast.var() + slow.var()) / draws).sqrt()
    assert (fast.mean() - slow.mean()).abs() < 4 * stderr


@pytest.mark.parametrize('in_size, out_size', [((64, 128), (8, 16)),
                                               ((97, 61), (13, 17)),
                                               ((512, 1024), (64, 128)),
                                               ((5, 7), (12, 9)),
                                               ((4, 4), (8, 8))])
def test_label_resize_picks_what_nearest_interpolation_picks(
        in_size, out_size):
    labels = torch.randint(0, 1000, (2, *in_size))
    expected = F.interpolate(
        labels[:, None].double(), size=out_size, mode='nearest')[:, 0]
    torch.testing.assert_close(
        resize_labels(labels, out_size), expected.long())


# ------------------------------------- normalize and exclude_diagonal options
def authors_descriptor_kl_terms(sim_S, sim_T, rows_valid, columns_valid,
                                tau):
    """The descriptor KL as the loss computed it before its options existed.

    A frozen copy: the defaults of ``GSKDLoss`` must stay this, bit for bit.
    """
    num_imgs, rows, _ = sim_S.shape
    max_groups, max_width = columns_valid.shape[1:]

    def group_major(sim):
        return sim.view(num_imgs, rows, max_groups, max_width).transpose(
            1, 2).reshape(num_imgs, max_groups, rows * max_width)

    mask = rows_valid[:, None, :, None] & columns_valid[:, :, None, :]
    mask = mask.reshape(num_imgs, max_groups, rows * max_width)
    floor = torch.finfo(torch.float32).min
    log_p_S = F.log_softmax(
        (group_major(sim_S) / tau).masked_fill(~mask, floor), dim=2)
    log_p_T = F.log_softmax(
        (group_major(sim_T) / tau).masked_fill(~mask, floor), dim=2)
    kl = torch.where(mask, log_p_T.exp() * (log_p_T - log_p_S), 0.0).sum(2)
    return kl * tau**2 / mask.sum(2).clamp(min=1)


def authors_loss(loss, f_s, f_t, logits, labels):
    """The loss before its options: the same draws, the frozen KL and mean."""
    steps = loss.descriptors(f_s, f_t, logits, labels)
    terms = loss.loss_weight * authors_descriptor_kl_terms(
        steps.shuffled_S, steps.shuffled_T, steps.rows_valid,
        steps.columns_valid, loss.tau)
    per_img = terms.sum(1) / steps.groups_per_img.clamp(min=1)
    img_valid = steps.num_present > 0
    return (per_img * img_valid).sum() / img_valid.sum()


def padded_batch(seed=0, size=(8, 8), channels=8):
    """Four images with 3, 1 and 2 classes and one with no valid pixel."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (4, 2 * size[0], 2 * size[1]),
                           generator=gen)
    labels[1] = 2
    labels[2][labels[2] == 0] = 255
    labels[3] = 255
    labels[torch.rand(labels.shape, generator=gen) < 0.1] = 255
    f_s = torch.randn(4, channels, *size, generator=gen)
    f_t = torch.randn(4, channels, *size, generator=gen)
    return f_s, f_t, torch.randn(4, 3, *size, generator=gen), labels


@pytest.mark.parametrize('num_imgs, channels, size, num_classes, group_size, '
                         'tau', [(2, 16, (8, 8), 4, -1, 1.0),
                                 (3, 8, (12, 10), 7, 3, 4.0),
                                 (1, 32, (16, 16), 3, -2, 0.5),
                                 (4, 16, (8, 8), 19, 1, 1.0)])
def test_defaults_are_the_authors_loss_bit_for_bit(num_imgs, channels, size,
                                                   num_classes, group_size,
                                                   tau):
    gen = torch.Generator().manual_seed(num_classes)
    f_s = torch.randn(num_imgs, channels, *size, generator=gen)
    f_t = torch.randn(num_imgs, channels, *size, generator=gen)
    logits = torch.randn(num_imgs, num_classes, *size, generator=gen)
    labels = torch.randint(0, num_classes, (num_imgs, 2 * size[0],
                                            2 * size[1]), generator=gen)
    labels[0, :size[0]] = 255
    loss = GSKDLoss(group_size=group_size, tau=tau, loss_weight=10.0,
                    valid_mask='labeled')
    results = []
    for compute in (loss, lambda *args: authors_loss(loss, *args)):
        x = f_s.clone().requires_grad_()
        torch.manual_seed(3)
        value = compute(x, f_t, logits, labels)
        value.backward()
        results.append((value.detach(), x.grad))
    (value, grad), (expected, expected_grad) = results
    assert value > 0
    assert torch.equal(value, expected)
    assert torch.equal(grad, expected_grad)


def draws_of(steps):
    """The vectorised loss's draws, per image, for the loop reference."""
    draws = []
    for i, rows_valid in enumerate(steps.rows_valid):
        num_points = int(rows_valid.sum())  # real rows come first
        if num_points == 0:
            draws.append(None)
            continue
        real_columns = steps.columns_valid[i].flatten()
        perms = steps.columns[i, :num_points][:, real_columns]
        draws.append((steps.index[i, :num_points], perms))
    return draws


def loss_and_loop(loss, f_s, f_t, logits, labels, seed=0):
    """Loss and loop reference on the same draws: values and gradients."""
    torch.manual_seed(seed)
    steps = loss.descriptors(f_s, f_t, logits, labels)
    x = f_s.clone().requires_grad_()
    torch.manual_seed(seed)
    value = loss(x, f_t, logits, labels)
    value.backward()
    y = f_s.clone().requires_grad_()
    expected = loss.loss_weight * loop_reference.gskd_loss_loop(
        y, f_t, logits, labels,
        num_samples=loss.num_samples,
        group_size=loss.group_size,
        tau=loss.tau,
        valid_mask=loss.valid_mask,
        normalize=loss.normalize,
        exclude_diagonal=loss.exclude_diagonal,
        draws=draws_of(steps))
    expected.backward()
    return (value, x.grad), (expected, y.grad)


@pytest.mark.parametrize('group_size', [-1, -2, 3, 1])
@pytest.mark.parametrize('tau', [1.0, 0.1])
@pytest.mark.parametrize('exclude_diagonal', [False, True])
@pytest.mark.parametrize('normalize', ['length', 'descriptor', 'row'])
def test_options_agree_with_loop_reference(normalize, exclude_diagonal, tau,
                                           group_size):
    loss = GSKDLoss(num_samples=3, group_size=group_size, tau=tau,
                    loss_weight=2.0, valid_mask='labeled',
                    normalize=normalize, exclude_diagonal=exclude_diagonal)
    (value, grad), (expected, expected_grad) = loss_and_loop(
        loss, *padded_batch())
    if not (normalize == 'row' and group_size == 1):
        assert value > 0  # a row of one entry has nothing to compare
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        grad, expected_grad, rtol=1e-4,
        atol=1e-5 * expected_grad.abs().max().item())
    assert grad[3].abs().sum() == 0  # the image with no valid pixel


@pytest.mark.parametrize('exclude_diagonal', [False, True])
@pytest.mark.parametrize('normalize', ['length', 'descriptor', 'row'])
def test_options_under_autocast_are_float32_of_rounded_inputs(
        normalize, exclude_diagonal):
    f_s, f_t, logits, labels = padded_batch(size=(16, 16), channels=32)
    loss = GSKDLoss(num_samples=4, group_size=3, tau=0.1,
                    valid_mask='labeled', normalize=normalize,
                    exclude_diagonal=exclude_diagonal)
    torch.manual_seed(0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = loss(f_s.bfloat16(), f_t.bfloat16(), logits.bfloat16(),
                     labels)
    torch.manual_seed(0)
    expected = loss(f_s.bfloat16().float(), f_t.bfloat16().float(),
                    logits.bfloat16().float(), labels)
    assert value.dtype == torch.float32
    assert torch.equal(value, expected)


def full_matrix_row_kl(f_s, f_t, labels, tau, exclude_diagonal):
    """'row' GSKD with one group of all B columns: every row of the whole
    similarity map against the teacher's (the shuffle only reorders a
    row's entries; the order of the rows does not change their mean)."""
    per_img = []
    for fs, ft, lab in zip(f_s, f_t, labels):
        idx = torch.nonzero(lab.flatten() != 255).squeeze(1)
        vs = F.normalize(fs.flatten(1)[:, idx].t(), dim=1)
        vt = F.normalize(ft.flatten(1)[:, idx].t(), dim=1)
        ds, dt = vs @ vs.t(), vt @ vt.t()
        if exclude_diagonal:
            off = ~torch.eye(len(idx), dtype=torch.bool)
            ds, dt = ds[off].view(len(idx), -1), dt[off].view(len(idx), -1)
        kl = F.kl_div(
            F.log_softmax(ds / tau, 1),
            F.log_softmax(dt / tau, 1),
            log_target=True,
            reduction='none').sum(1)
        per_img.append(kl.mean() * tau**2)
    return torch.stack(per_img).mean()


@pytest.mark.parametrize('exclude_diagonal', [False, True])
@pytest.mark.parametrize('tau', [1.0, 0.1])
def test_row_normalization_with_groups_at_least_b(tau, exclude_diagonal):
    torch.manual_seed(0)
    n = 3
    labels = exact_n_labels(2, (8, 8), [[0, 2, 3], [1, 4]], n)
    f_s, f_t = features(2, seed=1), features(2, seed=2)
    loss = GSKDLoss(num_samples=n, group_size=10**6, tau=tau,
                    normalize='row', exclude_diagonal=exclude_diagonal)
    value = loss(f_s, f_t, one_hot_logits(labels, 5), labels)
    expected = full_matrix_row_kl(f_s, f_t, labels, tau, exclude_diagonal)
    assert value > 0
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)


def test_descriptor_normalization_is_length_times_entries():
    torch.manual_seed(0)
    n = 3
    labels = exact_n_labels(2, (8, 8), [[0, 2, 3], [1, 4]], n)
    args = (features(2, seed=1), features(2, seed=2),
            one_hot_logits(labels, 5), labels)
    length = GSKDLoss(num_samples=n, group_size=10**6)(*args)
    flat = GSKDLoss(num_samples=n, group_size=10**6,
                    normalize='descriptor')(*args)
    # One descriptor per image, of B * B entries: 81 and 36.
    expected = (81 * length_of(args, n, 0) + 36 * length_of(args, n, 1)) / 2
    torch.testing.assert_close(flat, expected)
    torch.testing.assert_close(length, (length_of(args, n, 0) +
                                        length_of(args, n, 1)) / 2)


def length_of(args, n, img):
    """The authors' loss of image ``img`` alone (one descriptor)."""
    return GSKDLoss(num_samples=n, group_size=10**6)(
        *(a[img:img + 1] for a in args))


def test_exclude_diagonal_with_single_columns():
    # S = 1: every group is one column per row; each row loses its only
    # entry in exactly the one group that holds its diagonal.
    f_s, f_t, logits, labels = padded_batch(seed=1)
    loss = GSKDLoss(num_samples=3, group_size=1, valid_mask='labeled',
                    exclude_diagonal=True)
    torch.manual_seed(0)
    steps = loss.descriptors(f_s, f_t, logits, labels)
    real = steps.rows_valid[:, :, None] & steps.columns_valid.flatten(
        1)[:, None, :]
    diagonal = (real & ~steps.off_diagonal).sum(2)
    assert torch.equal(diagonal, steps.rows_valid.long())
    for normalize in ('length', 'descriptor'):
        loss.normalize = normalize
        (value, grad), (expected, expected_grad) = loss_and_loop(
            loss, f_s, f_t, logits, labels)
        assert value > 0
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)
    # Rows of one entry compare nothing: zero, not NaN, still in the graph.
    loss.normalize = 'row'
    x = f_s.clone().requires_grad_()
    value = loss(x, f_t, logits, labels)
    value.backward()
    assert value == 0 and torch.equal(x.grad, torch.zeros_like(x))


def test_descriptor_of_only_the_diagonal_does_not_count():
    # One sample per image (one class, N = 1): its one descriptor is its
    # diagonal entry. Without it, the image has nothing to compare and
    # leaves the mean; with no image left the loss is zero in the graph.
    f_s, f_t = features(2, seed=1), features(2, seed=2)
    labels = torch.full((2, 8, 8), 255)
    labels[0, :4] = 1
    labels[1] = 0
    labels[1, 0, 0], labels[1, 0, 1] = 1, 2
    logits = torch.randn(2, 3, 8, 8)
    for normalize in ('length', 'descriptor', 'row'):
        loss = GSKDLoss(num_samples=1, valid_mask='labeled',
                        normalize=normalize, exclude_diagonal=True)
        torch.manual_seed(0)
        steps = loss.descriptors(f_s, f_t, logits, labels)
        assert not steps.descriptor_valid[0].any()
        assert steps.descriptor_valid[1].all()
        (value, grad), (expected, expected_grad) = loss_and_loop(
            loss, f_s, f_t, logits, labels)
        assert value > 0  # image 1: B = 3, rows of 2 entries
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)
        assert grad[0].abs().sum() == 0
        x = f_s[:1].clone().requires_grad_()
        alone = loss(x, f_t[:1], logits[:1], labels[:1])
        alone.backward()
        assert alone == 0 and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize('exclude_diagonal', [False, True])
@pytest.mark.parametrize('normalize', ['length', 'descriptor', 'row'])
def test_descriptor_terms_average_to_the_loss_with_options(
        normalize, exclude_diagonal):
    # The visualiser (gskd_mm.apis.gskd_view) shows descriptor_losses and
    # reduce's mean as the loss: they must be the loss for every option.
    f_s, f_t, logits, labels = padded_batch(seed=2)
    loss = GSKDLoss(num_samples=3, group_size=2, tau=0.1, loss_weight=3.0,
                    valid_mask='labeled', normalize=normalize,
                    exclude_diagonal=exclude_diagonal)
    torch.manual_seed(5)
    expected = loss(f_s, f_t, logits, labels)
    torch.manual_seed(5)
    steps = loss.descriptors(f_s, f_t, logits, labels)
    terms = loss.descriptor_losses(steps)
    assert terms.shape == steps.columns_valid.shape[:2]
    assert (terms >= 0).all() and (terms[~steps.descriptor_valid] == 0).all()
    assert torch.equal(loss.reduce(terms, steps), expected)


def test_descriptor_kl_terms_rejects_unknown_normalization():
    mask = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match='normalize must be one of'):
        descriptor_kl_terms(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), mask,
                            torch.ones(1, 1, 2, dtype=torch.bool), 1.0,
                            normalize='rows')


def load_toy():
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools',
                    'analysis_tools', 'gskd_toy.py')
    spec = importlib.util.spec_from_file_location('gskd_toy', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_matches_step0_gradient_norms():
    toy = load_toy()
    configs = [toy.CONFIGS[0], next(c for c in toy.CONFIGS
                                    if c[0] == toy.TARGET)]
    rows = toy.run_toy([0], weight=10.0, steps=2, configs=configs)
    by_kind = {(r['name'], r['weighting']): r for r in rows}
    target = by_kind[(toy.TARGET, 'common')]['grad0'][0] / 10.0
    for name, *_ in configs:
        assert by_kind[(name, 'common')]['weight'] == [10.0]
        matched = by_kind[(name, 'matched')]
        assert matched['grad0'][0] == pytest.approx(target, rel=1e-4)
        # Two steps of GSKD alone bring the structure closer.
        assert matched['gap_change'][0] < 0
    assert '| authors (length, diag in, T 1) | 10 |' in toy.toy_table(
        rows)
    with pytest.raises(ValueError, match='must include'):
        toy.run_toy([0], steps=1, configs=configs[:1])
