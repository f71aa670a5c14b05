# Copyright (c) gskd-mm contributors. All rights reserved.
"""Time training steps and the losses of chosen types inside them."""
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.utils import ProgressBar

from gskd_mm.analysis.step_cost import ITERATION_CLOCK


@HOOKS.register_module()
class StepTimerHook(Hook):
    """Wall time of every training step and of some losses inside it.

    A step's time is the model's update (``before_train_iter`` to
    ``after_train_iter``, wall clock); an iteration's, all of the loop's
    iteration (one ``after_train_iter`` to the next: loading the batch, the
    other hooks and the step) in the clock of the library's step cost
    (:data:`~gskd_mm.analysis.step_cost.ITERATION_CLOCK`, the process's
    CPU time), which the compute-matched runs are budgeted by. A loss's time
    is its forward (pre- and post-forward hooks) plus its backward, timed
    from the gradient reaching the loss's output to the gradient reaching
    its first input (tensor hooks); what runs in front of the loss (a
    projector) is not included. The last validation's metrics are kept
    too, and a progress bar shows the training.

    Args:
        loss_types (Sequence[str]): Class names of the loss modules to
            time, e.g. ``('GSKDLoss', )``. Defaults to ``('GSKDLoss', )``.
        progress (bool): Show a progress bar. Defaults to True.

    Attributes:
        iter_times (list[float]): Seconds of every training step.
        loop_times (list[float]): CPU seconds of the process in every whole
            iteration of the training loop.
        loss_times (list[float]): Seconds spent in the timed losses, per
            step (0 without such a loss).
        metrics (dict[str, float]): Metrics of the last validation.
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 loss_types: Sequence[str] = ('GSKDLoss', ),
                 progress: bool = True) -> None:
        self.loss_types = tuple(loss_types)
        self.progress = progress
        self.iter_times: List[float] = []
        self.loop_times: List[float] = []
        self._last_end = 0.0
        self.loss_times: List[float] = []
        self.metrics: Dict[str, float] = {}
        self._bar: Optional[ProgressBar] = None
        self._start = 0.0
        self._loss_time = 0.0
        self._marks: Dict[str, float] = {}

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        for module in model.modules():
            if type(module).__name__ in self.loss_types:
                module.register_forward_pre_hook(
                    self._forward_start, with_kwargs=True)
                module.register_forward_hook(self._forward_end)
        if self.progress:
            self._bar = ProgressBar(runner.max_iters)
        self._last_end = ITERATION_CLOCK()

    def _forward_start(self, module, args, kwargs) -> None:
        inputs = list(args) + list(kwargs.values())
        first = next((x for x in inputs if isinstance(x, torch.Tensor)), None)
        if first is not None and first.requires_grad:
            first.register_hook(self._backward_end)
        self._marks['forward'] = time.perf_counter()

    def _forward_end(self, module, args, output) -> None:
        self._loss_time += time.perf_counter() - self._marks['forward']
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._backward_start)

    def _backward_start(self, grad: torch.Tensor) -> None:
        self._marks['backward'] = time.perf_counter()

    def _backward_end(self, grad: torch.Tensor) -> None:
        self._loss_time += time.perf_counter() - self._marks['backward']

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._loss_time = 0.0
        self._start = time.perf_counter()

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self.iter_times.append(time.perf_counter() - self._start)
        end = ITERATION_CLOCK()
        self.loop_times.append(end - self._last_end)
        self._last_end = end
        self.loss_times.append(self._loss_time)
        if self._bar is not None:
            self._bar.update()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = {k: float(v) for k, v in (metrics or {}).items()}

    def after_train(self, runner) -> None:
        if self._bar is not None:
            sys.stdout.write('\n')
