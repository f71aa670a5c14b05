# Copyright (c) gskd-mm contributors. All rights reserved.
"""Mixed precision on the CPU: every loss and connector, and real recipes.

``torch.autocast('cpu')`` with float16 and bfloat16, as MMEngine's
``AmpOptimWrapper`` runs a step on a GPU (that wrapper refuses to start
without CUDA; ``tests/test_cuda.py`` runs it there). Tolerances:

* a loss of the project computes in float32 under autocast, so on
  half-precision inputs it equals its float32 value on the same (upcast)
  inputs to float32 rounding (``rtol=1e-5``);
* against float32 inputs, it differs only by the rounding of its inputs
  (``rtol=2e-2``);
* a whole distillation step of a recipe under autocast gives every loss
  term within 5 % of the float32 step (the networks run in half precision
  there).
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmrazor.models.losses import ChannelWiseDivergence
from mmrazor.registry import MODELS

from gskd_mm.models.losses import (Float32ChannelWiseDivergence, GSKDLoss,
                                   PixelWiseDISTLoss)
from gskd_mm.testing import generated_batch

from helpers import num_classes_of, shrink_recipe


DTYPES = [torch.float16, torch.bfloat16]
CONFIG_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'gskd')
RECIPES = [
    'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py',
    'cwd-gskd_deeplabv3_r101-d8_mobilenet-v2-d8_deeplabv3_'
    '4xb2-80k_cityscapes-512x1024.py',
]


def seg_inputs(seed=0, num_imgs=2, channels=32, size=(16, 16), classes=6):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (num_imgs, 8 * size[0], 8 * size[1]),
                           generator=gen)
    return dict(
        feat_S=torch.randn(num_imgs, channels, *size, generator=gen),
        feat_T=torch.randn(num_imgs, channels, *size, generator=gen),
        logits_S=3 * torch.randn(num_imgs, classes, *size, generator=gen),
        logits_T=3 * torch.randn(num_imgs, classes, *size, generator=gen),
        labels=labels)


LOSSES = {
    'GSKDLoss': (lambda: GSKDLoss(valid_mask='labeled'),
                 lambda x: (x['feat_S'], x['feat_T'], x['logits_T'],
                            x['labels'])),
    'PixelWiseDISTLoss': (lambda: PixelWiseDISTLoss(tau=1.0),
                          lambda x: (x['logits_S'], x['logits_T'])),
    'Float32ChannelWiseDivergence':
    (lambda: Float32ChannelWiseDivergence(tau=4.0),
     lambda x: (x['logits_S'], x['logits_T'])),
}


def run_loss(name, inputs, dtype=None, autocast=None):
    """The loss (and its gradient) on inputs rounded to ``dtype``."""
    make, args_of = LOSSES[name]
    args = [
        a.to(dtype) if dtype is not None and a.is_floating_point() else a
        for a in args_of(inputs)
    ]
    args[0].requires_grad_()
    torch.manual_seed(0)  # GSKD samples the same points every time
    with torch.autocast('cpu', dtype=autocast or torch.bfloat16,
                        enabled=autocast is not None):
        value = make()(*args)
    value.backward()
    return value, args[0].grad


@pytest.mark.parametrize('name', list(LOSSES))
@pytest.mark.parametrize('dtype', DTYPES)
def test_our_losses_compute_in_float32_under_autocast(name, dtype):
    inputs = seg_inputs()
    value, grad = run_loss(name, inputs, dtype, autocast=dtype)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert grad.dtype == dtype and torch.isfinite(grad).all()
    # Same (rounded) inputs upcast, no autocast: the same float32 maths.
    rounded = {k: v.to(dtype).float() if v.is_floating_point() else v
               for k, v in inputs.items()}
    exact, exact_grad = run_loss(name, rounded)
    torch.testing.assert_close(value, exact, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        grad.float(), exact_grad.to(dtype).float(), rtol=1e-2,
        atol=1e-2 * exact_grad.abs().max().item())
    # Against unrounded inputs: only the inputs' rounding.
    reference, _ = run_loss(name, inputs)
    torch.testing.assert_close(value, reference, rtol=2e-2, atol=1e-6)


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_float32_cwd_is_mmrazors_cwd(tau):
    # The recipes' CWD: MMRazor's loss, only in float32 under autocast.
    x = seg_inputs()
    ours = Float32ChannelWiseDivergence(tau=tau, loss_weight=3.0)
    theirs = ChannelWiseDivergence(tau=tau, loss_weight=3.0)
    assert torch.equal(ours(x['feat_S'], x['feat_T']),
                       theirs(x['feat_S'], x['feat_T']))
    with pytest.raises(ValueError, match='same batch size and channels'):
        ours(x['feat_S'], x['feat_T'][:, :8])


@pytest.mark.parametrize('dtype', DTYPES)
def test_connectors_under_autocast(dtype):
    init_default_scope('mmrazor')
    x = torch.randn(2, 16, 8, 8)
    for cfg in (dict(type='GSKDProjector', in_channels=16, out_channels=32,
                     norm_cfg=dict(type='BN')),
                dict(type='ConvModuleConnector', in_channel=16,
                     out_channel=32, norm_cfg=None, act_cfg=None)):
        connector = MODELS.build(cfg).train()
        reference = copy.deepcopy(connector)(x)
        with torch.autocast('cpu', dtype=dtype):
            out = connector(x)
        assert out.shape == reference.shape
        assert torch.isfinite(out).all()
        torch.testing.assert_close(
            out.float(), reference, rtol=5e-2,
            atol=5e-2 * reference.abs().max().item())


@pytest.mark.slow
@pytest.mark.parametrize('name', RECIPES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_recipe_step_under_autocast_matches_float32(name, dtype):
    cfg = shrink_recipe(Config.fromfile(osp.join(CONFIG_DIR, name)))
    for loss_cfg in cfg.model.distiller.distill_losses.values():
        if loss_cfg.type == 'GSKDLoss':
            # An untrained teacher's argmax may flip under rounding, and
            # with it the sampled points; sample every labelled pixel.
            loss_cfg.valid_mask = 'labeled'
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).train()
    batch = generated_batch(2, (64, 64), num_classes_of(cfg))
    losses = {}
    for precision in ('fp32', dtype):
        copy_ = copy.deepcopy(model)
        # The recipe's optimizers (two with adversarial distillation).
        optim = build_optim_wrapper(copy_, copy.deepcopy(cfg.optim_wrapper))
        torch.manual_seed(1)
        with torch.autocast('cpu', dtype=dtype, enabled=precision is dtype):
            losses[precision] = copy_.train_step(batch, optim)
    ref, amp = losses['fp32'], losses[dtype]
    assert set(amp) == set(ref)
    assert {f'distill.{k}' for k in cfg.model.distiller.distill_losses} \
        <= set(amp)
    # Adversarial terms are weight x means of discriminator scores that
    # nearly cancel at initialisation; a rounded student moves them by a
    # small share of their weight, not of their value.
    adversarial = {
        'distill.loss_adv_g': cfg.model.get('generator_loss'),
        'distill.loss_adv_d': cfg.model.get('discriminator_loss')
    }
    for key, value in amp.items():
        assert torch.isfinite(value), (key, value)
        if key in adversarial:
            weight = adversarial[key].loss_weight
            assert abs(float(value) - float(ref[key])) <= 0.25 * weight, (
                key, float(value), float(ref[key]))
        elif 'loss' in key:  # not acc_seg: an untrained net's argmax flips
            torch.testing.assert_close(
                value.float(), ref[key], rtol=5e-2, atol=1e-4, msg=key)
