# Copyright (c) gskd-mm contributors. All rights reserved.
"""How hard every loss term of a recipe pulls on the student.

For every loss term of a training step (the student's losses and every
distillation loss), the L2 norm of its gradient over the student's
parameters, its share of the task loss's (the decode head's cross-entropy)
and its gradient norm over each connector (:mod:`gskd_mm.analysis`). A term
whose share is under about 1 % barely steers the student (see
docs/en/user_guides/loss_gradients.md).

It runs on the recipe's training data when its ``data_root`` exists (or is
None: the dataset's own default, e.g. the demo's), and on generated data of
the recipe's crop and classes otherwise (scenes of a few large regions,
:func:`gskd_mm.testing.generated_batch`). Without ``--checkpoint`` the
networks are untrained, unless the recipe's ``teacher_ckpt`` is a file that
exists (it is never downloaded). Shares measured on untrained networks or
generated data only indicate: what counts is the share in the first
iterations of your own run (``LossGradientHook``, or the balancer,
``GradientShareBalancerHook``).

Example::

    python tools/analysis_tools/loss_gradients.py \\
        configs/gskd/dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py \\
        --crop 256 512 --batch 2 --cfg-options \\
        model.distiller.distill_losses.loss_gskd.valid_mask=labeled
"""  # noqa: E501
import argparse
import itertools
import os.path as osp
import time
from dataclasses import dataclass
from typing import Iterator, List

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, set_random_seed

from gskd_mm.analysis import (OfflineDistiller, TermGradients,
                              average_gradients, build_offline_distiller,
                              discriminator_stages, gradient_table,
                              loss_terms, offline_recipe, percent,
                              recipe_crop, term_gradient_norms,
                              weights_for_share)
from gskd_mm.models.losses import GSKDLoss
from gskd_mm.testing import generated_batch
from gskd_mm.utils.cli import (check_checkpoint, check_crop,
                               check_distillation_recipe, load_config)

