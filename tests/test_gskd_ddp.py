# Copyright (c) gskd-mm contributors. All rights reserved.
"""GSKD under DDP (two CPU processes, gloo): gradients reach the student."""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from gskd_mm.models import GSKDLoss, GSKDProjector

from helpers import spawn_with_deadline

WORLD_SIZE = 2
TIMEOUT = 300  # seconds for the workers


class Student(nn.Module):
    """A one-layer 'network' and the GSKD projector, trained together."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, padding=1)
        self.classifier = nn.Conv2d(8, 4, 1)
        self.projector = GSKDProjector(8, 16, norm_cfg=dict(type='BN'))

    def forward(self, images: torch.Tensor):
        feat = self.backbone(images)
        return self.classifier(feat), self.projector(feat)


def rank_batch(rank: int):
    """Each rank's own images, labels and teacher outputs."""
    gen = torch.Generator().manual_seed(1000 + rank)
    images = torch.randn(2, 3, 8, 8, generator=gen)
    labels = torch.randint(0, 4, (2, 8, 8), generator=gen)
    teacher_feat = torch.randn(2, 16, 8, 8, generator=gen)
    teacher_logits = torch.randn(2, 4, 8, 8, generator=gen)
    return images, labels, teacher_feat, teacher_logits


def step_loss(model: nn.Module, rank: int, with_gskd: bool) -> torch.Tensor:
    images, labels, teacher_feat, teacher_logits = rank_batch(rank)
    logits, projected = model(images)  # through DDP's forward when wrapped
    loss = F.cross_entropy(logits, labels)
    gskd = GSKDLoss(num_samples=4, loss_weight=10.0, valid_mask='labeled')
    torch.manual_seed(50 + rank)  # the sampling draws of this rank
    term = gskd(projected, teacher_feat, teacher_logits, labels)
    return loss + term if with_gskd else loss + 0 * term


def grads(model: nn.Module):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def worker(rank: int, out: str) -> None:
    results = {}
    for with_gskd in (False, True):
        torch.manual_seed(0)  # identical initial weights on both ranks
        model = DistributedDataParallel(Student())
        step_loss(model, rank, with_gskd).backward()
        results[with_gskd] = {
            n.replace('module.', ''): g
            for n, g in grads(model).items()
        }
    torch.save(results, os.path.join(out, f'rank{rank}.pth'))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_gskd_changes_student_gradients_on_every_rank(tmp_path):
    spawn_with_deadline(
        worker, (str(tmp_path), ), nprocs=WORLD_SIZE, timeout=TIMEOUT)
    ranks = [torch.load(tmp_path / f'rank{r}.pth') for r in range(WORLD_SIZE)]

    # What each rank computes alone on its own images, then averaged: DDP
    # must give exactly that (no gather, no lost gradient).
    local = []
    for rank in range(WORLD_SIZE):
        torch.manual_seed(0)
        model = Student()
        step_loss(model, rank, with_gskd=True).backward()
        local.append(grads(model))

    for rank, result in enumerate(ranks):
        without, with_gskd = result[False], result[True]
        for name in ('backbone.weight', 'projector.hidden.conv.weight',
                     'projector.out.conv.weight'):
            assert with_gskd[name].abs().sum() > 0, (rank, name)
            assert not torch.allclose(with_gskd[name], without[name]), (
                rank, name)
        for name, grad in with_gskd.items():
            expected = sum(g[name] for g in local) / WORLD_SIZE
            torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
