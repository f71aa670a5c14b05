# Copyright (c) gskd-mm contributors. All rights reserved.
"""Log how hard every loss term pulls on the student during training."""
import time
from typing import List, Optional

from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS
from torch.utils.hooks import RemovableHandle

from ...analysis.loss_gradients import (TermGradients, term_gradient_norms,
                                        unwrap_model)


def loss_scale_of(optim_wrapper) -> float:
    """The current loss scale of the optimizer wrapper that steps the
    student (its ``AmpOptimWrapper``'s ``GradScaler``), 1.0 without one.

    Args:
        optim_wrapper (OptimWrapper | OptimWrapperDict): The runner's
            wrapper; of several, the ``architecture`` one (the student's).

    Returns:
        float: The scale.
    """
    if isinstance(optim_wrapper, OptimWrapperDict):
        wrappers = dict(optim_wrapper.items())
        optim_wrapper = wrappers.get('architecture',
                                     next(iter(wrappers.values())))
    scaler = getattr(optim_wrapper, 'loss_scaler', None)
    if scaler is None or not scaler.is_enabled():
        return 1.0
    return float(scaler.get_scale())


@HOOKS.register_module()
class LossGradientHook(Hook):
    """Every ``interval`` iterations, the gradient norm of every loss term.

    For every term of the step (the student's losses and every
    ``distill.loss_*``) it logs through the MessageHub, like the losses:
    ``grad_norm/<term>`` (over the student's parameters),
    ``grad_share/<term>`` (that over the reference term's) and
    ``grad_norm/<connector>/<term>``. It differentiates the step's own loss
    dict on the retained graph (:func:`~gskd_mm.analysis.term_gradient_norms`)
    before the optimizer wrapper backpropagates the sum, so training is
    bit-identical with the hook on. Subclasses change what is measured
    (:meth:`measure`) and act on each measurement (:meth:`after_measure`).

    Examples:
        >>> custom_hooks = [dict(type='LossGradientHook', interval=50)]

    Args:
        interval (int): Measure every ``interval`` training iterations.
            Defaults to 50.
        reference (str): The term of the shares: a loss name or its unique
            tail, e.g. 'decode.loss_ce'. Defaults to 'decode.loss_ce'.
        first (bool): Also measure the first training iteration: the pull
            of every term on the initial student, the one that loss weights
            are set against. Defaults to True.

    Attributes:
        initial (dict[str, TermGradient]): The measurement of the first
            iteration (with ``first``; empty until then).
        last (dict[str, TermGradient]): The last measurement.
        seconds (list[float]): Wall time of the measurements (the last
            100).

    Note:
        A measured iteration costs one extra backward pass per term; other
        iterations cost nothing. Under AMP the norms are unscaled; under DDP
        they are each rank's local gradients (rank 0's are logged). Details:
        ``docs/en/user_guides/loss_gradients.md``.
    """

    priority = 'NORMAL'  # before LoggerHook reads the MessageHub
    #: Measurement times kept in :attr:`seconds`.
    max_seconds = 100

    def __init__(self,
                 interval: int = 50,
                 reference: str = 'decode.loss_ce',
                 first: bool = True) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, got '
                             f'{interval!r}: measure every `interval` '
                             'iterations')
        self.interval = interval
        self.reference = reference
        self.first = first
        self.initial: TermGradients = {}
        self.last: TermGradients = {}
        self.seconds: List[float] = []
        self._handle: Optional[RemovableHandle] = None
        self._pending: Optional[TermGradients] = None

    def measure(self, model, losses: dict,
                loss_scale: float = 1.0) -> TermGradients:
        """Measure the terms of a step's loss dict (every term here).

        Args:
            model (nn.Module): The unwrapped model that computed them.
            losses (dict): Its loss-mode output.
            loss_scale (float): The step's AMP loss scale. Defaults to 1.0.

        Returns:
            dict[str, TermGradient]: As
            :func:`~gskd_mm.analysis.term_gradient_norms`.
        """
        return term_gradient_norms(
            model, losses, self.reference, loss_scale=loss_scale)

    def after_measure(self, runner) -> None:
        """Act on the measurement in :attr:`last` (nothing here)."""

    def is_measured(self, runner) -> bool:
        """Whether the coming training iteration is measured."""
        return (self.first and runner.iter == 0) or \
            self.every_n_train_iters(runner, self.interval)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        if not self.is_measured(runner):
            return
        model = unwrap_model(runner.model)
        loss_scale = loss_scale_of(getattr(runner, 'optim_wrapper', None))

        def measure(module, args, kwargs, output):
            if kwargs.get('mode') != 'loss' or not isinstance(output, dict):
                return  # e.g. a validation forward
            start = time.perf_counter()
            self._pending = self.measure(module, output, loss_scale)
            self.seconds = (self.seconds + [time.perf_counter() - start]
                            )[-self.max_seconds:]

        # The (unwrapped) model's own forward, called by DDP's forward too.
        self._handle = model.register_forward_hook(measure, with_kwargs=True)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._pending is None:
            return
        self.last, self._pending = self._pending, None
        if self.first and runner.iter == 0:
            self.initial = self.last
        hub = runner.message_hub
        for term, norms in self.last.items():
            # 'train/' as the losses: the LogProcessor strips it.
            hub.update_scalar(f'train/grad_norm/{term}', norms.student)
            hub.update_scalar(f'train/grad_share/{term}', norms.share)
            for connector, value in norms.connectors.items():
                hub.update_scalar(f'train/grad_norm/{connector}/{term}',
                                  value)
        self.after_measure(runner)
