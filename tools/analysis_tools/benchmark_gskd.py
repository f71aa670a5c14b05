# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time GSKDLoss against the loop version of the same method.

Forward + backward of the loss at Cityscapes scale (batch 8, 512 channels,
64 x 128 features, 19 classes) and ADE20K scale (150 classes), N = 8,
S = -1, for the vectorised ``GSKDLoss`` and for the loop-over-images,
classes and groups reference (``gskd_mm.testing.loop_reference``), plus
each variant's peak memory over its inputs, measured in a fresh process
(``gskd_mm.analysis.PeakMemory``). With ``--student``
it also times a DeepLabV3-R18 student's forward + backward at the same batch
(512 x 1024 crops), the cost GSKD is added to.

Example::

    python tools/analysis_tools/benchmark_gskd.py --repeats 5 --student
"""
import argparse
import json

import torch
from mmengine.logging import print_log

from gskd_mm.analysis import run_measurement
from gskd_mm.testing.loss_benchmark import GSKD_SCALES as SCALES
from gskd_mm.testing.loss_benchmark import time_gskd_loss, time_student
from gskd_mm.utils.cli import check_positive


def run_isolated(args: argparse.Namespace, variant: str, scale: str) -> dict:
    """Measure one variant in a fresh process, so peak memory is its own."""
    return run_measurement([
        __file__, '--device', args.device, '--repeats', args.repeats,
        '--only', f'{variant}:{scale}'
    ])


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
    check_positive(args, ('repeats', 'loop_repeats'))

    if args.only:  # child process of run_isolated
        variant, scale = args.only.split(':')
        print(json.dumps(
            time_gskd_loss(variant, scale, args.device, args.repeats)))
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
