# Copyright (c) gskd-mm contributors. All rights reserved.
"""Fingerprints of a run's initial student and first batches."""
import hashlib
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _update(digest, tensor: torch.Tensor) -> None:
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())


@HOOKS.register_module()
class RunFingerprintHook(Hook):
    """Hash the student's initial weights and the first training batches.

    Runs meant to be paired (the same seed, different distillation methods)
    must start from the same student and see the same data in the same
    order; equal fingerprints show that they do. The student is the
    model's ``architecture`` for a distiller, the model itself otherwise;
    its weights are hashed when training starts (after initialisation and
    any loading), the batches as the data loader gives them (after
    augmentation).

    Args:
        num_batches (int): Training batches to hash. Defaults to 5.

    Attributes:
        student_digest (str | None): SHA-1 of the initial student state.
        data_digest (str | None): SHA-1 of the first ``num_batches``
            batches (images and labels).
    """

    priority = 'VERY_LOW'

    def __init__(self, num_batches: int = 5) -> None:
        if num_batches < 1:
            raise ValueError(f'num_batches must be >= 1, got {num_batches}')
        self.num_batches = num_batches
        self.student_digest: Optional[str] = None
        self.data_digest: Optional[str] = None
        self._data = hashlib.sha1()
        self._seen = 0

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        student = getattr(model, 'architecture', model)
        digest = hashlib.sha1()
        for name, value in sorted(student.state_dict().items()):
            digest.update(name.encode())
            _update(digest, value)
        self.student_digest = digest.hexdigest()

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self._seen >= self.num_batches or data_batch is None:
            return
        for image in data_batch['inputs']:
            _update(self._data, image)
        for sample in data_batch['data_samples']:
            _update(self._data, sample.gt_sem_seg.data)
        self._seen += 1
        self.data_digest = self._data.hexdigest()
