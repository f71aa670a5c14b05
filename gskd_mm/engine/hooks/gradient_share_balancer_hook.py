# Copyright (c) gskd-mm contributors. All rights reserved.
"""Hold distillation terms at a target share of the task loss's gradient."""
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...analysis.loss_gradients import (TermGradients, resolve_term,
                                        term_gradient_norms, unwrap_model)
from .loss_gradient_hook import LossGradientHook

#: Key of the balancer's state in a checkpoint.
CHECKPOINT_KEY = 'gradient_share_balancer'


@dataclass
class BalancerUpdate:
    """One update of a balanced term's weight.

    Attributes:
        iter (int): The training iteration measured (0-based).
        term (str): The distillation loss, e.g. ``'loss_gskd'``.
        share (float | None): Its share measured at the step's weight; None
            when the measurement was skipped (see the hook's stated
            behaviours).
        weight (float): The weight in use from the next iteration.
    """
    iter: int
    term: str
    share: Optional[float]
    weight: float


@HOOKS.register_module()
class GradientShareBalancerHook(LossGradientHook):
    """Move distillation loss weights so that each term pulls on the student
    with a target share of the task loss's gradient, during training.

    Every ``interval`` iterations it measures, on the step's own graph, the
    gradient norm of the reference term and of each balanced term over the
    student (as :class:`LossGradientHook`), averages them over ranks,
    smooths each term's share at weight 1 (its unit share) and moves the
    term's ``loss_weight`` towards ``target / unit share``. It logs
    ``balancer/weight/<term>`` and ``balancer/share/<term>`` and saves its
    state in checkpoints.

    Examples:
        >>> custom_hooks = [dict(type='GradientShareBalancerHook',
        ...                      targets=dict(loss_gskd=1.0))]

    Args:
        targets (dict[str, float]): For each balanced term, a key of
            ``model.distiller.distill_losses`` (e.g. ``'loss_gskd'``), its
            target share: 1.0 pulls as hard as the reference term. Each
            must be a number > 0.
        interval (int): Measure and update every ``interval`` iterations.
            Defaults to 50 (its cost: docs/en/benchmarks.md).
        reference (str): The term of the shares: a loss name or its unique
            tail. Defaults to 'decode.loss_ce'.
        momentum (float): Weight of the past in the moving average of the
            log unit shares, in [0, 1). Defaults to 0.9.
        max_change (float): Largest factor by which one update may raise or
            lower a weight, > 1. Defaults to 2.0.
        weight_range (tuple[float, float]): The weights stay within these
            multiples of each term's configured ``loss_weight``. Defaults
            to (0.01, 100.0).
        warmup_iters (int): Iterations over which the weight in use ramps
            from ``1 / warmup_iters`` of the balanced weight up to it.
            Defaults to 0 (no ramp).
        history_size (int): Updates kept in :attr:`history` (the latest).
            Defaults to 1000.

    Attributes:
        weights (dict[str, float]): The balanced weight of every term (the
            weight in use after the warm-up).
        history (deque[BalancerUpdate]): The last ``history_size`` updates.

    Note:
        A measurement whose gradients are zero or not finite (no pixel
        sampled, an AMP overflow) leaves the weights as they were. The
        steps, the stated behaviours under DDP, AMP and two optimizers, and
        how to pick a target: ``docs/en/user_guides/balancer.md``.
    """

    def __init__(self,
                 targets: Dict[str, float],
                 interval: int = 50,
                 reference: str = 'decode.loss_ce',
                 momentum: float = 0.9,
                 max_change: float = 2.0,
                 weight_range: tuple = (0.01, 100.0),
                 warmup_iters: int = 0,
                 history_size: int = 1000) -> None:
        # Measured every `interval` iterations only: an update on the
        # first one would move the weight before the warm-up has begun.
        super().__init__(interval=interval, reference=reference, first=False)
        if not isinstance(targets, dict) or not targets:
            raise ValueError('targets must be a dict of distillation loss '
                             'names and target shares, e.g. '
                             f'dict(loss_gskd=1.0), got {targets!r}')
        for name, target in targets.items():
            if isinstance(target, bool) or not isinstance(
                    target, (int, float)) or not 0 < target < math.inf:
                raise ValueError(
                    f'the target share of {name!r} must be a number > 0, got '
                    f'{target!r}. A share of 0 is no term at all: to switch '
                    'a term off, set its loss_weight to 0 and leave it out '
                    'of targets')
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum!r}')
        if not max_change > 1:
            raise ValueError(
                f'max_change must be > 1 (a factor per update), got '
                f'{max_change!r}')
        low, high = weight_range
        if not 0 < low <= 1 <= high:
            raise ValueError(
                'weight_range must be (low, high) multiples of the '
                f'configured loss_weight with 0 < low <= 1 <= high, got '
                f'{weight_range!r}')
        if not isinstance(warmup_iters, int) or warmup_iters < 0:
            raise ValueError(
                f'warmup_iters must be an int >= 0, got {warmup_iters!r}')
        if not isinstance(history_size, int) or history_size < 1:
            raise ValueError(
                f'history_size must be an int >= 1, got {history_size!r}')
        self.targets = {name: float(t) for name, t in targets.items()}
        self.momentum = float(momentum)
        self.max_change = float(max_change)
        self.weight_range = (float(low), float(high))
        self.warmup_iters = warmup_iters
        self.weights: Dict[str, float] = {}
        self.history: Deque[BalancerUpdate] = deque(maxlen=history_size)
        self._initial: Dict[str, float] = {}
        self._log_unit_share: Dict[str, Optional[float]] = {}
        self._updates = 0
        self._missed: Dict[str, int] = {}
        self._warned: set = set()
        self._restored = False
        self._modules: Dict[str, torch.nn.Module] = {}

    # ------------------------------------------------------------ set-up
    def _losses(self, runner) -> dict:
        """The balanced loss modules, by name (checked)."""
        model = unwrap_model(runner.model)
        losses = getattr(getattr(model, 'distiller', None), 'distill_losses',
                         None)
        if losses is None:
            raise TypeError(
                'GradientShareBalancerHook balances distillation losses, but '
                f'the model ({type(model).__name__}) has no '
                'distiller.distill_losses: use it with a distillation '
                'algorithm, or remove it from custom_hooks')
        out = {}
        for name in self.targets:
            if name not in losses:
                raise KeyError(
                    f'targets names {name!r}, which is not a distillation '
                    f'loss of this model: choose from {list(losses)}')
            weight = getattr(losses[name], 'loss_weight', None)
            if isinstance(weight, bool) or not isinstance(
                    weight, (int, float)) or not weight > 0:
                raise ValueError(
                    f'{name} has loss_weight {weight!r}; the balancer moves a '
                    'numeric loss_weight > 0 (the weight it starts from): set '
                    'one in its config')
            out[name] = losses[name]
        return out

    def before_train(self, runner) -> None:
        losses = self._modules = self._losses(runner)
        if not self._restored:
            self._initial = {
                n: float(m.loss_weight)
                for n, m in losses.items()
            }
            self.weights = dict(self._initial)
            self._log_unit_share = {n: None for n in losses}
        self._apply(runner.iter)

    def _terms(self) -> List[str]:
        """The balanced terms' names in a step's loss dict."""
        return [f'distill.{name}' for name in self.targets]

    def measure(self, model, losses: dict,
                loss_scale: float = 1.0) -> TermGradients:
        """The reference's and the balanced terms' norms (a term missing
        from the step, e.g. after MMRazor's StopDistillHook, is left out
        and its update skipped)."""
        return term_gradient_norms(
            model,
            losses,
            self.reference, [t for t in self._terms() if t in losses],
            loss_scale=loss_scale)

    def _ramp(self, iteration: int) -> float:
        """The share of the balanced weight in use at an iteration."""
        if iteration >= self.warmup_iters:
            return 1.0
        return (iteration + 1) / self.warmup_iters

    def _apply(self, iteration: int) -> None:
        """Set every balanced loss's weight for the given iteration."""
        ramp = self._ramp(iteration)
        for name, module in self._modules.items():
            module.loss_weight = ramp * self.weights[name]

    # ------------------------------------------------------------ training
    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        if runner.iter < self.warmup_iters:
            self._apply(runner.iter)
        super().before_train_iter(runner, batch_idx, data_batch)

    def _reduced_norms(self) -> Dict[str, float]:
        """The reference's and the balanced terms' student-gradient norms,
        averaged over ranks (NaN where a term was not in the step)."""
        names = [self.reference_name] + self._terms()
        local = torch.tensor([
            self.last[n].student if n in self.last else math.nan
            for n in names
        ], dtype=torch.float64)
        all_reduce(local, op='mean')  # a no-op outside distributed runs
        return dict(zip(names, local.tolist()))

    @property
    def reference_name(self) -> str:
        """The full name of the reference term in the last measurement."""
        return resolve_term(list(self.last), self.reference)

    def after_measure(self, runner) -> None:
        """Smooth the measured unit shares and move the weights."""
        norms = self._reduced_norms()
        reference = norms.pop(self.reference_name)
        losses = self._modules
        low, high = self.weight_range
        hub = runner.message_hub
        self._updates += 1
        for name, module in losses.items():
            norm = norms[f'distill.{name}']
            in_use = float(module.loss_weight)
            share = norm / reference if reference > 0 else math.nan
            if not (math.isfinite(share) and share > 0):
                self._missed[name] = self._missed.get(name, 0) + 1
                self._warn_unreached(runner, name)
                self.history.append(
                    BalancerUpdate(runner.iter, name, None, in_use))
                continue
            log_unit = math.log(share / in_use)
            previous = self._log_unit_share[name]
            self._log_unit_share[name] = log_unit if previous is None else (
                self.momentum * previous + (1 - self.momentum) * log_unit)
            wanted = self.targets[name] / math.exp(self._log_unit_share[name])
            weight = self.weights[name]
            weight = min(max(wanted, weight / self.max_change),
                         weight * self.max_change)
            bounded = min(max(weight, low * self._initial[name]),
                          high * self._initial[name])
            if bounded != weight and name not in self._warned:
                self._warned.add(name)
                print_log(
                    f'GradientShareBalancerHook: {name} would need weight '
                    f'{weight:.4g} for its target share '
                    f'{self.targets[name]:g}, outside weight_range '
                    f'{self.weight_range} x {self._initial[name]:g}; it is '
                    f'held at {bounded:.4g}. Widen weight_range to let it '
                    'reach the target.',
                    logger='current',
                    level=logging.WARNING)
            self.weights[name] = bounded
            hub.update_scalar(f'train/balancer/share/{name}', share)
            self.history.append(
                BalancerUpdate(runner.iter, name, share,
                               bounded * self._ramp(runner.iter + 1)))
        self._apply(runner.iter + 1)
        for name, module in losses.items():
            hub.update_scalar(f'train/balancer/weight/{name}',
                              float(module.loss_weight))

    def _warn_unreached(self, runner, name: str) -> None:
        """Warn once about a term whose gradient never reached the
        student."""
        if self._log_unit_share[name] is not None or name in self._warned:
            return
        if runner.iter + 1 < self.warmup_iters and self._missed[name] < 10:
            return
        self._warned.add(name)
        print_log(
            f'GradientShareBalancerHook: {name} has not reached the student '
            f'in {self._missed[name]} measurements (its gradient on the '
            'student, or the reference\'s, was zero or not finite: it may '
            'train only its connector, or find nothing to compare); its '
            f'weight stays at {self.weights[name]:g}',
            logger='current',
            level=logging.WARNING)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """What a checkpoint keeps of the balancer."""
        return dict(
            targets=dict(self.targets),
            initial=dict(self._initial),
            weights=dict(self.weights),
            log_unit_share=dict(self._log_unit_share),
            updates=self._updates)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            return
        if set(state['targets']) != set(self.targets):
            print_log(
                'GradientShareBalancerHook: the checkpoint balanced '
                f'{sorted(state["targets"])}, this run balances '
                f'{sorted(self.targets)}: its weights are not restored',
                logger='current',
                level=logging.WARNING)
            return
        self._initial = dict(state['initial'])
        self.weights = dict(state['weights'])
        self._log_unit_share = dict(state['log_unit_share'])
        self._updates = state['updates']
        self._restored = True
