# Copyright (c) gskd-mm contributors. All rights reserved.
"""Stop cleanly when the scheduler asks: SIGTERM or SIGUSR1."""
import logging
import signal
import threading
from typing import Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

#: Exit status of a run that a signal stopped after saving a checkpoint
#: (``EX_TEMPFAIL``: try again). ``tools/slurm_train.sh`` requeues on it.
PREEMPTED_EXIT_CODE = 75


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stop training at the end of the iteration in which a signal arrived,
    on every rank, and have a checkpoint saved there.

    The handlers are installed when the hook is built (with the runner,
    before the dataloader starts its workers, which inherit them and
    ignore the signal) and the previous ones come back after the run. A
    handler only records the signal; after each training iteration the
    ranks agree (an all-reduce of one number) whether any of them got one,
    so every rank stops after the same iteration. It then sets the loop's
    ``stop_training``: :class:`AtomicCheckpointHook` saves that iteration's
    checkpoint and the loop ends. ``tools/train.py`` exits with
    :data:`PREEMPTED_EXIT_CODE`, and ``--resume`` goes on from there.

    Args:
        signals (Sequence[str]): Names of the signals that stop training.
            Defaults to ``('SIGTERM', 'SIGUSR1')`` (Slurm's preemption and
            time-limit signal, and the one ``#SBATCH --signal`` sends).

    Note:
        ``tools/train.py`` adds it as ``default_hooks.preemption``
        (:func:`enable_preemption`). Data loader workers that receive
        SIGTERM themselves (PyTorch's workers die on a SIGTERM that their
        parent did not send) end the run before the checkpoint: with
        ``num_workers > 0``, signal the training processes, or use SIGUSR1.
    """

    priority = 'LOW'  # before ExactResumeHook and the CheckpointHook

    def __init__(self, signals: Sequence[str] = ('SIGTERM', 'SIGUSR1')):
        unknown = [s for s in signals if not hasattr(signal, s)]
        if unknown:
            raise ValueError(f'PreemptionHook: unknown signals {unknown}; '
                             'use names of the signal module, e.g. SIGTERM')
        self.signals = [getattr(signal, s) for s in signals]
        self.received: Optional[int] = None
        #: The iteration after which training stopped, if a signal came.
        self.stopped_at: Optional[int] = None
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            print_log(
                'PreemptionHook: built outside the main thread, where '
                'signal handlers cannot be set; it will not stop training',
                logger='current',
                level=logging.WARNING)
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._record)

    def _record(self, signum: int, frame) -> None:
        # Only records: logging or collectives here could deadlock.
        if self.received is None:
            self.received = signum

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Agree with the other ranks whether to stop, and stop.

        Args:
            runner (Runner): The runner.
            batch_idx (int): The batch's index in the loop.
            data_batch (optional): The batch.
            outputs (optional): The model's outputs.
        """
        received = self.received or 0
        if get_world_size() > 1:
            flag = torch.tensor([received], dtype=torch.int64)
            all_reduce(flag, op='max')
            received = int(flag.item())
        if not received or self.stopped_at is not None or \
                self.is_last_train_iter(runner):
            return  # (the last iteration ends the run anyway)
        self.stopped_at = runner.iter + 1
        runner.train_loop.stop_training = True
        print_log(
            f'{signal.Signals(received).name} received: training stops '
            f'after iteration {self.stopped_at} on every rank, with a '
            f'checkpoint; the run exits with {PREEMPTED_EXIT_CODE} and '
            'goes on with --resume',
            logger='current',
            level=logging.WARNING)

    def after_run(self, runner) -> None:
        """Put the previous signal handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def enable_preemption(cfg: Config) -> None:
    """Add :class:`PreemptionHook` to a config's ``default_hooks``, and
    save its checkpoints with :class:`AtomicCheckpointHook`.

    What ``tools/train.py`` does to every config. A config that sets
    ``default_hooks.preemption`` (e.g. to None, to turn it off) keeps its
    own; a ``default_hooks.checkpoint`` of type ``CheckpointHook`` becomes
    an ``AtomicCheckpointHook`` (the same settings, atomic writes, and a
    checkpoint when a signal stops training), as in the recipes.

    Args:
        cfg (Config): The training config, changed in place.
    """
    default_hooks = cfg.setdefault('default_hooks', Config())
    if 'preemption' not in default_hooks:
        default_hooks['preemption'] = dict(type='PreemptionHook')
    checkpoint = default_hooks.get('checkpoint')
    if isinstance(checkpoint, dict) and \
            checkpoint.get('type') in ('CheckpointHook', CheckpointHook):
        checkpoint['type'] = 'AtomicCheckpointHook'


def stopped_by_signal(runner) -> bool:
    """Whether a :class:`PreemptionHook` of the runner stopped training.

    Args:
        runner (Runner): A runner after ``train()``.

    Returns:
        bool: True if training stopped early on a signal.
    """
    return any(
        isinstance(hook, PreemptionHook) and hook.stopped_at is not None
        for hook in runner.hooks)
