# Copyright (c) gskd-mm contributors. All rights reserved.
"""Reading checkpoints: MMEngine's with weights-only loading; students.

``torch.load(..., weights_only=True)`` reads MMEngine checkpoints once
:func:`allow_mmengine_checkpoints` ran. Writing them: :func:`write_atomically`
and :class:`AtomicLocalBackend` move a complete file into place in one
step; :func:`restore_drawn_seed` gives a resumed run the seed its checkpoint
was trained with.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which only
unpickles allow-listed globals. MMEngine 0.10 calls ``torch.load`` with the
default when it resumes (``runner.resume``), loads ``load_from``, a teacher's
``teacher_ckpt`` or any ``load_checkpoint``, and the checkpoints it writes
hold more than tensors: the message hub's ``HistoryBuffer`` objects (numpy
arrays of logged values, plus their statistics methods, which pickle as
``getattr(HistoryBuffer, 'mean')``) and numpy scalars such as the ETA.
"""
import os
import os.path as osp
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import find_latest_checkpoint
from mmengine.utils import digit_version

try:  # numpy >= 1.26 (where numpy 2 pickles point)
    from numpy._core import multiarray
except ImportError:  # pragma: no cover  older numpy
    from numpy.core import multiarray

# The statistics methods that ``HistoryBuffer`` registers by default and
# pickles with its state.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
# MMRazor's algorithms hold the student as `architecture`.
STUDENT_PREFIX = 'architecture.'


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` restricted to what ``HistoryBuffer`` pickles.

    Pickle protocol 2 (``torch.save``'s) stores the function
    ``HistoryBuffer.mean`` as ``builtins.getattr(HistoryBuffer, 'mean')``.
    Allow-listing the real ``getattr`` would open every attribute of every
    allow-listed object to a checkpoint; this resolves only those methods.

    Args:
        obj (Any): The object whose attribute is looked up.
        name (str): The attribute's name.

    Returns:
        Callable: The statistics method ``HistoryBuffer.<name>``.
    """
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'weights_only load refuses getattr({obj!r}, {name!r}): only '
        f'HistoryBuffer.{{{", ".join(HISTORY_BUFFER_STATISTICS)}}} are '
        'allowed (see gskd_mm.utils.allow_mmengine_checkpoints)')


def mmengine_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The globals that MMEngine checkpoints need beyond torch's defaults.

    Returns:
        list: Entries for ``torch.serialization.add_safe_globals``: objects,
        or ``(object, name)`` for objects pickled under another name.
    """
    # Numpy arrays and scalars, under the module names of numpy 2 and of
    # numpy 1 (checkpoints saved with either).
    numpy_functions = [(getattr(multiarray, name), f'{module}.{name}')
                       for name in ('_reconstruct', 'scalar')
                       for module in ('numpy._core.multiarray',
                                      'numpy.core.multiarray')]
    # Unpickling a dtype builds an instance of its class (e.g.
    # numpy.dtypes.Float64DType), which is never named in the pickle.
    dtype_classes = {
        type(np.dtype(code))
        for code in '?' + np.typecodes['AllInteger'] + np.typecodes['AllFloat']
    }
    return [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        *numpy_functions,
        *sorted(dtype_classes, key=lambda cls: cls.__name__),
    ]


def allow_mmengine_checkpoints() -> bool:
    """Allow-list MMEngine checkpoints' contents for ``weights_only`` loads.

    Adds :func:`mmengine_safe_globals` to torch's safe globals, for the whole
    process, so that ``runner.resume``, ``load_from``, ``teacher_ckpt`` and
    ``torch.load(path, weights_only=True)`` read checkpoints that MMEngine
    0.10 wrote. Nothing else is loosened. Calling it again does nothing.

    Returns:
        bool: False where torch has no ``add_safe_globals`` (torch < 2.4,
        whose ``torch.load`` does not default to ``weights_only=True``).
    """
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return False
    safe_globals = mmengine_safe_globals()
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        # (object, name) entries came with torch 2.6.
        safe_globals = [g for g in safe_globals if not isinstance(g, tuple)]
    # Some torch versions keep a list, which would grow with each call.
    registered = set(torch.serialization.get_safe_globals())
    add_safe_globals([g for g in safe_globals if g not in registered])
    return True


def read_checkpoint(checkpoint: str) -> Dict[str, Any]:
    """Read a checkpoint file on the CPU, weights-only.

    Read with ``weights_only=True`` after :func:`allow_mmengine_checkpoints`,
    so MMEngine Runner checkpoints load and nothing else is unpickled.

    Args:
        checkpoint (str): Checkpoint file.

    Returns:
        dict: The file's content (``state_dict``, ``meta``, ... or a bare
        state dict).
    """
    allow_mmengine_checkpoints()
    return torch.load(checkpoint, map_location='cpu', weights_only=True)


def load_state_dict(checkpoint: str) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint file, read weights-only.

    Args:
        checkpoint (str): Checkpoint file.

    Returns:
        dict[str, Tensor]: Its ``state_dict`` (or the file's content if it
        is a bare state dict).
    """
    state = read_checkpoint(checkpoint)
    return state.get('state_dict', state)


def student_state_dict(
        state_dict: Dict[str, torch.Tensor],
        prefix: str = STUDENT_PREFIX) -> Dict[str, torch.Tensor]:
    """The student's weights of a distillation state dict.

    Args:
        state_dict (dict[str, Tensor]): State dict of a distillation
            algorithm, whose student keys start with ``prefix``.
        prefix (str): Prefix of the student's keys. Defaults to
            ``'architecture.'`` (MMRazor's name of the student).

    Returns:
        dict[str, Tensor]: The student's weights, prefix removed.

    Raises:
        ValueError: If no key starts with ``prefix``.
    """
    student = {
        key[len(prefix):]: value
        for key, value in state_dict.items() if key.startswith(prefix)
    }
    if not student:
        raise ValueError(f'no "{prefix}*" weights in the state dict: is it '
                         'a distillation checkpoint? A plain model\'s '
                         'checkpoint loads without stripping a prefix.')
    return student


#: Name of :class:`AtomicLocalBackend` in MMEngine's file backends
#: (``backend_args=dict(backend=ATOMIC_BACKEND)``).
ATOMIC_BACKEND = 'atomic_local'


def _write(file, data: Union[bytes, str]) -> None:
    """Write ``data`` to an open file (the step a kill may interrupt)."""
    file.write(data)


def write_atomically(data: Union[bytes, str], path: Union[str, Path]) -> None:
    """Write a file in one step: whole, or not at all.

    The data go to a temporary file beside ``path`` (``.<name>.<pid>.tmp``),
    which is flushed to disk and then moved onto ``path`` with
    ``os.replace`` (atomic on POSIX file systems). A process killed while
    writing leaves ``path`` as it was, and at most the temporary file.

    Args:
        data (bytes or str): The content; text is written as UTF-8.
        path (str or Path): The file, created or replaced. Its folder is
            created if needed.
    """
    path = osp.abspath(path)
    folder, name = osp.split(path)
    os.makedirs(folder, exist_ok=True)
    temporary = osp.join(folder, f'.{name}.{os.getpid()}.tmp')
    # os.open honours the umask, as open() would for `path` itself.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o666)
    try:
        with open(descriptor, 'wb' if isinstance(data, bytes) else 'w',
                  encoding=None if isinstance(data, bytes) else 'utf-8',
                  closefd=True) as f:
            _write(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if osp.exists(temporary):
            os.remove(temporary)
        raise
    # The rename itself reaches the disk with the folder's entry.
    folder_descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_descriptor)
    finally:
        os.close(folder_descriptor)


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend, whose writes are atomic.

    ``put`` and ``put_text`` go through :func:`write_atomically`; reading,
    listing and removing are :class:`mmengine.fileio.LocalBackend`'s.
    Registered as ``'atomic_local'``; :class:`~gskd_mm.engine.
    AtomicCheckpointHook` saves checkpoints with it.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomically(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        write_atomically(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def checkpoint_to_resume(cfg: Config) -> Optional[str]:
    """The checkpoint that ``Runner`` resumes from, found as it finds it.

    Args:
        cfg (Config): A training config.

    Returns:
        str, optional: ``load_from`` when resuming from it, else the work
        dir's ``last_checkpoint``; None when not resuming or nothing is
        there.
    """
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        return cfg.load_from
    if not cfg.get('work_dir') or not osp.isdir(cfg.work_dir):
        return None
    return find_latest_checkpoint(cfg.work_dir) or None


def restore_drawn_seed(cfg: Config) -> Optional[int]:
    """Give a resumed run the seed its checkpoint was trained with.

    A config without ``randomness.seed`` makes MMEngine draw one, and
    ``Runner.resume`` puts the checkpoint's back, but only after the train
    dataloader, its sampler and its workers were seeded with the new one.
    Setting the checkpoint's seed in the config before the runner is built
    seeds everything as the interrupted run was. Does nothing when the
    config sets a seed, or when not resuming.

    Args:
        cfg (Config): The training config (``resume``, ``load_from``,
            ``work_dir`` final), changed in place.

    Returns:
        int, optional: The seed set, or None.
    """
    randomness = cfg.get('randomness') or {}
    if randomness.get('seed') is not None:
        return None
    path = checkpoint_to_resume(cfg)
    if path is None or not osp.isfile(path):
        return None  # a remote checkpoint: MMEngine's own order applies
    allow_mmengine_checkpoints()
    # Memory-mapped: only the meta data are read.
    checkpoint = torch.load(
        path, map_location='cpu', weights_only=True, mmap=True)
    seed = checkpoint.get('meta', {}).get('seed')
    if seed is None:
        return None
    cfg.randomness = dict(randomness, seed=seed)
    print_log(
        f'Resuming from {path}: the config sets no randomness.seed, so the '
        f'run is seeded with the checkpoint\'s ({seed}) before anything '
        'draws from it',
        logger='current')
    return seed
