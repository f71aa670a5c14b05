# Copyright (c) gskd-mm contributors. All rights reserved.
"""Log how hard every loss term pulls on the student during training."""
import time
from typing import Dict, List, Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch.utils.hooks import RemovableHandle

from ...apis.loss_gradients import (CONNECTOR, SHARE, STUDENT, TermNorms,
                                    term_gradient_norms, unwrap)


@HOOKS.register_module()
class LossGradientHook(Hook):
    """Every ``interval`` iterations, the gradient norm of every loss term.

    For every term of the step (the student's losses, e.g.
    ``student.decode.loss_ce``, and every ``distill.loss_*``, the
    adversarial generator term included) it logs through the MessageHub,
    like the losses, so the values reach the text log, ``scalars.json`` and
    the visualizer backends:

    - ``grad_norm/<term>``: L2 norm of the term's gradient over the
      student's parameters;
    - ``grad_share/<term>``: that over the reference term's (the task
      loss, the decode head's cross-entropy by default);
    - ``grad_norm/<connector>/<term>``: over that connector's parameters.

    How: on a measured iteration a forward hook on the model catches the
    step's own loss dict, and :func:`~gskd_mm.apis.term_gradient_norms`
    differentiates each term with ``torch.autograd.grad`` on the retained
    graph before the optimizer wrapper backpropagates the sum. The step's
    own forward is measured, not an extra one, so there is nothing to undo:
    no random draw (dropout, GSKD's sampling, CIRKD's contrast slots), no
    BN statistic and no CIRKD queue is touched twice, and the gradients
    are those of the batch the step trains on. ``autograd.grad`` writes no
    ``.grad``, so the optimizer step is bit-identical with the hook on.
    Other iterations register nothing and cost nothing; a measured one
    costs one extra backward pass per term (its graph is kept meanwhile).

    - AMP: the losses are differentiated as the model returns them, before
      any loss scaling, so the values are unscaled.
    - DDP: the values are each rank's local gradients (before DDP's
      all-reduce); logged values are rank 0's.
    - Two optimizers (``AdversarialEvalTeacherDistill``): the student
      step's loss dict holds ``distill.loss_adv_g``, which is measured; the
      discriminator's step is not a student term and is not measured.

    The log shows, like the losses, the mean of the last ``window_size``
    values of the LogProcessor (measurements, here); set
    ``interval`` to the logger's, or the LogProcessor's ``custom_cfg``, to
    change that. Turn it on with
    ``custom_hooks = [dict(type='LossGradientHook', interval=50)]``.

    Args:
        interval (int): Measure every ``interval`` training iterations.
            Defaults to 50.
        reference (str): The term of the shares: a loss name or its unique
            tail, e.g. 'decode.loss_ce'. Defaults to 'decode.loss_ce'.

    Attributes:
        last (dict[str, dict[str, float]]): The last measurement, as
            :func:`~gskd_mm.apis.term_gradient_norms` returns it.
        seconds (list[float]): Wall time of every measurement.
    """

    priority = 'NORMAL'  # before LoggerHook reads the MessageHub

    def __init__(self,
                 interval: int = 50,
                 reference: str = 'decode.loss_ce') -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, got '
                             f'{interval!r}: measure every `interval` '
                             'iterations')
        self.interval = interval
        self.reference = reference
        self.last: Dict[str, TermNorms] = {}
        self.seconds: List[float] = []
        self._handle: Optional[RemovableHandle] = None
        self._pending: Optional[Dict[str, TermNorms]] = None

    def measure(self, model, losses: dict) -> Dict[str, TermNorms]:
        """Measure the terms of a step's loss dict (every term here).

        Args:
            model (nn.Module): The unwrapped model that computed them.
            losses (dict): Its loss-mode output.

        Returns:
            dict: As :func:`~gskd_mm.apis.term_gradient_norms`.
        """
        return term_gradient_norms(model, losses, self.reference)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        model = unwrap(runner.model)

        def measure(module, args, kwargs, output):
            if kwargs.get('mode') != 'loss' or not isinstance(output, dict):
                return  # e.g. a validation forward
            start = time.perf_counter()
            self._pending = self.measure(module, output)
            self.seconds.append(time.perf_counter() - start)

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
        hub = runner.message_hub
        for term, norms in self.last.items():
            # 'train/' as the losses: the LogProcessor strips it.
            hub.update_scalar(f'train/grad_norm/{term}', norms[STUDENT])
            hub.update_scalar(f'train/grad_share/{term}', norms[SHARE])
            for key, value in norms.items():
                if key.startswith(CONNECTOR):
                    hub.update_scalar(
                        f'train/grad_norm/{key[len(CONNECTOR):]}/{term}',
                        value)
