# Copyright (c) gskd-mm contributors. All rights reserved.
"""How hard every loss term of a recipe pulls on the student.

For every loss term of a training step (the student's losses and every
distillation loss), the L2 norm of its gradient over the student's
parameters, its share of the task loss's (the decode head's cross-entropy)
and its gradient norm over each connector (:mod:`gskd_mm.apis.loss_gradients`).
A term whose share is under about 1 % barely steers the student (see
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
import os.path as osp
import time

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import set_random_seed

from gskd_mm.apis.loss_gradients import (STUDENT, average_norms, format_norms,
                                         loss_terms, term_gradient_norms,
                                         weights_for_share)
from gskd_mm.testing import (build_offline_distiller, generated_batch,
                             offline_recipe, recipe_crop)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Gradient norm of every loss term of a distillation '
        'recipe, and its share of the task loss\'s.')
    parser.add_argument('config', help='distillation config')
    parser.add_argument(
        '--checkpoint',
        help='checkpoint of that distiller (default: '
        'untrained networks, or the recipe\'s teacher_ckpt if it exists)')
    parser.add_argument('--crop',
                        type=int,
                        nargs=2,
                        metavar=('H', 'W'),
                        help='training crop (default: the recipe\'s)')
    parser.add_argument('--batch',
                        type=int,
                        default=2,
                        help='images per batch')
    parser.add_argument('--iters',
                        type=int,
                        default=1,
                        help='batches to average over')
    parser.add_argument('--reference',
                        default='decode.loss_ce',
                        help='the term the shares are relative to')
    parser.add_argument(
        '--target-share',
        type=float,
        default=None,
        help='also print, for every distillation term, the loss_weight '
        'that would give it this share (percent) of the reference '
        "term's gradient")
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--device',
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. '
        'model.distiller.distill_losses.loss_gskd.valid_mask=labeled')
    args = parser.parse_args()
    for name in ('batch', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1')
    return args


def batches(cfg: Config, args: argparse.Namespace, crop):
    """The recipe's training batches if its data exist, else generated.

    Returns:
        tuple: An iterator of batches, and a description of the data.
    """
    dataset = cfg.train_dataloader.dataset
    data_root = dataset.get('data_root')
    # No data_root: the dataset class has its own (the demo's generates its
    # data into the gskd-mm cache).
    if data_root is None or osp.isdir(osp.expanduser(data_root)):
        from mmengine.runner import Runner
        loader_cfg = cfg.train_dataloader.copy()
        loader_cfg.update(batch_size=args.batch,
                          num_workers=0,
                          persistent_workers=False)
        # The same batches every run (Infinite/DefaultSampler take a seed).
        loader_cfg.sampler = dict(loader_cfg.sampler, seed=args.seed)
        loader = Runner.build_dataloader(loader_cfg, seed=args.seed)
        where = data_root or 'the dataset\'s default root'
        return iter(loader), f'the recipe\'s training data ({where})'
    decode_head = cfg.model.architecture.decode_head
    num_classes = decode_head.num_classes
    rng = np.random.default_rng(args.seed)

    def generate():
        while True:
            yield generated_batch(args.batch, crop, num_classes, rng)

    return generate(), (f'generated data ({data_root} absent): scenes of a '
                        f'few large regions of {num_classes} classes, '
                        f'{crop[0]}x{crop[1]}')


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'architecture' not in cfg.model:
        raise SystemExit(f'{args.config} is not a distillation config '
                         '(no model.architecture)')
    notes = []
    new_crop = tuple(args.crop) if args.crop else None
    crop = new_crop or recipe_crop(cfg)
    teacher_ckpt = cfg.model.get('teacher_ckpt')

    def stages() -> int:
        return cfg.model.get('discriminator', {}).get('num_stages', 4)

    recipe_stages = stages()
    # No downloads, and the crop if asked (the same path as the tests').
    offline_recipe(cfg, new_crop)
    if stages() != recipe_stages:
        notes.append(f'discriminator: {stages()} stages instead of '
                     f'{recipe_stages} (its logits at crop {crop[0]}x'
                     f'{crop[1]} are too small for more)')
    # Quiet: init_weights logs every parameter at INFO.
    MMLogger.get_current_instance().setLevel('WARNING')
    # Python, numpy (the pipeline's random transforms) and torch.
    set_random_seed(args.seed)
    model, trained = build_offline_distiller(cfg, args.checkpoint,
                                             teacher_ckpt, args.device)

    runs, times = [], dict(forward=0.0, measure=0.0, backward=0.0)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', None) or 'mmseg'):
        data, data_text = batches(cfg, args, crop)  # the dataset's scope
        for _ in range(args.iters):
            batch = next(data)
            start = time.perf_counter()
            inputs = model.data_preprocessor(batch, True)
            losses = model(**inputs, mode='loss')
            forward = time.perf_counter()
            runs.append(term_gradient_norms(model, losses, args.reference))
            measured = time.perf_counter()
            # The step's own backward, for the cost comparison.
            sum(loss_terms(losses).values()).backward()
            model.zero_grad(set_to_none=True)
            end = time.perf_counter()
            times['forward'] += forward - start
            times['measure'] += measured - forward
            times['backward'] += end - measured
    results = average_norms(runs)

    print(f'config:   {args.config}')
    print(f'networks: {trained}')
    print(f'data:     {data_text}; batch {args.batch}, crop {crop[0]}x'
          f'{crop[1]}, mean of {args.iters} batch(es)')
    for note in notes:
        print(f'note:     {note}')
    print()
    print(format_norms(results))
    print()
    if args.iters > 1:
        # A mean can hide one batch's spike: show each batch's share.
        print('share % per batch:')
        width = max(len(name) for name in results)
        for name in results:
            shares = ' '.join(f'{100 * r[name]["share"]:.3g}' for r in runs)
            print(f'  {name.ljust(width)}  {shares}')
        print()
    print('share: the term\'s student-gradient norm over that of '
          f'{args.reference!r}. grad <connector>: norm over that '
          'connector\'s parameters.')
    if 'generated' in data_text or 'untrained' in trained:
        print('\nThese shares only indicate: they come from ' + ' and '.join(
            what for what, found in (
                ('untrained networks', 'untrained' in trained),
                ('generated data', 'generated' in data_text)) if found) +
              ', and shares depend on both (the task loss\'s gradient on '
              'generated labels says little about real ones). The '
              'measurement that counts is the share in the first '
              'iterations of your own run: LossGradientHook, or '
              'GradientShareBalancerHook, which also holds it at a '
              'target (docs/en/user_guides/loss_gradients.md).')
    distiller = getattr(model, 'distiller', None)
    for name, loss in getattr(distiller, 'distill_losses', {}).items():
        term = f'distill.{name}'
        if type(loss).__name__ != 'GSKDLoss' or term not in results:
            continue
        if loss.valid_mask == 'labeled':
            continue
        fix = ('add --cfg-options model.distiller.distill_losses.'
               f'{name}.valid_mask=labeled')
        if results[term][STUDENT] == 0:
            print(f'\nGSKD ({term}) had no valid pixels: its '
                  f'valid_mask={loss.valid_mask!r} keeps only labelled '
                  'pixels the teacher classifies right, and there were '
                  f'none. To measure it on every labelled pixel, {fix}')
        elif 'teacher from' not in trained and 'student and' not in trained:
            print(f'\nGSKD ({term}) samples only pixels the teacher '
                  f'classifies right (valid_mask={loss.valid_mask!r}); this '
                  'teacher is untrained, so those are chance hits (on a '
                  'real image it may be none). To measure it on every '
                  f'labelled pixel, {fix}')
    if args.target_share is not None:
        print(f'\nloss_weight for a share of {args.target_share:g} %:')
        for term, (weight, wanted) in weights_for_share(
                results, model, args.target_share / 100).items():
            print(f'  {term}: {weight:g} -> {wanted:.3g}')
    step = times['forward'] + times['backward']
    print(f'\ncost (per batch, {args.device}): forward '
          f'{times["forward"] / args.iters:.3f} s, backward '
          f'{times["backward"] / args.iters:.3f} s, per-term gradients '
          f'{times["measure"] / args.iters:.3f} s '
          f'({100 * times["measure"] / step:.0f} % of forward + backward)')


if __name__ == '__main__':
    main()
