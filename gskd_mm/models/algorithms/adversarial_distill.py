# Copyright (c) gskd-mm contributors. All rights reserved.
from typing import Dict, List, Optional, Union

import torch.nn as nn
from mmengine.dist import all_reduce, get_world_size
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.structures import BaseDataElement
from mmrazor.models.algorithms.base import LossResults
from mmrazor.registry import MODELS
from torch import Tensor

from ..utils import teacher_at_student_size
from .eval_teacher_distill import EvalTeacherDistill


@MODELS.register_module()
class AdversarialEvalTeacherDistill(EvalTeacherDistill):
    """:class:`EvalTeacherDistill` plus adversarial distillation of logits.

    A discriminator learns to tell the teacher's logits from the student's
    while the student learns to fool it, as in CWD's and CIRKD's trainers
    (the CWD and CWD + GSKD protocol):

    - the student step adds ``distill.loss_adv_g``, the generator loss of
      the discriminator's scores of the student logits, to the other
      losses and updates everything but the discriminator with
      ``optim_wrapper['architecture']``;
    - the discriminator step then scores the detached student logits and
      the teacher logits of the same batch and updates the discriminator
      alone with ``optim_wrapper['discriminator']`` (its own optimizer,
      Adam in the recipes), logging ``distill.loss_adv_d``.

    Build the optimizer wrappers with
    :class:`~gskd_mm.engine.DiscriminatorOptimWrapperConstructor`, and wrap
    the algorithm with :class:`AdversarialDistillDataParallel` for
    distributed training. The
    discriminator is a module of the algorithm: checkpoints hold its
    weights, and the runner saves and resumes its optimizer with the
    others. Under ``StopDistillHook`` both adversarial terms stop with the
    other distillation losses.

    Args:
        discriminator (dict): Config of the discriminator. Without
            ``in_channels`` it takes the student decode head's
            ``out_channels`` (its number of classes).
        generator_loss (dict): Config of the student's adversarial loss.
            Defaults to ``HingeGeneratorLoss`` (weight 0.001).
        discriminator_loss (dict): Config of the discriminator's loss.
            Defaults to ``HingeDiscriminatorLoss`` (weight 0.1).
        student_logits (str): Name of the student recorder of the logits.
            Defaults to 'logits'.
        teacher_logits (str): Name of the teacher recorder of the logits.
            Defaults to 'logits'.
        **kwargs: Arguments of :class:`EvalTeacherDistill`.
    """

    def __init__(self,
                 discriminator: Dict,
                 generator_loss: Dict = dict(type='HingeGeneratorLoss'),
                 discriminator_loss: Dict = dict(
                     type='HingeDiscriminatorLoss'),
                 student_logits: str = 'logits',
                 teacher_logits: str = 'logits',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        discriminator = dict(discriminator)
        if 'in_channels' not in discriminator:
            discriminator['in_channels'] = \
                self.student.decode_head.out_channels
        self.discriminator = MODELS.build(discriminator)
        self.generator_loss = MODELS.build(generator_loss)
        self.discriminator_loss = MODELS.build(discriminator_loss)
        for side, manager, name in (
            ('student', self.distiller.student_recorders, student_logits),
            ('teacher', self.distiller.teacher_recorders, teacher_logits)):
            if name not in manager.recorders:
                raise KeyError(
                    f'the {side} has no recorder {name!r} for the '
                    f'discriminator; its recorders are '
                    f'{sorted(manager.recorders)}: record the logits '
                    "(e.g. ModuleOutputs of 'decode_head.conv_seg')")
        self.student_logits = student_logits
        self.teacher_logits = teacher_logits

    def _recorded_logits(self) -> Dict[str, Tensor]:
        """The student and teacher logits of the last forward."""
        return dict(
            student=self.distiller.student_recorders.get_recorder(
                self.student_logits).get_record_data(),
            teacher=self.distiller.teacher_recorders.get_recorder(
                self.teacher_logits).get_record_data())

    def loss(
        self,
        batch_inputs: Tensor,
        data_samples: Optional[List[BaseDataElement]] = None,
    ) -> LossResults:
        """The losses of :class:`EvalTeacherDistill` and the student's
        adversarial loss ``distill.loss_adv_g``.

        Args:
            batch_inputs (Tensor): Preprocessed images, (N, 3, H, W).
            data_samples (list[BaseDataElement], optional): Their samples.

        Returns:
            dict[str, Tensor]: ``student.*`` and ``distill.*`` losses.
        """
        losses = super().loss(batch_inputs, data_samples)
        if not self.distillation_stopped:
            logits = self._recorded_logits()['student']
            losses['distill.loss_adv_g'] = self.generator_loss(
                self.discriminator(logits))
        return losses

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapperDict) -> Dict[str, Tensor]:
        """A student step, then a discriminator step.

        Args:
            data (dict | tuple | list): A batch from the dataloader.
            optim_wrapper (OptimWrapperDict): ``architecture`` (everything
                but the discriminator) and ``discriminator``.

        Returns:
            dict[str, Tensor]: The logged losses.
        """
        return self.adversarial_train_step(self, data, optim_wrapper)

    def adversarial_train_step(self, forward_module: nn.Module,
                               data: Union[dict, tuple, list],
                               optim_wrapper: OptimWrapperDict
                               ) -> Dict[str, Tensor]:
        """The student step through ``forward_module``, then the
        discriminator step.

        Args:
            forward_module (nn.Module): This algorithm, or the DDP wrapper
                around it (:class:`AdversarialDistillDataParallel`), whose
                forward computes the losses.
            data (dict | tuple | list): A batch from the dataloader.
            optim_wrapper (OptimWrapperDict): ``architecture`` and
                ``discriminator``.

        Returns:
            dict[str, Tensor]: The logged losses.
        """
        student_optim, discriminator_optim = self.split_optim_wrapper(
            optim_wrapper)
        with student_optim.optim_context(forward_module):
            data = self.data_preprocessor(data, True)
            losses = forward_module._run_forward(data, mode='loss')
        parsed_losses, log_vars = self.parse_losses(losses)
        student_optim.update_params(parsed_losses)
        if not self.distillation_stopped:
            log_vars['distill.loss_adv_d'] = self.discriminator_step(
                discriminator_optim)
        return log_vars

    @staticmethod
    def split_optim_wrapper(
            optim_wrapper: OptimWrapperDict) -> List[OptimWrapper]:
        """The ``architecture`` and ``discriminator`` optimizer wrappers.

        Args:
            optim_wrapper (OptimWrapperDict): The runner's optimizers.

        Returns:
            list[OptimWrapper]: Student side, discriminator.
        """
        if not isinstance(optim_wrapper, OptimWrapperDict) or set(
                optim_wrapper.keys()) != {'architecture', 'discriminator'}:
            raise TypeError(
                'adversarial distillation needs an OptimWrapperDict with '
                "'architecture' and 'discriminator', got "
                f'{type(optim_wrapper).__name__}: set optim_wrapper = dict('
                "constructor='mmrazor.DiscriminatorOptimWrapperConstructor',"
                ' architecture=dict(...), discriminator=dict(...))')
        return [optim_wrapper['architecture'], optim_wrapper['discriminator']]

    def discriminator_step(self, optim_wrapper: OptimWrapper) -> Tensor:
        """Update the discriminator on the logits of the last forward.

        The student step's generator loss left gradients on the
        discriminator; they are dropped first, so the discriminator learns
        from its own loss only. Teacher logits of another height x width
        (networks of different strides) are resized to the student's. Across processes its gradients are
        averaged.

        Args:
            optim_wrapper (OptimWrapper): The discriminator's optimizer.

        Returns:
            Tensor: The (detached) discriminator loss.
        """
        logits = self._recorded_logits()
        # A teacher of another stride is scored at the student's size (the
        # losses' rule; equal sizes are used as they are).
        teacher = teacher_at_student_size(
            logits['student'], logits['teacher'].detach(), True,
            'student logits', 'teacher logits')
        optim_wrapper.zero_grad()
        with optim_wrapper.optim_context(self.discriminator):
            loss = self.discriminator_loss(
                self.discriminator(logits['student'].detach()),
                self.discriminator(teacher))
        optim_wrapper.backward(optim_wrapper.scale_loss(loss))
        if get_world_size() > 1:
            for param in self.discriminator.parameters():
                if param.grad is not None:
                    all_reduce(param.grad, op='mean')
        if optim_wrapper.should_update():
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        return loss.detach()
