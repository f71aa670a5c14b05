# Copyright (c) gskd-mm contributors. All rights reserved.
"""Resume a run to the same weights as the run that was not interrupted."""
import logging
import random
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from .atomic_checkpoint_hook import saves_after_iter

#: Key of the random states in a checkpoint: ``world_size`` and ``ranks``
#: (each rank's :func:`random_states`, in rank order).
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


def ranks_states(saved: Dict[str, Any]) -> Tuple[int, List[Dict[str, Any]]]:
    """The world size and the per-rank states of a checkpoint's entry.

    Args:
        saved (dict): ``checkpoint['random_states']``: ``world_size`` and
            ``ranks``, or one process's states (checkpoints written before
            the states of every rank were saved, by one process or rank 0).

    Returns:
        tuple: The world size that saved them (None where unknown) and the
        list of per-rank states.
    """
    if 'ranks' in saved:
        return saved['world_size'], list(saved['ranks'])
    return None, [saved]


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed run the run it interrupted, to the bit, on every rank.

    Saves every rank's random states (torch, CUDA where initialised, numpy,
    python), gathered to rank 0, in each checkpoint under
    ``random_states``; on ``--resume`` each rank gets its own back once the
    train loop has skipped the batches already trained (which brings the
    sampler and the loader workers to where they were) and before the next
    batch. Validation is kept off training's random streams.

    Note:
        Registered by the recipes as ``default_hooks.exact_resume``, which
        a config's own ``custom_hooks`` cannot drop. A run resumed with
        another number of processes goes on, with a warning: it is not
        exact. The design and the limits (non-deterministic kernels, the
        seed): ``docs/en/advanced_guides/exact_resume.md``.
    """

    # After the hooks that may draw at the end of an iteration, before the
    # CheckpointHook (VERY_LOW): the states saved are those the next
    # iteration starts from.
    priority = 80

    def __init__(self) -> None:
        self._resumed: Optional[Dict[str, Any]] = None
        self._outside_val: Optional[Dict[str, Any]] = None
        self._gathered: Optional[Tuple[int, List[Dict[str, Any]]]] = None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Gather every rank's states to rank 0 when a checkpoint follows
        (saving runs on rank 0 alone)."""
        if get_world_size() == 1 or not any(
                saves_after_iter(hook, runner) for hook in runner.hooks
                if isinstance(hook, CheckpointHook)):
            return
        self._gathered = (runner.iter, all_gather_object(random_states()))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        world_size = get_world_size()
        if world_size == 1:
            ranks = [random_states()]
        elif self._gathered is not None and \
                self._gathered[0] == runner.iter:
            ranks = self._gathered[1]
        else:  # e.g. a best-of-val checkpoint: no gathering before it
            ranks = [random_states()]
            self._warn('a checkpoint saved where the states of the other '
                       'ranks were not gathered holds rank 0\'s alone; a run '
                       'resumed from it is not exact')
        checkpoint[CHECKPOINT_KEY] = dict(world_size=world_size, ranks=ranks)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Also called for `load_from` without resuming: whether the states
        # are used is decided in before_train, by the resumed iteration.
        self._resumed = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        saved, self._resumed = self._resumed, None
        if loop.iter == 0:  # a new run (`load_from` loads weights only)
            return
        if saved is None:
            self._warn('the checkpoint holds no random states (saved '
                       'without ExactResumeHook)')
            return
        saved_world_size, ranks = ranks_states(saved)
        world_size = get_world_size()
        if len(ranks) != world_size or saved_world_size not in (None,
                                                                world_size):
            self._warn(
                f'the checkpoint holds the random states of '
                f'{saved_world_size or "an unknown number of"} process(es) '
                f'({len(ranks)} saved) and this run has {world_size}: every '
                'rank keeps the streams it was seeded with, and the '
                'batches each rank reads are not those of the interrupted '
                'run (the weights, optimizer and schedule resume as usual)')
            return
        if runner.cfg.get('randomness', {}).get('seed') is None:
            self._warn('the config sets no `randomness.seed`: the sampler '
                       'and the loader workers were seeded with a new '
                       'random seed (tools/train.py restores the '
                       'checkpoint\'s; elsewhere set one, e.g. '
                       '--cfg-options randomness.seed=0, in the first run '
                       'and the resumed one)')
        states = ranks[get_rank()]
        if hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop, loop.iter, states)
        else:
            restore_random_states(states)

    def before_val(self, runner) -> None:
        self._outside_val = random_states()

    def after_val(self, runner) -> None:
        if self._outside_val is not None:
            restore_random_states(self._outside_val)
            self._outside_val = None

    @staticmethod
    def _warn(reason: str) -> None:
        print_log(
            f'ExactResumeHook: {reason}. A resumed run then draws other '
            'random numbers than the interrupted one would have',
            logger='current',
            level=logging.WARNING)
