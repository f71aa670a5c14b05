# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time what GradientShareBalancerHook adds to training.

For each setting, training steps of a balanced recipe on one batch,
alternately plain and measured by the balancer (its per-term gradients and
its update, what it does on every ``interval``-th iteration), each in the
same process; the first step is a warm-up. It prints the median plain and
measured step, the measurement alone, and the mean overhead of a run at the
hook's default interval: ``(measured - plain) / (interval * plain)``.

The settings (``--settings``):

- ``demo``: the CPU demo's DIST + GSKD-row-t1 balanced (64x64 synthetic
  scenes, batch 4, the demo's networks untrained);
- ``cityscapes``: ``configs/gskd/dist-gskd-row-t1-bal_*`` (DeepLabV3 R101 ->
  R18) offline at ``--crop`` (default 256 x 512) on generated
  Cityscapes-format data, batch 2.

Example::

    python tools/analysis_tools/benchmark_balancer.py
    python tools/analysis_tools/benchmark_balancer.py --settings demo \\
        --steps 20 --out balancer.json
"""
import argparse
import dataclasses
import json
import os.path as osp
import tempfile

from mmengine.config import Config
from mmengine.logging import print_log

from gskd_mm.analysis import offline_recipe
from gskd_mm.analysis.step_benchmark import load_recipe, time_measured_steps
from gskd_mm.engine import GradientShareBalancerHook
from gskd_mm.testing import generated_batch, make_cityscapes
from gskd_mm.utils import register_all_modules
from gskd_mm.utils.cli import check_crop, check_positive

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CITYSCAPES = osp.join(
    REPO, 'configs', 'gskd', 'dist-gskd-row-t1-bal_deeplabv3_r101-d8_'
    'deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py')
DEMO = osp.join(
    REPO, 'projects', 'gskd_demo', 'configs',
    'dist-gskd_deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py')
# The demo's balanced variant: GSKD-row-t1 (projects/gskd_demo, methods.py).
ROW_T1 = dict(normalize='row', exclude_diagonal=True, tau=1.0,
              loss_weight=6.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--settings',
        nargs='+',
        default=['demo', 'cityscapes'],
        choices=['demo', 'cityscapes'])
    parser.add_argument(
        '--steps',
        type=int,
        default=None,
        help='timed steps of each kind (default: 20 on the demo, 3 at the '
        'Cityscapes crop)')
    parser.add_argument(
        '--crop',
        nargs=2,
        type=int,
        default=[256, 512],
        metavar=('H', 'W'),
        help='Cityscapes crop')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', help='write the results as JSON')
    args = parser.parse_args()
    check_crop(args.crop)
    check_positive(args, ('steps', ))
    return args


def demo_setting() -> tuple:
    """The demo's balanced DIST recipe and a batch of its size."""
    cfg = offline_recipe(Config.fromfile(DEMO), None)
    cfg.model.distiller.distill_losses.loss_gskd.update(
        ROW_T1, valid_mask='labeled')  # the untrained teacher is never right
    return cfg, generated_batch(4, (64, 64), 7, rng=0)


def cityscapes_setting(root: str, crop) -> tuple:
    """The balanced Cityscapes DIST recipe offline, at ``crop``."""
    data = make_cityscapes(root, num_train=2, num_val=0, size=(512, 1024))
    cfg = load_recipe(CITYSCAPES, data, 2, tuple(crop))
    return cfg, None


def main() -> None:
    args = parse_args()
    register_all_modules(init_default_scope=False)
    interval = GradientShareBalancerHook(dict(loss_gskd=1.0)).interval
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            if setting == 'demo':
                cfg, batch = demo_setting()
                steps = args.steps or 20
            else:
                cfg, batch = cityscapes_setting(
                    osp.join(tmp, 'cityscapes'), args.crop)
                steps = args.steps or 3
            hook = GradientShareBalancerHook(dict(loss_gskd=1.0), interval=1)
            timing = time_measured_steps(cfg, hook, steps, args.device, batch)
            times = dict(
                dataclasses.asdict(timing),
                overhead_at_default_interval=timing.overhead(interval),
                steps=steps,
                interval=interval)
            results[setting] = times
            print_log(
                f'{setting}: plain step {times["plain"]:.3f} s, measured '
                f'step {times["measured"]:.3f} s (measurement '
                f'{times["measurement"]:.3f} s), mean overhead at interval '
                f'{interval}: '
                f'{100 * times["overhead_at_default_interval"]:.2f} % '
                f'({steps} steps of each kind)',
                logger='current')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
