# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time the CIRKD terms against their loop versions, at Cityscapes scale.

Forward + backward of each term on one rank's batch of Cityscapes-scale
inputs (512 x 1024 crops: 64 x 128 features at stride 8, 19 classes, a
512-channel teacher, a 128-channel DeepLabV3-R18 student for the
mini-batch term), for the vectorised losses of ``gskd_mm.models.losses``
and the loop versions of ``gskd_mm.testing.cirkd_loop_reference`` (loops
over images, image pairs and classes; keys enqueued one at a time). The
memory terms run at the authors' sizes (20000 pixels / 2000 regions per
class, 4096 / 1024 keys contrasted, 16 pixels enqueued per class and
image); their time includes the enqueue. Each variant runs in a fresh
process; its peak memory is the largest growth of the process's resident
memory during the timed steps (polled every millisecond), over what it held
before them (inputs, and the queue of a memory term).

The mini-batch term is also timed as it was computed before it worked in
blocks (``minibatch_pixel_loss_dense``: all pairs in one map).

Example::

    python tools/analysis_tools/benchmark_cirkd.py --batch 2 --repeats 3
    python tools/analysis_tools/benchmark_cirkd.py --batch 4 --crop 256 512 \
        --terms minibatch
"""
import argparse
import json
import subprocess
import sys
import threading
import time
from statistics import median
from typing import Callable, Dict, Tuple

import torch
from mmengine.logging import print_log

TERMS = ('kd', 'minibatch', 'memory_pixel', 'memory_region')
NUM_CLASSES = 19
CROP = (512, 1024)
# Seconds one isolated measurement may take before its process is killed
# (subprocess.TimeoutExpired): a hung measurement fails the run.
MEASUREMENT_TIMEOUT = 3600


def rss_mb() -> float:
    """Current resident memory of this process, in MB."""
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 2**20


class PeakRSS:
    """Poll the resident memory in a thread; ``peak`` is the largest."""

    def __enter__(self) -> 'PeakRSS':
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def make_inputs(batch: int,
                seed: int = 0,
                crop: Tuple[int, int] = CROP) -> Dict[str, torch.Tensor]:
    """Cityscapes-like features, logits and blocky labels at stride 8."""
    gen = torch.Generator().manual_seed(seed)
    h, w = crop[0] // 8, crop[1] // 8
    cells = torch.randint(0, NUM_CLASSES, (batch, 1, h // 4, w // 4),
                          generator=gen).float()
    labels = torch.nn.functional.interpolate(
        cells, size=(8 * h, 8 * w), mode='nearest')[:, 0].long()
    labels[torch.rand(labels.shape, generator=gen) < 0.05] = 255
    return dict(
        feat_S=torch.randn(batch, 128, h, w, generator=gen),
        proj_S=torch.randn(batch, 512, h, w, generator=gen),
        feat_T=torch.randn(batch, 512, h, w, generator=gen),
        logits_S=torch.randn(batch, NUM_CLASSES, h, w, generator=gen),
        logits_T=torch.randn(batch, NUM_CLASSES, h, w, generator=gen),
        labels=labels)


def step_fn(term: str, variant: str,
            inputs: Dict[str, torch.Tensor]) -> Callable:
    """A callable running one step of ``term``: returns the loss."""
    from gskd_mm.models import losses
    from gskd_mm.testing import cirkd_loop_reference as loop
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
        module = losses.CIRKDMemoryPixelLoss(NUM_CLASSES, 512)
    else:
        module = losses.CIRKDMemoryRegionLoss(NUM_CLASSES, 512)
    if variant == 'vectorised':
        return lambda: module(x['proj_S'], x['feat_T'], x['labels'])
    memory = loop.LoopMemory(module.queue, module.queue_ptr)
    del module.queue  # only the loop's copy stays
    size = memory.queue.shape[1]
    contrast = 4096 if term == 'memory_pixel' else 1024
    per_class = min(contrast // NUM_CLASSES + 1, size)  # as the module

    def loop_step() -> torch.Tensor:
        if term == 'memory_pixel':
            memory.enqueue_pixels(x['feat_T'], x['labels'], 16)
        else:
            memory.enqueue_regions(x['feat_T'], x['labels'])
        keys = memory.keys(torch.randperm(size)[:per_class])
        return loop.memory_loss_loop(x['proj_S'], x['feat_T'], x['labels'],
                                     keys)

    return loop_step


def time_term(term: str, variant: str, batch: int, repeats: int,
              crop: Tuple[int, int] = CROP) -> dict:
    """Median forward and forward + backward seconds, peak memory."""
    inputs = make_inputs(batch, crop=crop)
    grad_key = {'kd': 'logits_S', 'minibatch': 'feat_S'}.get(term, 'proj_S')
    inputs[grad_key].requires_grad_()
    step = step_fn(term, variant, inputs)
    forward, total = [], []
    with PeakRSS() as memory:
        for i in range(repeats + 1):  # the first run warms up
            torch.manual_seed(i)
            inputs[grad_key].grad = None
            start = time.perf_counter()
            value = step()
            forward.append(time.perf_counter() - start)
            value.backward()
            total.append(time.perf_counter() - start)
            del value
    return dict(
        seconds=median(total[1:]),
        forward_seconds=median(forward[1:]),
        peak_mb=memory.peak - memory.start)


def run_isolated(term: str, variant: str, batch: int, repeats: int,
                 crop: Tuple[int, int] = CROP) -> dict:
    """Measure one variant in a fresh process."""
    out = subprocess.run([
        sys.executable, __file__, '--batch',
        str(batch), '--repeats',
        str(repeats), '--crop',
        str(crop[0]),
        str(crop[1]), '--only', f'{term}:{variant}'
    ],
                         capture_output=True,
                         text=True,
                         check=True,
                         timeout=MEASUREMENT_TIMEOUT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--batch', type=int, default=2, help='images of one rank')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument(
        '--terms', nargs='+', default=list(TERMS), choices=TERMS)
    parser.add_argument(
        '--crop',
        type=int,
        nargs=2,
        default=list(CROP),
        metavar=('H', 'W'),
        help='image crop; features are at stride 8 (default: Cityscapes '
        "training crop 512 1024)")
    parser.add_argument('--only', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.only:  # child process of run_isolated
        term, variant = args.only.split(':')
        print(json.dumps(time_term(term, variant, args.batch,
                                   args.repeats, tuple(args.crop))))
        return
    crop = tuple(args.crop)

    rows = []
    for term in args.terms:
        fast = run_isolated(term, 'vectorised', args.batch, args.repeats,
                            crop)
        slow = run_isolated(term, 'loop', args.batch, args.repeats, crop)
        rows.append((term, fast, slow))
        print_log(
            f'{term}: vectorised {fast["seconds"] * 1e3:.1f} ms, loop '
            f'{slow["seconds"] * 1e3:.1f} ms', logger='current')
        if term == 'minibatch':
            # All pairs in one map, as the term was computed before blocks.
            dense = run_isolated(term, 'dense', args.batch, args.repeats,
                                 crop)
            rows.append(('minibatch, all pairs at once', dense, slow))
    print(f'\nCIRKD terms, batch {args.batch}, crop {crop[0]} x {crop[1]} '
          f'({crop[0] // 8} x {crop[1] // 8} features, 19 classes), CPU, '
          f'{torch.get_num_threads()} threads; median ms\n')
    print('| term | fwd | loop fwd | fwd + bwd | loop fwd + bwd | speed-up '
          '| peak MB | loop peak MB |')
    print('|---' * 8 + '|')
    for term, fast, slow in rows:
        print(f'| {term} | {fast["forward_seconds"] * 1e3:.1f} | '
              f'{slow["forward_seconds"] * 1e3:.1f} | '
              f'{fast["seconds"] * 1e3:.1f} | {slow["seconds"] * 1e3:.1f} | '
              f'{slow["seconds"] / fast["seconds"]:.1f}x | '
              f'{fast["peak_mb"]:.0f} | {slow["peak_mb"]:.0f} |')


if __name__ == '__main__':
    main()
