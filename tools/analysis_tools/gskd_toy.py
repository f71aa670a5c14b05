# Copyright (c) gskd-mm contributors. All rights reserved.
"""Does GSKD move a student? A toy that trains a projector by GSKD alone.

The teacher's features are fixed: a few classes, each a cluster on the unit
sphere, on a random label map. The student's features are a fixed random
linear map of the teacher's plus noise (the structure is recoverable) and
go through a trainable 1x1 projector, the only parameter. The projector is
trained by ``GSKDLoss`` alone with the recipes' SGD (lr 0.02, momentum 0.9)
for every configuration of ``normalize``, ``exclude_diagonal`` and ``tau``,
at one common weight and at the weight that gives every configuration the
same gradient norm at step 0 (so the comparison is one of direction, not
only of scale). Every configuration of a seed starts from the same
projector and sees the same sampling draws.

Reported per configuration, mean +- sd over seeds:

- the norm of GSKD's gradient on the projector at step 0;
- the change of the *structural gap* between the projected student and the
  teacher (:func:`gskd_mm.analysis.structural_gap`, the CPU demo's metric),
  on fixed sampling draws: its KL (the authors' loss: ``'length'``,
  diagonal in, T = 1, weight 1, N = 8, S = -1) and its cosine difference
  (the mean absolute difference of the two cosine self-similarity
  matrices on the sampled pixels).

Example::

    OMP_NUM_THREADS=1 python tools/analysis_tools/gskd_toy.py --seeds 5
"""
import argparse
import time
from statistics import mean, stdev
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from torch import Tensor

from gskd_mm.analysis import markdown_table, structural_gap
from gskd_mm.models.losses import GSKDLoss
from gskd_mm.utils.cli import check_positive

# (name, normalize, exclude_diagonal, tau); the first is the authors' loss.
CONFIGS = [
    ('authors (length, diag in, T 1)', 'length', False, 1.0),
    ('descriptor, diag in, T 1', 'descriptor', False, 1.0),
    ('descriptor, diag out, T 1', 'descriptor', True, 1.0),
    ('descriptor, diag in, T 0.1', 'descriptor', False, 0.1),
    ('descriptor, diag out, T 0.1', 'descriptor', True, 0.1),
    ('row, diag in, T 1', 'row', False, 1.0),
    ('row, diag out, T 1', 'row', True, 1.0),
    ('row, diag in, T 0.1', 'row', False, 0.1),
    ('row, diag out, T 0.1', 'row', True, 0.1),
]
# Its weight-1 gradient norm at step 0 is the common target.
TARGET = 'row, diag out, T 0.1'


def make_toy(seed: int,
             num_imgs: int = 2,
             size: int = 32,
             num_classes: int = 4,
             channels_T: int = 32,
             channels_S: int = 64,
             spread: float = 0.15,
             noise: float = 0.1) -> Dict[str, Tensor]:
    """Fixed teacher and student features with class structure.

    Args:
        seed (int): Seed of everything the toy draws.
        num_imgs (int): Images. Defaults to 2.
        size (int): Height and width of the feature maps. Defaults to 32.
        num_classes (int): Classes. Defaults to 4.
        channels_T (int): Teacher channels (C_t). Defaults to 32.
        channels_S (int): Student channels (C_s). Defaults to 64.
        spread (float): Std of a teacher feature around its class centre,
            per channel, before normalisation. Defaults to 0.15.
        noise (float): Std of the noise added to the student's features,
            per channel. Defaults to 0.1.

    Returns:
        dict[str, Tensor]: ``feat_T`` (N, C_t, h, w) unit vectors,
        ``feat_S`` (N, C_s, h, w), ``labels`` (N, h, w), ``logits_T``
        (N, K, h, w) that predict the labels.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (num_imgs, size, size),
                           generator=gen)
    centres = F.normalize(
        torch.randn(num_classes, channels_T, generator=gen), dim=1)
    feat_T = centres[labels].permute(0, 3, 1, 2) + spread * torch.randn(
        num_imgs, channels_T, size, size, generator=gen)
    feat_T = F.normalize(feat_T, dim=1)
    mixing = torch.randn(channels_S, channels_T, generator=gen)
    feat_S = torch.einsum('st,nthw->nshw', mixing, feat_T) + noise * \
        torch.randn(num_imgs, channels_S, size, size, generator=gen)
    return dict(
        feat_T=feat_T,
        feat_S=feat_S,
        labels=labels,
        logits_T=F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float())


def make_projector(toy: Dict[str, Tensor], seed: int) -> nn.Conv2d:
    """The student's 1x1 projector C_s -> C_t, initialised from ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Conv2d(
            toy['feat_S'].shape[1], toy['feat_T'].shape[1], 1, bias=False)


