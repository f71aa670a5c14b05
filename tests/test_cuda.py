# Copyright (c) gskd-mm contributors. All rights reserved.
"""The GPU path: the loss on CUDA, CUDA autocast and an AMP training step.

Every test here needs a CUDA GPU and skips, saying so, without one
(``tools/gpu_check.sh`` runs them on a GPU machine).
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import (AmpOptimWrapper, OptimWrapperDict,
                            build_optim_wrapper)
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS

from gskd_mm.engine import enable_amp
from gskd_mm.models.losses import GSKDLoss
from gskd_mm.testing import generated_batch

from helpers import num_classes_of, shrink_recipe


pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA GPU')

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'gskd')
RECIPES = [
    'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py',
    'cwd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb2-80k_cityscapes-512x1024.py',
]


def loss_inputs(seed=0, num_imgs=2, channels=64, size=(16, 32), classes=19):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (num_imgs, 8 * size[0], 8 * size[1]),
                           generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < 0.1] = 255
    return dict(
        preds_S=torch.randn(num_imgs, channels, *size, generator=gen),
        preds_T=torch.randn(num_imgs, channels, *size, generator=gen),
        logits_T=torch.randn(num_imgs, classes, *size, generator=gen),
        gt_labels=labels)


def distinct_rand(seed):
    """``torch.rand`` drawn on the CPU from ``seed``, then moved.

    Distinct values (a scaled permutation), so that sorting them gives the
    same order on every device: the loss then samples the same points and
    shuffles the same columns on CPU and CUDA.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(*size, device=None, **kwargs):
        shape = size[0] if len(size) == 1 and not isinstance(
            size[0], int) else size
        numel = int(torch.Size(shape).numel())
        values = torch.randperm(numel, generator=gen).float() / numel
        return values.view(shape).to(device)

    return rand


def gskd_on(device, inputs, monkeypatch):
    monkeypatch.setattr(torch, 'rand', distinct_rand(0))
    preds_S = inputs['preds_S'].to(device).requires_grad_()
    others = {k: v.to(device) for k, v in inputs.items() if k != 'preds_S'}
    value = GSKDLoss(valid_mask='labeled', group_size=-1)(preds_S, **others)
    value.backward()
    return value.detach().cpu(), preds_S.grad.cpu()


def test_loss_on_cuda_equals_cpu_for_the_same_points(monkeypatch):
    inputs = loss_inputs()
    cpu_value, cpu_grad = gskd_on('cpu', inputs, monkeypatch)
    cuda_value, cuda_grad = gskd_on('cuda', inputs, monkeypatch)
    assert cpu_value > 0
    torch.testing.assert_close(cuda_value, cpu_value, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        cuda_grad, cpu_grad, rtol=1e-4, atol=1e-5 * cpu_grad.abs().max())


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_loss_forward_backward_under_cuda_autocast(dtype):
    inputs = {k: v.cuda() for k, v in loss_inputs().items()}
    conv = torch.nn.Conv2d(64, 64, 1).cuda()
    loss = GSKDLoss(valid_mask='labeled')
    values = {}
    for precision in ('fp32', dtype):
        conv.zero_grad()
        torch.manual_seed(0)
        with torch.autocast('cuda', dtype=dtype,
                            enabled=precision is dtype):
            preds_S = conv(inputs['preds_S'])
            value = loss(preds_S, inputs['preds_T'], inputs['logits_T'],
                         inputs['gt_labels'])
        assert value.dtype == torch.float32
        value.backward()
        values[precision] = (value.detach(), conv.weight.grad.clone())
    (ref, ref_grad), (amp, amp_grad) = values['fp32'], values[dtype]
    assert torch.isfinite(amp) and torch.isfinite(amp_grad).all()
    # Only the conv's output is rounded to half precision.
    torch.testing.assert_close(amp, ref, rtol=2e-2, atol=1e-6)
    torch.testing.assert_close(amp_grad, ref_grad, rtol=5e-2, atol=1e-4)


@pytest.mark.parametrize('name', RECIPES)
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_recipe_step_with_amp_optim_wrapper(name, dtype):
    cfg = shrink_recipe(Config.fromfile(osp.join(CONFIG_DIR, name)),
                        crop=(128, 256))
    for loss_cfg in cfg.model.distiller.distill_losses.values():
        if loss_cfg.type == 'GSKDLoss':
            loss_cfg.valid_mask = 'labeled'  # an untrained teacher
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).cuda().train()
    # The recipe's optimizers (two with adversarial distillation), AMP as
    # `tools/train.py --amp` sets it up.
    enable_amp(cfg, dtype=dtype)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    wrappers = optim.values() if isinstance(optim, OptimWrapperDict) \
        else [optim]
    assert all(isinstance(w, AmpOptimWrapper) and
               w.cast_dtype == getattr(torch, dtype) for w in wrappers)
    before = {k: p.detach().clone() for k, p in model.named_parameters()
              if p.requires_grad}
    batch = generated_batch(2, (128, 256), num_classes_of(cfg))
    # The dynamic loss scale may skip a first step whose half-precision
    # gradients overflow; it halves and goes on, as in training.
    for _ in range(3):
        losses = model.train_step(batch, optim)
        assert {f'distill.{k}'
                for k in cfg.model.distiller.distill_losses} <= set(losses)
        assert all(torch.isfinite(v) for v in losses.values()), losses
    moved = [k for k, p in model.named_parameters() if k in before
             and not torch.equal(before[k], p.detach())]
    assert any(k.startswith('architecture.') for k in moved)
    assert any(k.startswith('distiller.') for k in moved)
    assert not any(k.startswith('teacher.') for k in moved)
