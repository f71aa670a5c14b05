# Copyright (c) gskd-mm contributors. All rights reserved.
import inspect
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config
from mmengine.runner import load_checkpoint
from mmengine.structures import BaseDataElement
from mmrazor.models.algorithms import SingleTeacherDistill
from mmrazor.models.algorithms.base import LossResults
from mmrazor.models.utils import add_prefix
from mmrazor.registry import MODELS
from torch import Tensor


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
    teacher cannot be trainable: it computes no loss to train on. A
    ``cfg_path`` teacher may also be a config file of your own and carry
    ``cfg_options`` (see :func:`teacher_model_config`), e.g. a teacher
    trained on your dataset.

    With ``teacher_auxiliary=True`` the teacher's auxiliary heads also run
    (still in eval mode, under ``no_grad``, no loss) on the features its
    decode head reads (the output of its neck, or of its backbone), so that
    recorders can read their logits, e.g. ``ModuleOutputs`` of
    ``auxiliary_head.conv_seg``: the GSKD authors' DIST trainers distil
    the auxiliary logits of ResNet students too (``0.4 x DIST``).

    Args:
        teacher (dict | BaseModel): The teacher, as for
            ``SingleTeacherDistill``.
        teacher_ckpt (str, optional): The teacher's checkpoint, loaded as
            ``SingleTeacherDistill`` loads it, its message logged by the
            current logger. Defaults to None.
        teacher_trainable (bool): Must be False. Defaults to False.
        teacher_auxiliary (bool): Run the teacher's auxiliary heads too.
            Defaults to False.
        **kwargs: Other arguments of ``SingleTeacherDistill``.
    """

    def __init__(self,
                 teacher,
                 teacher_ckpt: Optional[str] = None,
                 teacher_trainable: bool = False,
                 teacher_auxiliary: bool = False,
                 **kwargs) -> None:
        if teacher_trainable:
            raise ValueError(
                'EvalTeacherDistill runs the teacher for inference only and '
                'cannot train it; use SingleTeacherDistill with '
                'teacher_trainable=True to train the teacher too')
        if isinstance(teacher, dict) and 'cfg_path' in teacher \
                and not teacher.get('type') and (
                    'cfg_options' in teacher
                    or '::' not in teacher['cfg_path']):
            # Beyond what MMRazor's get_model builds.
            teacher = teacher_model_config(teacher)
        super().__init__(
            teacher=teacher, teacher_trainable=False, **kwargs)
        if teacher_ckpt:
            # As SingleTeacherDistill loads it, but through the current
            # logger: it loads with none, which prints to stdout, outside
            # the run's log and its level.
            load_checkpoint(self.teacher, teacher_ckpt, logger='current')
            self.teacher._is_init = True  # not overwritten by init_weights
        self.teacher_auxiliary = teacher_auxiliary
        # Connector widths are checked once, on the first batch's records.
        self._connectors_checked = False
        if teacher_auxiliary and not getattr(self.teacher,
                                             'with_auxiliary_head', False):
            raise ValueError(
                f'teacher_auxiliary=True, but the teacher '
                f'({type(self.teacher).__name__} with '
                f'{type(getattr(self.teacher, "decode_head", None)).__name__})'
                ' has no auxiliary_head: drop teacher_auxiliary and the '
                'losses on its auxiliary logits, or use a teacher with one')
        if not teacher_auxiliary:
            for name, recorder in \
                    self.distiller.teacher_recorders.recorders.items():
                if str(getattr(recorder, 'source', '')).startswith(
                        'auxiliary_head'):
                    raise ValueError(
                        f'the teacher recorder {name!r} reads '
                        f'{recorder.source!r}, but the teacher runs its '
                        'decode head only: set teacher_auxiliary=True')

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
            self._teacher_forward(batch_inputs, data_samples)

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
            if not self._connectors_checked:
                check_connector_widths(self.distiller)
                self._connectors_checked = True
            losses.update(
                add_prefix(self.distiller.compute_distill_losses(),
                           'distill'))
        return losses

    def _teacher_forward(
            self, batch_inputs: torch.Tensor,
            data_samples: Optional[List[BaseDataElement]]) -> None:
        """The teacher's ``tensor`` forward, and its auxiliary heads on the
        features its decode head read when ``teacher_auxiliary``."""
        if not self.teacher_auxiliary:
            self.teacher(batch_inputs, data_samples, mode='tensor')
            return
        # The input of the auxiliary heads in MMSeg's loss(): extract_feat,
        # i.e. the neck's output, or the backbone's without a neck.
        teacher = self.teacher
        source = teacher.neck if teacher.with_neck else teacher.backbone
        feats = []
        handle = source.register_forward_hook(
            lambda module, inputs, outputs: feats.append(outputs))
        try:
            teacher(batch_inputs, data_samples, mode='tensor')
        finally:
            handle.remove()
        heads = teacher.auxiliary_head
        for head in heads if isinstance(heads, nn.ModuleList) else [heads]:
            head(feats[-1])

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


def teacher_model_config(teacher: dict) -> ConfigDict:
    """The model config of a ``cfg_path`` teacher, spelled out.

    MMRazor builds ``dict(cfg_path='mmseg::...', pretrained=False)`` with
    ``mmengine.hub.get_model``, which reads package configs only and cannot
    change the model (its other keys only fill missing top-level
    arguments). Here ``cfg_path`` may also be a config file of your own
    (the one your teacher was trained with), and ``cfg_options`` are
    merged into that config first, e.g.
    ``{'model.decode_head.num_classes': 8}`` for a zoo architecture with
    your classes. Other keys fill missing model arguments, as in
    ``get_model``.

    Args:
        teacher (dict): ``cfg_path`` (``'package::path'`` or a file path),
            optional ``pretrained`` (False: weights come from
            ``teacher_ckpt``), ``cfg_options`` and model arguments.

    Returns:
        ConfigDict: The teacher's model config, in its package's scope,
        with the config's ``data_preprocessor`` (as ``get_model`` builds
        it).
    """
    teacher = dict(teacher)
    cfg_path = teacher.pop('cfg_path')
    if teacher.pop('pretrained', False):
        raise ValueError(
            'a cfg_path teacher here takes its weights from teacher_ckpt; '
            'set pretrained=False and teacher_ckpt to the checkpoint')
    cfg_options = teacher.pop('cfg_options', None)
    if '::' in cfg_path:
        cfg = get_config(cfg_path, pretrained=False)
        scope = cfg_path.split('::')[0]
    else:
        cfg = Config.fromfile(cfg_path)
        scope = cfg.get('default_scope', 'mmseg')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = cfg.model
    if 'data_preprocessor' in cfg:
        model.data_preprocessor = cfg.data_preprocessor
    for key, value in teacher.items():
        model.setdefault(key, value)
    model._scope_ = scope
    return model


def _width_arguments(connector: nn.Module) -> Tuple[str, str]:
    """The names of a connector's input and output width arguments."""
    params = inspect.signature(type(connector).__init__).parameters
    if 'in_channel' in params:  # MMRazor's connectors
        return 'in_channel', 'out_channel'
    return 'in_channels', 'out_channels'