def structure_metrics(projector: nn.Module, toy: Dict[str, Tensor],
                      gap_seeds: Sequence[int] = (0, 1, 2, 3)
                      ) -> Tuple[float, float]:
    """The structural gap of the projected student, on fixed draws.

    Args:
        projector (nn.Module): The projector.
        toy (dict[str, Tensor]): Output of :func:`make_toy`.
        gap_seeds (Sequence[int]): Seeds of the draws, averaged. Defaults
            to (0, 1, 2, 3).

    Returns:
        tuple[float, float]: The mean over the draws of the structural gap
        KL (GSKD's descriptor KL at T 1, the authors' normalisation) and
        cosine difference (:func:`gskd_mm.analysis.structural_gap`).
    """
    with torch.no_grad():
        student = projector(toy['feat_S'])
    gaps = [
        structural_gap(student, toy['feat_T'], toy['logits_T'],
                       toy['labels'], seed) for seed in gap_seeds
    ]
    return mean(g.kl for g in gaps), mean(g.cos for g in gaps)


def train(toy: Dict[str, Tensor],
          seed: int,
          normalize: str,
          exclude_diagonal: bool,
          tau: float,
          weight: float,
          steps: int = 100,
          lr: float = 0.02,
          momentum: float = 0.9) -> Dict[str, float]:
    """Train the projector by GSKD alone and measure what changed.

    Args:
        toy (dict[str, Tensor]): Output of :func:`make_toy`.
        seed (int): Seed of the projector's initialisation and of the
            training draws (the same for every configuration).
        normalize (str): ``GSKDLoss``'s ``normalize``.
        exclude_diagonal (bool): ``GSKDLoss``'s ``exclude_diagonal``.
        tau (float): ``GSKDLoss``'s ``tau``.
        weight (float): ``GSKDLoss``'s ``loss_weight``.
        steps (int): SGD steps. Defaults to 100.
        lr (float): Learning rate. Defaults to 0.02.
        momentum (float): Momentum. Defaults to 0.9.

    Returns:
        dict[str, float]: ``grad0`` the gradient norm at step 0; ``gap0``,
        ``gap1``, ``cos0``, ``cos1`` the structural gap's KL and cosine
        difference before and after training (see
        :func:`structure_metrics`).
    """
    projector = make_projector(toy, seed)
    loss = GSKDLoss(
        num_samples=8,
        group_size=-1,
        tau=tau,
        loss_weight=weight,
        valid_mask='labeled',
        normalize=normalize,
        exclude_diagonal=exclude_diagonal)
    optimizer = torch.optim.SGD(
        projector.parameters(), lr=lr, momentum=momentum)
    gap0, cos0 = structure_metrics(projector, toy)
    grad0 = float('nan')
    with torch.random.fork_rng():
        torch.manual_seed(10_000 + seed)
        for step in range(steps):
            optimizer.zero_grad()
            loss(projector(toy['feat_S']), toy['feat_T'], toy['logits_T'],
                 toy['labels']).backward()
            if step == 0:
                grad0 = float(projector.weight.grad.norm())
            optimizer.step()
    gap1, cos1 = structure_metrics(projector, toy)
    return dict(grad0=grad0, gap0=gap0, gap1=gap1, cos0=cos0, cos1=cos1)


def add_run(row: Dict, weight: float, result: Dict[str, float]) -> None:
    """Append one seed's run of a configuration to its table row."""
    for key, value in (('weight', weight), ('grad0', result['grad0']),
                       ('gap0', result['gap0']), ('cos0', result['cos0']),
                       ('gap_change',
                        100 * (result['gap1'] / result['gap0'] - 1)),
                       ('cos_change',
                        100 * (result['cos1'] / result['cos0'] - 1))):
        row.setdefault(key, []).append(value)


