# Copyright (c) gskd-mm contributors. All rights reserved.
"""Timing the distillation losses against their loop references.

The library of ``tools/analysis_tools/benchmark_gskd.py`` (GSKD's loss) and
``benchmark_cirkd.py`` (the CIRKD terms): their inputs at Cityscapes and
ADE20K scale, the step of each variant, and :func:`time_forward_backward`,
which times any of them and measures its peak memory
(:class:`~gskd_mm.analysis.measure.PeakMemory`). The loop references are
beside it in :mod:`gskd_mm.testing`.
"""
import time
from statistics import median
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F

from ..analysis.measure import PeakMemory

#: GSKD's scales: name -> (classes in the dataset, classes per image).
GSKD_SCALES = {
    'cityscapes': (19, 16),
    'ade20k': (150, 24),
}
#: The CIRKD terms timed.
CIRKD_TERMS = ('kd', 'minibatch', 'memory_pixel', 'memory_region')
#: Classes of the CIRKD inputs (Cityscapes).
CIRKD_CLASSES = 19
#: The CIRKD inputs' crop (Cityscapes' training crop).
CIRKD_CROP = (512, 1024)


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA); a no-op on a CPU."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def time_forward_backward(step: Callable[[], torch.Tensor],
                          grad_input: torch.Tensor,
                          repeats: int,
                          device: str = 'cpu') -> dict:
    """Median forward and forward + backward seconds of a loss, and the peak
    memory of its steps.

    Args:
        step (Callable): Computes the loss (its forward).
        grad_input (Tensor): The input whose gradient the backward fills;
            reset before each step.
        repeats (int): Timed steps, after one warm-up step.
        device (str): The torch device. Defaults to ``'cpu'``.

    Returns:
        dict: ``seconds`` (forward + backward), ``forward_seconds`` and
        ``peak_mb``: the memory the steps added to what the process held
        before them (:attr:`PeakMemory.growth_mb`).
    """
    forward, total = [], []
    with PeakMemory(device) as memory:
        for i in range(repeats + 1):  # the first run warms up
            torch.manual_seed(i)
            grad_input.grad = None
            sync(device)
            start = time.perf_counter()
            value = step()
            sync(device)
            forward.append(time.perf_counter() - start)
            value.backward()
            sync(device)
            total.append(time.perf_counter() - start)
            del value
    return dict(
        seconds=median(total[1:]),
        forward_seconds=median(forward[1:]),
        peak_mb=memory.growth_mb)


