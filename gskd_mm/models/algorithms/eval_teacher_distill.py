# Copyright (c) gskd-mm contributors. All rights reserved.
from typing import List, Optional

import torch
from mmengine.structures import BaseDataElement
from mmrazor.models.algorithms import SingleTeacherDistill
from mmrazor.models.algorithms.base import LossResults
from mmrazor.models.utils import add_prefix
from mmrazor.registry import MODELS


@MODELS.register_module()
class EvalTeacherDistill(SingleTeacherDistill):
    """Single-teacher distillation with the teacher run for inference only.

    ``SingleTeacherDistill`` puts only the teacher's BN layers in eval mode
    and runs the teacher in ``loss`` mode: its heads' dropout stays on, so
    the teacher logits the distillation losses read are noisy, and a
    teacher loss and auxiliary head are computed that nothing uses. Here the
    whole teacher stays in eval mode whatever ``train()`` is called with,
    and runs in ``tensor`` mode under ``no_grad``: for MMSeg's segmentors
    that is the backbone, the neck and the decode head's forward, which is
    what the distillation recorders read. This is how the GSKD authors'
    trainers distil (``t_model.eval()``, forward only).

    Modules, recorders and checkpoints (state-dict keys) are those of
    ``SingleTeacherDistill``, whose arguments it takes, except that the
    teacher cannot be trainable: it computes no loss to train on.

    Args:
        teacher_trainable (bool): Must be False. Defaults to False.
        **kwargs: Arguments of ``SingleTeacherDistill``.
    """

    def __init__(self, teacher_trainable: bool = False, **kwargs) -> None:
        if teacher_trainable:
            raise ValueError(
                'EvalTeacherDistill runs the teacher for inference only and '
                'cannot train it; use SingleTeacherDistill with '
                'teacher_trainable=True to train the teacher too')
        super().__init__(teacher_trainable=False, **kwargs)

    def loss(
        self,
        batch_inputs: torch.Tensor,
        data_samples: Optional[List[BaseDataElement]] = None,
    ) -> LossResults:
        """Calculate the student and distillation losses of a batch.

        Args:
            batch_inputs (Tensor): Preprocessed images, (N, 3, H, W).
            data_samples (list[BaseDataElement], optional): Their samples,
                with the ground truth the student trains on.

        Returns:
            dict[str, Tensor]: ``student.*`` and ``distill.*`` losses.
        """
        # Record the teacher's outputs (deliveries record, not override).
        self.distiller.set_deliveries_override(False)
        with self.distiller.teacher_recorders, self.distiller.deliveries, \
                torch.no_grad():
            self.teacher(batch_inputs, data_samples, mode='tensor')

        self.distiller.set_deliveries_override(True)
        with self.distiller.student_recorders, self.distiller.deliveries:
            if self.calculate_student_loss:
                student_losses = self.student(
                    batch_inputs, data_samples, mode='loss')
            elif self.student_trainable:
                self.student(batch_inputs, data_samples, mode='loss')
            else:
                with torch.no_grad():
                    self.student(batch_inputs, data_samples, mode='loss')
        losses = dict()
        if self.calculate_student_loss:
            losses.update(add_prefix(student_losses, 'student'))
        if not self.distillation_stopped:  # see MMRazor's StopDistillHook
            losses.update(
                add_prefix(self.distiller.compute_distill_losses(),
                           'distill'))
        return losses

    def train(self, mode: bool = True) -> 'EvalTeacherDistill':
        """Set the train mode of the student and distiller; the teacher
        stays in eval mode (BN statistics frozen, dropout off).

        Args:
            mode (bool): Train (True) or eval (False) mode. Defaults to True.

        Returns:
            EvalTeacherDistill: self.
        """
        super().train(mode)
        self.teacher.eval()
        return self
