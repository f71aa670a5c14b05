# Copyright (c) gskd-mm contributors. All rights reserved.
"""Checkpoints that a kill cannot corrupt, and one when training stops."""
import os.path as osp
from typing import Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.fileio.io import _parse_uri_prefix
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from gskd_mm.utils.checkpoint import ATOMIC_BACKEND, write_atomically


def saves_after_iter(hook: CheckpointHook, runner) -> bool:
    """Whether a ``CheckpointHook`` saves at the end of this iteration.

    Args:
        hook (CheckpointHook): The hook (iteration-based or not).
        runner (Runner): The runner, in ``after_train_iter``.

    Returns:
        bool: True for its interval's and the last iteration, and for
        :class:`AtomicCheckpointHook` when training stops here.
    """
    if hook.by_epoch:
        return False
    if hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or \
            (hook.save_last and hook.is_last_train_iter(runner)):
        return True
    return isinstance(hook, AtomicCheckpointHook) and \
        getattr(runner.train_loop, 'stop_training', False)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook``, whose files are whole or absent, and
    which saves when training stops early.

    Every checkpoint, and then ``last_checkpoint``, is written to a
    temporary file and moved into place in one step
    (:func:`gskd_mm.utils.write_atomically`): a process killed during a
    save leaves the previous checkpoint and ``last_checkpoint`` as they
    were, so ``--resume`` goes on from the previous checkpoint. When a hook
    stops an iteration-based loop (``train_loop.stop_training``, set by
    :class:`PreemptionHook` or ``EarlyStoppingHook``) a checkpoint of that
    iteration is saved, unless the interval saved one already.

    Args:
        *args: ``CheckpointHook``'s arguments.
        backend_args (dict, optional): ``CheckpointHook``'s. Defaults to
            None: the atomic local backend (``'atomic_local'``) for a local
            ``out_dir``; a remote ``out_dir`` (``s3://...``) uses its own
            backend, whose writes are as atomic as that backend makes them.
        **kwargs: ``CheckpointHook``'s keyword arguments.

    Note:
        Registered by the recipes as ``default_hooks.checkpoint.type``
        (``configs/gskd/_base_/distill_pieces.py``); the rest of the
        checkpoint settings are the schedule's.
    """

    def __init__(self,
                 *args,
                 backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None,
                 out_dir: Optional[str] = None,
                 **kwargs) -> None:
        if backend_args is None and file_client_args is None and \
                not _parse_uri_prefix(out_dir or ''):
            backend_args = dict(backend=ATOMIC_BACKEND)
        super().__init__(
            *args,
            backend_args=backend_args,
            file_client_args=file_client_args,
            out_dir=out_dir,
            **kwargs)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[Sequence[dict]] = None,
                         outputs: Optional[dict] = None) -> None:
        """Save at the interval, the last iteration, and a stop.

        Args:
            runner (Runner): The runner.
            batch_idx (int): The batch's index in the loop.
            data_batch (Sequence[dict], optional): The batch.
            outputs (dict, optional): The model's outputs.
        """
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if self.by_epoch or not getattr(runner.train_loop, 'stop_training',
                                        False):
            return
        if self.every_n_train_iters(runner, self.interval, self.save_begin) \
                or (self.save_last and self.is_last_train_iter(runner)):
            return  # saved above
        runner.logger.info(f'Saving checkpoint at {runner.iter + 1} '
                           'iterations: training stops')
        self._save_checkpoint(runner)

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: dict) -> None:
        """``CheckpointHook``'s, with ``last_checkpoint`` written in one
        step after the checkpoint."""
        # MMEngine 0.10's CheckpointHook._save_checkpoint_with_step, whose
        # last step writes last_checkpoint with open(..., 'w').
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                old = self.keep_ckpt_ids.popleft()
                if is_main_process():
                    path = self.file_backend.join_path(
                        self.out_dir, self.filename_tmpl.format(old))
                    if self.file_backend.isfile(path):
                        self.file_backend.remove(path)
                    elif self.file_backend.isdir(path):
                        self.file_backend.rmtree(path)
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if is_main_process():
            write_atomically(self.last_ckpt,
                             osp.join(runner.work_dir, 'last_checkpoint'))