# ------------------------------------------------------------------ GSKD
def gskd_inputs(scale: str,
                device: str,
                batch: int = 8,
                channels: int = 512,
                size=(64, 128),
                seed: int = 0) -> Dict[str, torch.Tensor]:
    """Segmentation-like inputs of GSKD's loss: blocky label maps, a mostly
    right teacher.

    Args:
        scale (str): Key of :data:`GSKD_SCALES`.
        device (str): Torch device.
        batch (int): Images. Defaults to 8.
        channels (int): Feature channels. Defaults to 512.
        size (tuple): Feature (h, w); labels are 8x larger (stride 8).
        seed (int): Seed of the content.

    Returns:
        dict: ``preds_S`` (requires grad), ``preds_T``, ``logits_T``,
        ``gt_labels``.
    """
    num_classes, per_image = GSKD_SCALES[scale]
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    # Each image: a few of the classes, on a coarse grid of regions.
    cells = torch.stack([
        torch.randperm(num_classes, generator=gen)[:per_image][torch.randint(
            0, per_image, (h // 4, w // 4), generator=gen)]
        for _ in range(batch)
    ])
    labels = F.interpolate(
        cells[:, None].float(), size=(8 * h, 8 * w), mode='nearest')
    labels = labels[:, 0].long()
    labels[torch.rand(labels.shape, generator=gen) < 0.05] = 255
    teacher_pred = F.interpolate(
        cells[:, None].float(), size=size, mode='nearest')[:, 0].long()
    wrong = torch.rand(teacher_pred.shape, generator=gen) < 0.2
    teacher_pred[wrong] = torch.randint(
        0, num_classes, (int(wrong.sum()), ), generator=gen)
    logits = F.one_hot(teacher_pred, num_classes).permute(0, 3, 1, 2) * 5.0
    logits = logits + torch.randn(logits.shape, generator=gen)
    return dict(
        preds_S=torch.randn(batch, channels, h, w, generator=gen).to(
            device).requires_grad_(),
        preds_T=torch.randn(batch, channels, h, w, generator=gen).to(device),
        logits_T=logits.to(device),
        gt_labels=labels.to(device))


def gskd_loss_fn(variant: str) -> Callable:
    """GSKD's loss (N = 8, S = -1): ``vectorised`` or ``loop``."""
    if variant == 'vectorised':
        from ..models.losses import GSKDLoss
        return GSKDLoss(num_samples=8, group_size=-1, tau=1.0)
    from .loop_reference import gskd_loss_loop
    return lambda *args: gskd_loss_loop(
        *args, num_samples=8, group_size=-1, tau=1.0)


def time_gskd_loss(variant: str, scale: str, device: str,
                   repeats: int) -> dict:
    """:func:`time_forward_backward` of GSKD's loss at ``scale``."""
    inputs = gskd_inputs(scale, device)
    loss = gskd_loss_fn(variant)
    return time_forward_backward(lambda: loss(*inputs.values()),
                                 inputs['preds_S'], repeats, device)


def time_student(device: str, repeats: int, batch: int = 8) -> float:
    """Median forward + backward seconds of a DeepLabV3-R18 student at
    512 x 1024 (the cost GSKD's loss is added to).

    Args:
        device (str): Torch device.
        repeats (int): Timed steps, after one warm-up step.
        batch (int): Images. Defaults to 8.

    Returns:
        float: The median seconds.
    """
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg: Config = get_config(
        'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    cfg.model.pretrained = None
    cfg.model.backbone.norm_cfg = cfg.model.decode_head.norm_cfg = \
        cfg.model.auxiliary_head.norm_cfg = dict(type='BN')
    cfg.model.data_preprocessor = cfg.data_preprocessor
    model = MODELS.build(cfg.model).to(device).train()
    images = torch.randn(batch, 3, 512, 1024, device=device)
    labels = torch.randint(0, 19, (batch, 1, 512, 1024), device=device)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = [
        SegDataSample(
            gt_sem_seg=PixelData(data=label),
            metainfo=dict(img_shape=(512, 1024), pad_shape=(512, 1024)))
        for label in labels
    ]
    times = []
    for _ in range(repeats + 1):
        model.zero_grad()
        sync(device)
        start = time.perf_counter()
        losses = model(images, samples, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        sync(device)
        times.append(time.perf_counter() - start)
    return median(times[1:])


# ----------------------------------------------------------------- CIRKD
def cirkd_inputs(batch: int,
                 seed: int = 0,
                 crop: Tuple[int, int] = CIRKD_CROP
                 ) -> Dict[str, torch.Tensor]:
    """Cityscapes-like features, logits and blocky labels at stride 8."""
    gen = torch.Generator().manual_seed(seed)
    h, w = crop[0] // 8, crop[1] // 8
    cells = torch.randint(0, CIRKD_CLASSES, (batch, 1, h // 4, w // 4),
                          generator=gen).float()
    labels = F.interpolate(
        cells, size=(8 * h, 8 * w), mode='nearest')[:, 0].long()
    labels[torch.rand(labels.shape, generator=gen) < 0.05] = 255
    return dict(
        feat_S=torch.randn(batch, 128, h, w, generator=gen),
        proj_S=torch.randn(batch, 512, h, w, generator=gen),
        feat_T=torch.randn(batch, 512, h, w, generator=gen),
        logits_S=torch.randn(batch, CIRKD_CLASSES, h, w, generator=gen),
        logits_T=torch.randn(batch, CIRKD_CLASSES, h, w, generator=gen),
        labels=labels)


def cirkd_step(term: str, variant: str,
               inputs: Dict[str, torch.Tensor]) -> Callable:
    """A callable running one step of a CIRKD ``term``: returns the loss.

    Args:
        term (str): One of :data:`CIRKD_TERMS`.
        variant (str): ``vectorised``, ``loop`` or, of ``minibatch``,
            ``dense`` (all pairs in one map, as before blocks).
        inputs (dict): :func:`cirkd_inputs`.

    Returns:
        Callable: The step.
    """
    from ..models import losses
    from . import cirkd_loop_reference as loop
    x = inputs
    if term == 'kd':
        if variant == 'vectorised':
            module = losses.PixelWiseKDLoss()
            return lambda: module(x['logits_S'], x['logits_T'])
        return lambda: loop.pixel_kd_loss_loop(x['logits_S'], x['logits_T'])
    if term == 'minibatch':
        if variant == 'vectorised':
            module = losses.CIRKDMiniBatchPixelLoss()
            return lambda: module(x['feat_S'], x['feat_T'])
        if variant == 'dense':
            return lambda: loop.minibatch_pixel_loss_dense(
                x['feat_S'], x['feat_T'])
        return lambda: loop.minibatch_pixel_loss_loop(x['feat_S'],
                                                      x['feat_T'])
    if term == 'memory_pixel':
        module = losses.CIRKDMemoryPixelLoss(CIRKD_CLASSES, 512)
    else:
        module = losses.CIRKDMemoryRegionLoss(CIRKD_CLASSES, 512)
    if variant == 'vectorised':
        return lambda: module(x['proj_S'], x['feat_T'], x['labels'])
    return _memory_loop_step(term, module, x)


def _memory_loop_step(term: str, module: torch.nn.Module,
                      x: Dict[str, torch.Tensor]) -> Callable:
    """The loop version of a memory term's step, on ``module``'s queue."""
    from . import cirkd_loop_reference as loop
    memory = loop.LoopMemory(module.queue, module.queue_ptr)
    del module.queue  # only the loop's copy stays
    size = memory.queue.shape[1]
    contrast = 4096 if term == 'memory_pixel' else 1024
    per_class = min(contrast // CIRKD_CLASSES + 1, size)  # as the module

    def loop_step() -> torch.Tensor:
        if term == 'memory_pixel':
            memory.enqueue_pixels(x['feat_T'], x['labels'], 16)
        else:
            memory.enqueue_regions(x['feat_T'], x['labels'])
        keys = memory.keys(torch.randperm(size)[:per_class])
        return loop.memory_loss_loop(x['proj_S'], x['feat_T'], x['labels'],
                                     keys)

    return loop_step


def time_cirkd_term(term: str,
                    variant: str,
                    batch: int,
                    repeats: int,
                    crop: Tuple[int, int] = CIRKD_CROP) -> dict:
    """:func:`time_forward_backward` of a CIRKD term on a CPU."""
    inputs = cirkd_inputs(batch, crop=crop)
    grad_key = {'kd': 'logits_S', 'minibatch': 'feat_S'}.get(term, 'proj_S')
    inputs[grad_key].requires_grad_()
    step = cirkd_step(term, variant, inputs)
    return time_forward_backward(step, inputs[grad_key], repeats)
