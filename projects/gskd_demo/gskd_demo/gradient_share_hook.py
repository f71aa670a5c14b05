# Copyright (c) gskd-mm contributors. All rights reserved.
"""How hard each loss term pulls on the student at the start of a run."""
import copy
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _loss_gradient_norms():
    """:func:`gskd_mm.apis.loss_gradient_norms`, or None where it is not
    part of the installed gskd-mm."""
    try:
        from gskd_mm.apis import loss_gradient_norms
    except ImportError:
        return None
    return loss_gradient_norms


@HOOKS.register_module()
class GradientShareHook(Hook):
    """Gradient norm of every loss term on the run's first batch.

    Before the first training step, every term of a forward on the first
    batch is differentiated on its own
    (:func:`gskd_mm.apis.loss_gradient_norms`); its share is its
    student-gradient norm over the task loss's (the decode head's
    cross-entropy). The training is left exactly as it would be without
    the hook: the model's state (BN statistics, CIRKD's memory) and the
    random state are restored, and no ``.grad`` is written.

    Attributes:
        norms (dict | None): Per loss term, ``value``, ``student``,
            ``share`` and ``connector.<name>``; None until measured, or
            when gskd-mm has no ``loss_gradient_norms`` (see
            ``available``).
        available (bool): Whether ``loss_gradient_norms`` was importable.
    """

    priority = 'NORMAL'  # before the timer resets its clock for the step

    def __init__(self) -> None:
        self.norms: Optional[Dict[str, Dict[str, float]]] = None
        self.available = _loss_gradient_norms() is not None

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        fn = _loss_gradient_norms()
        if fn is None or self.norms is not None or data_batch is None:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state = copy.deepcopy(model.state_dict())
        with torch.random.fork_rng():
            norms = fn(model, data_batch)
        model.load_state_dict(state)
        self.norms = {k: dict(v) for k, v in norms.items()}


def gskd_share(norms: Optional[Dict[str, Dict[str, float]]]
               ) -> Optional[float]:
    """The GSKD term's share of the task loss's gradient, if it has one.

    Args:
        norms (dict | None): :attr:`GradientShareHook.norms`.

    Returns:
        float | None: ``share`` of the term named ``*loss_gskd``.
    """
    for name, values in (norms or {}).items():
        if name.endswith('loss_gskd'):
            return values['share']
    return None
