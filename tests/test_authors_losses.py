# Copyright (c) gskd-mm contributors. All rights reserved.
"""The recipes' CWD and per-pixel KD equal the authors' definitions.

The references below are written from the authors' losses
(``code/CIRKD/losses/cwd.py`` as CIRKD's ``CriterionCWD`` with
``norm_type='channel', divergence='kl'``, and ``code/CIRKD/losses/kd.py``),
step by step as they compute them.
"""
import pytest
import torch
import torch.nn.functional as F

from gskd_mm.models.losses import (Float32ChannelWiseDivergence,
                                   PixelWiseKDLoss)


def authors_cwd(preds_S, preds_T, temperature):
    """Per channel a softmax over the pixels, ``KLDivLoss(reduction='sum')``
    of the log of the student's softmax, / (N * C), * T^2."""
    n, c, h, w = preds_S.shape
    norm_s = (preds_S / temperature).reshape(n, c, -1).softmax(dim=-1)
    norm_t = (preds_T / temperature).reshape(n, c, -1).softmax(dim=-1)
    loss = torch.nn.KLDivLoss(reduction='sum')(norm_s.log(), norm_t)
    return loss / (n * c) * temperature**2


def authors_kd(pred, soft, temperature):
    """Pixels as rows, ``kl_div(..., reduction='batchmean') * T^2``."""
    _, c, _, _ = soft.shape
    scale_pred = pred.permute(0, 2, 3, 1).contiguous().view(-1, c)
    scale_soft = soft.permute(0, 2, 3, 1).contiguous().view(-1, c)
    p_s = F.log_softmax(scale_pred / temperature, dim=1)
    p_t = F.softmax(scale_soft / temperature, dim=1)
    return F.kl_div(p_s, p_t, reduction='batchmean') * temperature**2


@pytest.mark.parametrize('shape', [(2, 19, 16, 32), (3, 512, 8, 8)])
@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_mmrazor_cwd_with_tau_is_the_authors_cwd(shape, tau):
    torch.manual_seed(0)
    preds_S, preds_T = torch.randn(shape) * 3, torch.randn(shape) * 3
    ours = Float32ChannelWiseDivergence(tau=tau, loss_weight=1.0)
    expected = authors_cwd(preds_S.double(), preds_T.double(), tau)
    assert torch.allclose(ours(preds_S, preds_T).double(), expected,
                          rtol=1e-5)
    if tau != 1.0:  # the temperature matters: MMRazor's default differs
        default = Float32ChannelWiseDivergence()
        assert not torch.allclose(default(preds_S, preds_T).double(),
                                  expected, rtol=1e-2)


@pytest.mark.parametrize('tau', [1.0, 2.0])
def test_pixel_wise_kd_is_the_authors_kd(tau):
    torch.manual_seed(0)
    logits_S, logits_T = torch.randn(2, 19, 8, 16), torch.randn(2, 19, 8, 16)
    ours = PixelWiseKDLoss(tau=tau)
    assert torch.allclose(
        ours(logits_S, logits_T).double(),
        authors_kd(logits_S.double(), logits_T.double(), tau),
        rtol=1e-5)