def run_toy(seeds: Sequence[int],
            weight: float = 10.0,
            steps: int = 100,
            lr: float = 0.02,
            momentum: float = 0.9,
            configs: Optional[List[tuple]] = None) -> List[Dict]:
    """Every configuration at ``weight`` and at the matched weight.

    The matched weight of a configuration gives it, at step 0, the gradient
    norm of ``TARGET`` at weight 1 (per seed: the gradient is linear in
    the weight, and the step-0 draws are the same).

    Args:
        seeds (Sequence[int]): Seeds (toy, projector and draws).
        weight (float): The common weight. Defaults to 10.0.
        steps (int): SGD steps. Defaults to 100.
        lr (float): Learning rate. Defaults to 0.02.
        momentum (float): Momentum. Defaults to 0.9.
        configs (list[tuple], optional): ``(name, normalize,
            exclude_diagonal, tau)`` rows; must hold ``TARGET``. Defaults
            to ``CONFIGS``.

    Returns:
        list[dict]: One row per configuration and weighting: ``name``,
        ``weighting`` ('common' or 'matched'), and per seed lists
        ``weight``, ``grad0``, ``gap_change`` and ``cos_change`` (percent),
        ``gap0``, ``cos0``.
    """
    configs = configs or CONFIGS
    if TARGET not in [c[0] for c in configs]:
        raise ValueError(f'configs must include {TARGET!r}: its gradient '
                         'norm is the common target')
    rows = {(c[0], kind): dict(name=c[0], weighting=kind)
            for kind in ('common', 'matched') for c in configs}
    bar = ProgressBar(2 * len(configs) * len(seeds))
    for seed in seeds:
        toy = make_toy(seed)
        common = {}
        for name, normalize, exclude, tau in configs:
            common[name] = train(toy, seed, normalize, exclude, tau, weight,
                                 steps, lr, momentum)
            add_run(rows[(name, 'common')], weight, common[name])
            bar.update()
        target = common[TARGET]['grad0'] / weight
        for name, normalize, exclude, tau in configs:
            matched = weight * target / common[name]['grad0']
            add_run(rows[(name, 'matched')], matched,
                    train(toy, seed, normalize, exclude, tau, matched, steps,
                          lr, momentum))
            bar.update()
    return list(rows.values())


def _stat(values: List[float], fmt: str) -> str:
    """``mean +- sd`` (sd only for two values or more)."""
    if len(values) < 2:
        return format(values[0], fmt)
    return f'{format(mean(values), fmt)} ± {format(stdev(values), fmt)}'


def toy_table(rows: List[Dict]) -> str:
    """The rows of :func:`run_toy` as a markdown table."""
    return markdown_table(
        ['configuration', 'weight', 'grad norm at step 0',
         'structural gap KL change (%)', 'structural gap cos change (%)'],
        [[row['name'], _stat(row['weight'], '.3g'),
          _stat(row['grad0'], '.3g'), _stat(row['gap_change'], '.2f'),
          _stat(row['cos_change'], '.2f')] for row in rows])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a 1x1 projector by GSKD alone for every '
        'normalize / exclude_diagonal / tau configuration and report how '
        'much each moves the student\'s structure towards the teacher\'s.')
    parser.add_argument('--seeds', type=int, default=5, help='seeds')
    parser.add_argument(
        '--steps', type=int, default=100, help='SGD steps per run')
    parser.add_argument(
        '--weight', type=float, default=10.0, help='the common loss weight')
    parser.add_argument('--lr', type=float, default=0.02)
    parser.add_argument('--momentum', type=float, default=0.9)
    parser.add_argument('--out', help='also write the table to this file')
    args = parser.parse_args()
    check_positive(args, ('seeds', 'steps'))
    return args


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    rows = run_toy(
        range(args.seeds), args.weight, args.steps, args.lr, args.momentum)
    table = toy_table(rows)
    gap0 = rows[0]['gap0']
    cos0 = rows[0]['cos0']
    print()
    print(table)
    print_log(
        f'{args.seeds} seeds, {args.steps} steps, SGD lr {args.lr} momentum '
        f'{args.momentum}; before training: structural gap KL '
        f'{_stat(gap0, ".3g")}, cos {_stat(cos0, ".3g")}; '
        f'{time.perf_counter() - start:.0f} s', logger='current')
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')


if __name__ == '__main__':
    main()
