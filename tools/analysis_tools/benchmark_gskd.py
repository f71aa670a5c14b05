# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time GSKDLoss against the loop version of the same method.

Forward + backward of the loss at Cityscapes scale (batch 8, 512 channels,
64 x 128 features, 19 classes) and ADE20K scale (150 classes), N = 8,
S = -1, for the vectorised ``GSKDLoss`` and for the loop-over-images,
classes and groups reference (``gskd_mm.testing.loop_reference``), plus
each variant's peak memory, measured in a fresh process. With ``--student``
it also times a DeepLabV3-R18 student's forward + backward at the same batch
(512 x 1024 crops), the cost GSKD is added to.

Example::

    python tools/analysis_tools/benchmark_gskd.py --repeats 5 --student
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from statistics import median
from typing import Dict

import torch
import torch.nn.functional as F
from mmengine.logging import print_log

SCALES = {
    # name: (classes in the dataset, classes present per image)
    'cityscapes': (19, 16),
    'ade20k': (150, 24),
}
# Seconds one isolated measurement may take before its process is killed
# (subprocess.TimeoutExpired): a hung measurement fails the run.
MEASUREMENT_TIMEOUT = 3600


def make_inputs(scale: str, device: str, batch: int = 8, channels: int = 512,
                size=(64, 128), seed: int = 0) -> Dict[str, torch.Tensor]:
    """Segmentation-like inputs: blocky label maps, a mostly right teacher.

    Args:
        scale (str): Key of ``SCALES``.
        device (str): Torch device.
        batch (int): Images. Defaults to 8.
        channels (int): Feature channels. Defaults to 512.
        size (tuple): Feature (h, w); labels are 8x larger (stride 8).
        seed (int): Seed of the content.

    Returns:
        dict: ``preds_S`` (requires grad), ``preds_T``, ``logits_T``,
        ``gt_labels``.
    """
    num_classes, per_image = SCALES[scale]
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


def loss_fn(variant: str):
    """The loss of a variant: ``vectorised`` or ``loop``."""
    if variant == 'vectorised':
        from gskd_mm.models.losses import GSKDLoss
        return GSKDLoss(num_samples=8, group_size=-1, tau=1.0)
    from gskd_mm.testing.loop_reference import gskd_loss_loop
    return lambda *args: gskd_loss_loop(
        *args, num_samples=8, group_size=-1, tau=1.0)


def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_loss(variant: str, scale: str, device: str, repeats: int) -> dict:
    """Median forward and forward + backward seconds, peak memory."""
    inputs = make_inputs(scale, device)
    loss = loss_fn(variant)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    forward, total = [], []
    for i in range(repeats + 1):  # the first run warms up
        torch.manual_seed(i)
        inputs['preds_S'].grad = None
        sync(device)
        start = time.perf_counter()
        value = loss(*inputs.values())
        sync(device)
        forward.append(time.perf_counter() - start)
        value.backward()
        sync(device)
        total.append(time.perf_counter() - start)
    if device.startswith('cuda'):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:  # growth of the process's peak RSS over the inputs
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss -
                   rss_before) / 1024
    return dict(
        seconds=median(total[1:]),
        forward_seconds=median(forward[1:]),
        peak_mb=peak_mb)


def time_student(device: str, repeats: int, batch: int = 8) -> float:
    """Median forward + backward seconds of DeepLabV3-R18 on 512x1024."""
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


def run_isolated(args: argparse.Namespace, variant: str, scale: str) -> dict:
    """Measure one variant in a fresh process, so peak memory is its own."""
    out = subprocess.run([
        sys.executable, __file__, '--device', args.device, '--repeats',
        str(args.repeats), '--only', f'{variant}:{scale}'
    ],
                         capture_output=True,
                         text=True,
                         check=True,
                         timeout=MEASUREMENT_TIMEOUT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument(
        '--loop-repeats',
        type=int,
        default=3,
        help='repeats of the (slow) loop version')
    parser.add_argument(
        '--student',
        action='store_true',
        help='also time a DeepLabV3-R18 student step (slow on a CPU)')
    parser.add_argument('--only', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.only:  # child process of run_isolated
        variant, scale = args.only.split(':')
        print(json.dumps(time_loss(variant, scale, args.device,
                                   args.repeats)))
        return

    rows = []
    for scale in SCALES:
        fast = run_isolated(args, 'vectorised', scale)
        loop_args = argparse.Namespace(**{
            **vars(args), 'repeats': args.loop_repeats
        })
        slow = run_isolated(loop_args, 'loop', scale)
        rows.append((scale, fast, slow))
        print_log(
            f'{scale}: vectorised {fast["seconds"] * 1e3:.1f} ms, loop '
            f'{slow["seconds"] * 1e3:.1f} ms', logger='current')

    student = time_student(args.device, 1) if args.student else None
    print(f'\nGSKD loss, batch 8, 512 x 64 x 128 features, N = 8, S = -1, '
          f'device {args.device} ({torch.get_num_threads()} threads); '
          'median ms of forward and of forward + backward\n')
    print('| scale | classes (present/image) | vectorised fwd | loop fwd '
          '| vectorised fwd+bwd | loop fwd+bwd | speed-up (fwd+bwd) '
          '| peak MB vectorised | peak MB loop |' +
          (' share of R18 step |' if student else ''))
    print('|---' * 9 + '|' + ('---|' if student else ''))
    for scale, fast, slow in rows:
        classes, present = SCALES[scale]
        share = (f' {100 * fast["seconds"] / student:.2f}% |'
                 if student else '')
        print(f'| {scale} | {classes} ({present}) | '
              f'{fast["forward_seconds"] * 1e3:.1f} | '
              f'{slow["forward_seconds"] * 1e3:.1f} | '
              f'{fast["seconds"] * 1e3:.1f} | {slow["seconds"] * 1e3:.1f} | '
              f'{slow["seconds"] / fast["seconds"]:.1f}x | '
              f'{fast["peak_mb"]:.0f} | {slow["peak_mb"]:.0f} |' + share)
    if student:
        print(f'\nDeepLabV3-R18 student forward + backward, batch 8 at '
              f'512 x 1024: {student:.1f} s')


if __name__ == '__main__':
    main()
