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
memory during the timed steps over what it held before them (inputs, and
the queue of a memory term): ``gskd_mm.analysis.PeakMemory``.

The mini-batch term is also timed as it was computed before it worked in
blocks (``minibatch_pixel_loss_dense``: all pairs in one map).

Example::

    python tools/analysis_tools/benchmark_cirkd.py --batch 2 --repeats 3
    python tools/analysis_tools/benchmark_cirkd.py --batch 4 --crop 256 512 \
        --terms minibatch
"""
import argparse
import json
from typing import Tuple

import torch
from mmengine.logging import print_log

from gskd_mm.analysis import run_measurement
from gskd_mm.testing.loss_benchmark import CIRKD_CROP as CROP
from gskd_mm.testing.loss_benchmark import CIRKD_TERMS as TERMS
from gskd_mm.testing.loss_benchmark import time_cirkd_term
from gskd_mm.utils.cli import check_crop, check_positive


def run_isolated(term: str, variant: str, batch: int, repeats: int,
                 crop: Tuple[int, int] = CROP) -> dict:
    """Measure one variant in a fresh process."""
    return run_measurement([
        __file__, '--batch', batch, '--repeats', repeats, '--crop', crop[0],
        crop[1], '--only', f'{term}:{variant}'
    ])


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
    check_crop(args.crop)
    check_positive(args, ('batch', 'repeats'))

    if args.only:  # child process of run_isolated
        term, variant = args.only.split(':')
        print(json.dumps(
            time_cirkd_term(term, variant, args.batch, args.repeats,
                            tuple(args.crop))))
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