def check_connector_widths(distiller: nn.Module) -> None:
    """Check that every student connector fits what it connects.

    For every distillation loss input that reaches the loss through a
    connector (a convolutional one, e.g. ``GSKDProjector``), the student
    features it receives must have its input width, and its output must
    have the width of the teacher features the loss compares them with
    (the input named like it with ``_T`` for ``_S``, e.g. ``preds_T`` for
    ``preds_S``). Reads the records of the step; runs no connector.

    Args:
        distiller (nn.Module): A ``ConfigurableDistiller`` whose recorders
            hold a step's records.

    Raises:
        ValueError: Naming the loss, the connector, both widths and the
            setting to change, where one does not fit.
    """
    for loss_name, mapping in distiller.loss_forward_mappings.items():
        for key, record in mapping.items():
            name = record.get('connector')
            if not name or not record.get('from_student', False) \
                    or record.get('connector_idx') is not None:
                continue
            _check_connector(distiller, loss_name, mapping, key, record)


def _check_connector(distiller: nn.Module, loss_name: str, mapping: dict,
                     key: str, record: dict) -> None:
    """:func:`check_connector_widths` of one student input of a loss."""
    name = record['connector']
    connector = distiller.connectors[name]
    convs = [
        m for m in connector.modules()
        if isinstance(m, nn.modules.conv._ConvNd)
    ]
    if not convs:
        return
    arg_in, arg_out = _width_arguments(connector)
    where = f'model.distiller.connectors.{name}'
    student = distiller.get_record(record['recorder'], True,
                                   record.get('record_idx', 0),
                                   record.get('data_idx'))
    width_in = convs[0].in_channels
    if isinstance(student, Tensor) and student.dim() == 4 \
            and student.shape[1] != width_in:
        raise ValueError(
            f'connector {name!r} ({type(connector).__name__}) takes '
            f'{width_in} channels, but the student features it '
            f'projects for {loss_name} ({key}, student recorder '
            f'{record["recorder"]!r}) have {student.shape[1]}: set '
            f'{where}.{arg_in}={student.shape[1]}, the width of '
            'those features (for the recipes\' decode-head '
            'features, the student\'s decode_head.channels)')
    partner = mapping.get(key[:-2] + '_T') \
        if key.endswith('_S') else None
    if partner is None or partner.get('from_student', True) \
            or partner.get('connector'):
        return
    teacher = distiller.get_record(partner['recorder'], False,
                                   partner.get('record_idx', 0),
                                   partner.get('data_idx'))
    width_out = convs[-1].out_channels
    if isinstance(teacher, Tensor) and teacher.dim() == 4 \
            and teacher.shape[1] != width_out:
        raise ValueError(
            f'connector {name!r} ({type(connector).__name__}) gives '
            f'{width_out} channels, but {loss_name} compares its '
            f'output ({key}) with teacher features of '
            f'{teacher.shape[1]} channels ({key[:-2]}_T, teacher '
            f'recorder {partner["recorder"]!r}): set '
            f'{where}.{arg_out}={teacher.shape[1]}, the teacher\'s '
            'feature width (for the recipes\' decode-head features, '
            'the teacher\'s decode_head.channels)')
