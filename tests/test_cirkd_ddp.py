# Copyright (c) gskd-mm contributors. All rights reserved.
"""CIRKD's memory under DDP (two CPU processes, gloo).

Every rank's teacher keys are gathered into the queues, which stay
identical on every rank step after step, with no buffer broadcast, also
when the ranks hold different numbers of images.
"""
import os

import pytest
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from gskd_mm.models import (CIRKDMemoryPixelLoss, CIRKDMemoryRegionLoss,
                            GSKDProjector)
from gskd_mm.testing.cirkd_loop_reference import LoopMemory

from helpers import spawn_with_deadline

WORLD_SIZE = 2
STEPS = 3
TIMEOUT = 300  # seconds for the workers
NUM_CLASSES, CHANNELS = 4, 16


class Distiller(nn.Module):
    """A one-layer student, its projector and the two memory terms."""

    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Conv2d(3, 8, 3, padding=1)
        self.projector = GSKDProjector(8, CHANNELS, norm_cfg=dict(type='BN'))
        # Small queues, so that they wrap around within the test; every
        # labelled pixel is enqueued (update_size above any class count),
        # so the expected queues do not depend on random draws.
        self.pixel = CIRKDMemoryPixelLoss(
            NUM_CLASSES, CHANNELS, memory_size=40, contrast_size=64,
            update_size=64)
        self.region = CIRKDMemoryRegionLoss(
            NUM_CLASSES, CHANNELS, memory_size=3, contrast_size=8)

    def forward(self, images, teacher_feat, labels):
        projected = self.projector(self.student(images))
        return (self.pixel(projected, teacher_feat, labels) +
                self.region(projected, teacher_feat, labels))


def rank_batch(rank: int, step: int):
    """Each rank's own images, labels and teacher features at a step.

    Rank 1 has one image more at step 1 (as at the end of an epoch).
    """
    gen = torch.Generator().manual_seed(100 * step + rank)
    num = 3 if (rank, step) == (1, 1) else 2
    images = torch.randn(num, 3, 8, 8, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (num, 8, 8), generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < 0.2] = 255
    teacher_feat = torch.randn(num, CHANNELS, 8, 8, generator=gen)
    return images, teacher_feat, labels


def worker(rank: int, out: str) -> None:
    torch.manual_seed(rank)  # different draws on each rank
    # No buffer broadcast: the queues must agree by themselves.
    model = DistributedDataParallel(Distiller(), broadcast_buffers=False)
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    states = []
    for step in range(STEPS):
        optim.zero_grad()
        model(*rank_batch(rank, step)).backward()
        optim.step()
        states.append({
            k: v.clone()
            for k, v in model.module.state_dict().items()
            if 'queue' in k
        })
    torch.save(states, os.path.join(out, f'rank{rank}.pth'))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_queues_gather_every_rank_and_stay_identical(tmp_path):
    spawn_with_deadline(
        worker, (str(tmp_path), ), nprocs=WORLD_SIZE, timeout=TIMEOUT)
    ranks = [torch.load(tmp_path / f'rank{r}.pth') for r in range(WORLD_SIZE)]

    # One process, loop version: every step enqueues rank 0's batch, then
    # rank 1's, into queues that start where the module's start.
    initial = Distiller()
    pixel = LoopMemory(initial.pixel.queue, initial.pixel.queue_ptr)
    region = LoopMemory(initial.region.queue, initial.region.queue_ptr)
    for step in range(STEPS):
        for rank in range(WORLD_SIZE):
            _, teacher_feat, labels = rank_batch(rank, step)
            pixel.enqueue_pixels(teacher_feat, labels, update_size=64)
            region.enqueue_regions(teacher_feat, labels)
        for rank, states in enumerate(ranks):
            state = states[step]
            # Bit-identical across ranks, not merely close.
            assert torch.equal(state['pixel.queue'],
                               ranks[0][step]['pixel.queue']), (rank, step)
            assert torch.equal(state['region.queue'],
                               ranks[0][step]['region.queue']), (rank, step)
            torch.testing.assert_close(state['pixel.queue'], pixel.queue)
            torch.testing.assert_close(state['region.queue'], region.queue)
            assert state['pixel.queue_ptr'].tolist() == pixel.queue_ptr
            assert state['region.queue_ptr'].tolist() == region.queue_ptr
    # The queues took in keys (they are not their initial random vectors).
    assert not torch.equal(ranks[0][-1]['pixel.queue'], initial.pixel.queue)
