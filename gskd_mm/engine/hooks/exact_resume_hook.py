# Copyright (c) gskd-mm contributors. All rights reserved.
"""Resume a run to the same weights as the run that was not interrupted."""
import logging
import random
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

#: Key of the random states in a checkpoint.
CHECKPOINT_KEY = 'random_states'


def random_states() -> Dict[str, Any]:
    """The global random states of this process.

    Returns:
        dict: ``torch`` (CPU generator), ``numpy`` and ``python`` states,
        and ``cuda`` (every device's) where CUDA has been initialised.
    """
    states = dict(
        torch=torch.get_rng_state(),
        numpy=np.random.get_state(),
        python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: Dict[str, Any]) -> None:
    """Set the global random states of this process.

    Args:
        states (dict): What :func:`random_states` returned. Its CUDA states
            are restored where this process has as many devices.
    """
    torch.set_rng_state(states['torch'])
    np.random.set_state(states['numpy'])
    random.setstate(states['python'])
    cuda = states.get('cuda')
    if cuda is not None and torch.cuda.is_available() and \
            len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class _RestoreAfterSkip:
    """The train loop's dataloader iterator, which restores the random
    states once the resumed loop has skipped the batches already trained,
    then hands the loop back its own iterator.

    Args:
        loop: The ``IterBasedTrainLoop``.
        skip (int): Batches the loop skips (its resumed ``iter``).
        states (dict): The states to restore before the next batch.
    """

    def __init__(self, loop, skip: int, states: Dict[str, Any]) -> None:
        self.loop = loop
        self.iterator = loop.dataloader_iterator
        self.skip = skip
        self.states = states

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        if self.skip > 0:
            self.skip -= 1
            return next(self.iterator)
        restore_random_states(self.states)
        self.loop.dataloader_iterator = self.iterator
        return next(self.iterator)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed run the run it interrupted, to the bit.

    Training draws random numbers in the main process: the student's
    dropout, GSKD's pixel draws, CIRKD's memory sampling (torch), and with
    ``num_workers=0`` the data pipeline's augmentations (numpy, python).
    MMEngine's checkpoints hold none of these states, so a resumed run draws
    other numbers than the uninterrupted one and ends at other weights.
    This hook

    1. saves the global random states (torch, numpy, python; CUDA where it
       is initialised) in every checkpoint, under ``random_states``;
    2. on ``--resume`` restores them after the train loop has skipped the
       batches already trained and before it fetches the next one: the
       skip runs the data pipeline (drawing numpy and python numbers with
       ``num_workers=0``) and brings the sampler and the loader workers
       (seeded from the config's seed by MMEngine) to where they were,
       so the states must come back after it, not at
       ``after_load_checkpoint`` (before the skip) nor at
       ``before_train_iter`` (after the next batch was drawn);
    3. keeps validation off training's random streams: the states are
       saved before validation and restored after it (a validation
       dataloader draws its base seed from torch's generator). The
       checkpoint of an iteration is saved before that iteration's
       validation, so without this a run that validates in the middle of
       training would go on from other states than its checkpoint holds.
       This changes the random numbers of runs that validate during
       training, compared with runs without the hook; the end of a run
       (validation last) is unchanged.

    Why a hook and not a train loop: MMEngine's ``IterBasedTrainLoop.run``
    skips the trained batches in one place, between ``before_train_epoch``
    and the first ``before_train_iter``, where no hook is called; a loop
    subclass would copy that method, and would have to be written into
    ``train_cfg``, which MMSeg's schedule bases define (MMEngine refuses a
    key that two bases of a config define). The hook instead hands the loop
    a dataloader iterator that restores the states as the first batch after
    the skip is fetched, and reaches every recipe through ``custom_hooks``
    (``configs/gskd/_base_/distill_pieces.py``).

    Limits: exact for one process with a fixed ``randomness.seed`` (the
    sampler and the loader workers are seeded when the dataloader is
    built, before the checkpoint's seed comes back; a warning says so
    otherwise). Under DDP the checkpoint holds rank 0's states: every rank
    resumes with its own replayed stream and a warning says the run is
    not exact. Non-deterministic kernels (most CUDA backward passes of
    convolutions and interpolation, unless
    ``randomness.deterministic=True``) differ between any two runs,
    resumed or not. Loops other than ``IterBasedTrainLoop`` get the states
    back at ``before_train``.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._resumed: Optional[Dict[str, Any]] = None
        self._outside_val: Optional[Dict[str, Any]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = random_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Also called for `load_from` without resuming: whether the states
        # are used is decided in before_train, by the resumed iteration.
        self._resumed = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if loop.iter == 0:  # a new run (`load_from` loads weights only)
            self._resumed = None
            return
        if self._resumed is None:
            self._warn('the checkpoint holds no random states (saved '
                       'without ExactResumeHook)')
            return
        if get_world_size() > 1:
            self._warn('the checkpoint holds the random states of rank 0 '
                       'alone, and this run has several processes')
            self._resumed = None
            return
        if runner.cfg.get('randomness', {}).get('seed') is None:
            self._warn('the config sets no `randomness.seed`: the sampler '
                       'and the loader workers were seeded with a new '
                       'random seed (set one, e.g. --cfg-options '
                       'randomness.seed=0, in the first run and the '
                       'resumed one)')
        if hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop, loop.iter, self._resumed)
        else:
            restore_random_states(self._resumed)
        self._resumed = None

    def before_val(self, runner) -> None:
        self._outside_val = random_states()

    def after_val(self, runner) -> None:
        if self._outside_val is not None:
            restore_random_states(self._outside_val)
            self._outside_val = None

    @staticmethod
    def _warn(reason: str) -> None:
        print_log(
            f'ExactResumeHook: {reason}; the resumed run draws other random '
            'numbers than the interrupted one would have',
            logger='current',
            level=logging.WARNING)
