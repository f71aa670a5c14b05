# Copyright (c) gskd-mm contributors. All rights reserved.
"""A hook that kills its process while a checkpoint file is being written.

Imported by a test's config (``custom_imports``) in a ``tools/train.py``
subprocess: it stands for a preemption or an out-of-memory kill that comes
in the middle of a save.
"""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from gskd_mm.utils import checkpoint as checkpoint_io


@HOOKS.register_module()
class KillDuringSaveHook(Hook):
    """SIGKILL this process halfway through writing the checkpoint of
    iteration ``at``: half its bytes are on disk when it dies.

    Args:
        at (int): The iteration whose checkpoint write is interrupted.
    """

    def __init__(self, at: int) -> None:
        self.at = at

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner.iter + 1 != self.at:
            return

        def write_half(file, data) -> None:
            file.write(data[:len(data) // 2])
            file.flush()
            os.fsync(file.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

        checkpoint_io._write = write_half