INDICATIVE = (
    'shares depend on both (the task loss\'s gradient on generated labels '
    'says little about real ones). The measurement that counts is the share '
    'in the first iterations of your own run: LossGradientHook, or '
    'GradientShareBalancerHook, which also holds it at a target '
    '(docs/en/user_guides/loss_gradients.md).')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Gradient norm of every loss term of a distillation '
        'recipe, and its share of the task loss\'s.')
    parser.add_argument('config', help='distillation config')
    parser.add_argument(
        '--checkpoint',
        help='checkpoint of that distiller (default: '
        'untrained networks, or the recipe\'s teacher_ckpt if it exists)')
    parser.add_argument('--crop', type=int, nargs=2, metavar=('H', 'W'),
                        help='training crop (default: the recipe\'s)')
    parser.add_argument('--batch', type=int, default=2,
                        help='images per batch')
    parser.add_argument('--iters', type=int, default=1,
                        help='batches to average over')
    parser.add_argument('--reference', default='decode.loss_ce',
                        help='the term the shares are relative to')
    parser.add_argument(
        '--target-share', type=float, default=None,
        help='also print, for every distillation term, the loss_weight '
        'that would give it this share (percent) of the reference '
        "term's gradient")
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--device',
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, e.g. '
        'model.distiller.distill_losses.loss_gskd.valid_mask=labeled')
    args = parser.parse_args()
    for name in ('batch', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1')
    check_crop(args.crop)
    check_checkpoint(args.checkpoint)
    return args


@dataclass
class Batches:
    """Where the measured batches come from."""
    batches: Iterator[dict]
    description: str
    generated: bool


def batches(cfg: Config, args: argparse.Namespace, crop) -> Batches:
    """The recipe's training batches if its data exist, else generated."""
    data_root = cfg.train_dataloader.dataset.get('data_root')
    # No data_root: the dataset class has its own (the demo's generates its
    # data into the gskd-mm cache).
    if data_root is None or osp.isdir(osp.expanduser(data_root)):
        loader_cfg = cfg.train_dataloader.copy()
        loader_cfg.update(batch_size=args.batch, num_workers=0,
                          persistent_workers=False)
        # The same batches every run (Infinite/DefaultSampler take a seed).
        loader_cfg.sampler = dict(loader_cfg.sampler, seed=args.seed)
        loader = Runner.build_dataloader(loader_cfg, seed=args.seed)
        where = data_root or 'the dataset\'s default root'
        return Batches(iter(loader), f'the recipe\'s training data ({where})',
                       False)
    num_classes = cfg.model.architecture.decode_head.num_classes
    rng = np.random.default_rng(args.seed)
    generated = (generated_batch(args.batch, crop, num_classes, rng)
                 for _ in itertools.count())
    return Batches(generated, f'generated data ({data_root} absent): scenes '
                   f'of a few large regions of {num_classes} classes, '
                   f'{crop[0]}x{crop[1]}', True)


def measure(built: OfflineDistiller, data: Batches, args) -> tuple:
    """Every batch's gradients, and the seconds of forward, per-term
    gradients and the step's own backward (for the cost comparison)."""
    model, runs = built.model, []
    times = dict(forward=0.0, measure=0.0, backward=0.0)
    for _ in range(args.iters):
        start = time.perf_counter()
        inputs = model.data_preprocessor(next(data.batches), True)
        losses = model(**inputs, mode='loss')
        forward = time.perf_counter()
        runs.append(term_gradient_norms(model, losses, args.reference))
        measured = time.perf_counter()
        sum(loss_terms(losses).values()).backward()
        model.zero_grad(set_to_none=True)
        times['forward'] += forward - start
        times['measure'] += measured - forward
        times['backward'] += time.perf_counter() - measured
    return runs, times


def caveats(built: OfflineDistiller, data: Batches,
            results: TermGradients) -> List[str]:
    """What the shares cannot tell, and how GSKD samples, in words."""
    out = []
    sources = [
        what for what, found in (('untrained networks', built.untrained),
                                 ('generated data', data.generated)) if found
    ]
    if sources:
        out.append('These shares only indicate: they come from ' +
                   ' and '.join(sources) + ', and ' + INDICATIVE)
    for name, loss in built.model.distiller.distill_losses.items():
        term = f'distill.{name}'
        if not isinstance(loss, GSKDLoss) or loss.valid_mask == 'labeled' \
                or term not in results:
            continue
        fix = ('add --cfg-options model.distiller.distill_losses.'
               f'{name}.valid_mask=labeled')
        if results[term].student == 0:
            out.append(f'GSKD ({term}) had no valid pixels: its '
                       f'valid_mask={loss.valid_mask!r} keeps only labelled '
                       'pixels the teacher classifies right, and there were '
                       f'none. To measure it on every labelled pixel, {fix}')
        elif built.teacher_weights is None:
            out.append(f'GSKD ({term}) samples only pixels the teacher '
                       f'classifies right (valid_mask={loss.valid_mask!r}); '
                       'this teacher is untrained, so those are chance hits '
                       '(on a real image it may be none). To measure it on '
                       f'every labelled pixel, {fix}')
    return out


def report(args, crop, notes, built, data, runs, times) -> None:
    """Print the table, the per-batch shares, the caveats and the cost."""
    results = average_gradients(runs)
    print(f'config:   {args.config}\nnetworks: {built.describe()}')
    print(f'data:     {data.description}; batch {args.batch}, crop '
          f'{crop[0]}x{crop[1]}, mean of {args.iters} batch(es)')
    for note in notes:
        print(f'note:     {note}')
    print('\n' + gradient_table(results) + '\n')
    if args.iters > 1:  # a mean can hide one batch's spike
        width = max(len(name) for name in results)
        print('share % per batch:\n' + '\n'.join(
            f'  {name.ljust(width)}  ' +
            ' '.join(percent(r[name].share) for r in runs)
            for name in results) + '\n')
    print('share: the term\'s student-gradient norm over that of '
          f'{args.reference!r}. grad <connector>: norm over that '
          'connector\'s parameters.')
    for caveat in caveats(built, data, results):
        print('\n' + caveat)
    if args.target_share is not None:
        print(f'\nloss_weight for a share of {args.target_share:g} %:')
        for term, (weight, wanted) in weights_for_share(
                built.model, results, args.target_share / 100).items():
            print(f'  {term}: {weight:g} -> {wanted:.3g}')
    step = times['forward'] + times['backward']
    print(f'\ncost (per batch, {args.device}): forward '
          f'{times["forward"] / args.iters:.3f} s, backward '
          f'{times["backward"] / args.iters:.3f} s, per-term gradients '
          f'{times["measure"] / args.iters:.3f} s '
          f'({100 * times["measure"] / step:.0f} % of forward + backward)')


def main() -> None:
    args = parse_args()
    cfg = check_distillation_recipe(
        load_config(args.config, args.cfg_options), args.config,
        'loss_gradients measures the loss terms of a distillation recipe')
    crop = tuple(args.crop) if args.crop else recipe_crop(cfg)
    teacher_ckpt = cfg.model.get('teacher_ckpt')
    stages = discriminator_stages(cfg)
    # No downloads, and the crop if asked (the same path as the tests').
    offline_recipe(cfg, tuple(args.crop) if args.crop else None)
    notes = [] if discriminator_stages(cfg) == stages else [
        f'discriminator: {discriminator_stages(cfg)} stages instead of '
        f'{stages} (its logits at crop {crop[0]}x{crop[1]} are too small '
        'for more)'
    ]
    # Quiet: init_weights logs every parameter at INFO.
    MMLogger.get_current_instance().setLevel('WARNING')
    # Python, numpy (the pipeline's random transforms) and torch.
    set_random_seed(args.seed)
    built = build_offline_distiller(cfg, args.checkpoint, teacher_ckpt,
                                    args.device)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', None) or 'mmseg'):
        data = batches(cfg, args, crop)  # the dataset's scope
        runs, times = measure(built, data, args)
    report(args, crop, notes, built, data, runs, times)


if __name__ == '__main__':
    main()
