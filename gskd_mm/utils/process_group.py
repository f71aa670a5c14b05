# Copyright (c) gskd-mm contributors. All rights reserved.
"""Tear a process group down without hanging or aborting at exit; find and
kill every process a launcher started."""
import gc
import inspect
import os
import signal
import types
from typing import Dict, List

import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel


def _describe(referrer: object, target: object) -> str:
    """What ``referrer`` is, and under which name it holds ``target``."""
    if inspect.isframe(referrer):
        code = referrer.f_code
        names = [k for k, v in referrer.f_locals.items() if v is target]
        return (f'local {names} of {code.co_name}() '
                f'({code.co_filename}:{referrer.f_lineno})')
    if isinstance(referrer, dict):
        keys = [k for k, v in referrer.items() if v is target]
        # An object's or a module's attributes: name their owner.
        for owner in gc.get_referrers(referrer):
            if getattr(owner, '__dict__', None) is referrer:
                return f'{_name(owner)}.{keys[0]}'
        return f'dict key {keys}'
    attributes = [
        k for k, v in getattr(referrer, '__dict__', {}).items() if v is target
    ]
    if attributes:
        return f'{_name(referrer)}.{attributes[0]}'
    return type(referrer).__qualname__


def _name(obj: object) -> str:
    """A module's name, or an object's class name."""
    if isinstance(obj, types.ModuleType):
        return f'module {obj.__name__}'
    return type(obj).__qualname__


def ddp_wrapper_holders() -> List[str]:
    """The live DDP wrappers of this process and what holds each one.

    A DDP wrapper's reducer holds the process group. Freed after
    ``destroy_process_group`` (by a later garbage collection or at exit),
    the reducer is the group's last holder and destroys it while holding
    the GIL, waiting for gloo's threads, which may need the GIL: a hang, or
    an abort at exit.

    Returns:
        list[str]: One line per live ``DistributedDataParallel`` (MMEngine's
        and MMRazor's wrappers are subclasses), naming its holders; empty
        when there is none.
    """
    gc.collect()
    found = []
    here = inspect.currentframe()
    objects = gc.get_objects()
    for obj in objects:
        if not isinstance(obj, DistributedDataParallel):
            continue
        holders = []
        for referrer in gc.get_referrers(obj):
            if referrer is not objects and referrer is not here:
                holders.append(_describe(referrer, obj))
        found.append(f'{type(obj).__qualname__} held by '
                     f'{", ".join(holders) or "nothing gc tracks"}')
    del objects, here
    return found


def destroy_process_group() -> None:
    """Destroy the default process group, after every DDP wrapper is gone.

    Call it once the caller dropped its references to the wrapped model
    (e.g. ``del runner``: MMEngine's Runner and its loops refer to each
    other, so only a garbage collection, done here, frees them). Every rank
    waits at a barrier first, so that no rank tears its group down while
    another still talks to it. Does nothing without a process group.

    Raises:
        RuntimeError: Where a DDP wrapper is still alive, naming what holds
            it: destroying the group then would hang or abort at exit.
    """
    if not torch_dist.is_initialized():
        return
    holders = ddp_wrapper_holders()
    if holders:
        raise RuntimeError(
            'A DDP wrapper outlives training: ' + '; '.join(holders) +
            '. Drop those references (e.g. a hook that keeps runner.model: '
            'release it in after_run) before the process group is '
            'destroyed.')
    torch_dist.barrier()
    torch_dist.destroy_process_group()


def descendants(pid: int) -> List[int]:
    """Every live process started, directly or not, by ``pid``.

    torchrun starts each rank in a session of its own, so killing the
    launcher's process group leaves the ranks (and their loader workers)
    running; their pids, read from ``/proc`` while the launcher lives, are
    what must be killed too.

    Args:
        pid (int): A process.

    Returns:
        list[int]: Their pids, parents before children; empty where there
        is no ``/proc``.
    """
    if not os.path.isdir('/proc'):
        return []
    children: Dict[int, List[int]] = {}
    for other in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{other}/stat') as f:
                parent = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        children.setdefault(parent, []).append(int(other))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def kill_process_tree(pid: int) -> None:
    """SIGKILL the process group that ``pid`` leads and every process it
    started, with the sessions they lead (a rank's loader workers).

    Args:
        pid (int): The leader, e.g. a launcher started in a new session.
    """
    others = descendants(pid)
    for leader in [pid, *others]:
        try:
            os.killpg(leader, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # not a group leader, or gone
    for other in others:
        try:
            os.kill(other, signal.SIGKILL)
        except ProcessLookupError:
            pass
