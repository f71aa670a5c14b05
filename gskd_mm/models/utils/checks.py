# Copyright (c) gskd-mm contributors. All rights reserved.
"""Checks and precision shared by the project's losses: input shapes and
dtypes, the alignment of teacher maps to the student's, float32 forwards."""
import functools
from contextlib import ExitStack
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def float32_forward(forward: Callable) -> Callable:
    """Run a loss's ``forward`` in float32, with autocast off.

    Under ``torch.autocast`` (e.g. MMEngine's ``AmpOptimWrapper``), matrix
    products run in float16 or bfloat16 and some reductions stay in them:
    similarities, softmaxes and KL divergences over thousands of entries
    then lose most of their precision, and a float32 constant such as a
    masking fill overflows. The wrapped ``forward`` sees its float16 and
    bfloat16 tensor arguments cast to float32 and runs with autocast
    disabled on their devices, so its result is float32 whatever the
    autocast dtype. Gradients flow back through the casts in the inputs'
    own dtypes. Other arguments pass unchanged.

    Args:
        forward (Callable): ``forward(self, *args, **kwargs)`` of a loss.

    Returns:
        Callable: The wrapped method.
    """

    @functools.wraps(forward)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in (*args, *kwargs.values())
                   if isinstance(a, Tensor)]
        with ExitStack() as stack:
            for device_type in {t.device.type for t in tensors}:
                stack.enter_context(
                    torch.autocast(device_type=device_type, enabled=False))
            return forward(self, *(to_float32(a) for a in args),
                           **{k: to_float32(v)
                              for k, v in kwargs.items()})

    return wrapper


def to_float32(value: Any) -> Any:
    """``value.float()`` for a float16 or bfloat16 tensor, else ``value``."""
    if isinstance(value, Tensor) and value.dtype in LOW_PRECISION:
        return value.float()
    return value


def check_labels(gt_labels: Any, batch_size: int) -> Tensor:
    """Validate segmentation labels and return them as (N, H, W).

    Args:
        gt_labels (Tensor): Integer labels, (N, H, W) or (N, 1, H, W).
        batch_size (int): N of the features they label.

    Returns:
        Tensor: The labels, (N, H, W).
    """
    if not isinstance(gt_labels, Tensor):
        raise TypeError(
            f'gt_labels must be a torch.Tensor, got {type(gt_labels)}')
    labels = gt_labels
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dim() != 3:
        raise ValueError('gt_labels must be (N, H, W) or (N, 1, H, W), '
                         f'got shape {tuple(gt_labels.shape)}')
    if labels.is_floating_point() or labels.is_complex() \
            or labels.dtype == torch.bool:
        raise TypeError(
            f'gt_labels must be an integer tensor, got {labels.dtype}')
    if labels.shape[0] != batch_size:
        raise ValueError(f'gt_labels has batch size {labels.shape[0]}, '
                         f'features have {batch_size}')
    return labels


def check_dense_pair(name_S: str,
                     name_T: str,
                     preds_S: Tensor,
                     preds_T: Tensor,
                     same_channels: bool = True,
                     same_size: bool = True,
                     kind: str = 'maps') -> None:
    """Check two (N, C, H, W) maps of one batch.

    Args:
        name_S (str): Name of the student argument, for the message.
        name_T (str): Name of the teacher argument.
        preds_S (Tensor): Student map.
        preds_T (Tensor): Teacher map.
        same_channels (bool): Whether C must match too. Defaults to True.
        same_size (bool): Whether H x W must match too. Defaults to True.
        kind (str): What the maps are, for the fix a channel mismatch
            names: 'features', 'logits', or 'maps' (either; see
            :func:`channel_mismatch_fix`). Defaults to 'maps'.
    """
    for name, tensor in ((name_S, preds_S), (name_T, preds_T)):
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f'{name} must be a torch.Tensor, got {type(tensor)}')
        if tensor.dim() != 4:
            raise ValueError(f'{name} must be (N, C, H, W), got shape '
                             f'{tuple(tensor.shape)}')
        if not tensor.is_floating_point():
            raise TypeError(
                f'{name} must be a floating tensor, got {tensor.dtype}')
    shape_S, shape_T = tuple(preds_S.shape), tuple(preds_T.shape)
    checks = [('batch size', (0, )), ('channels', (1, ) * same_channels),
              ('H x W', (2, 3) * same_size)]
    checked = [(what, dims) for what, dims in checks if dims]
    if any(shape_S[d] != shape_T[d] for _, dims in checked for d in dims):
        whats = [what for what, _ in checked]
        what = ', '.join(whats[:-1]) + ' and ' + whats[-1]
        if same_channels and shape_S[1] != shape_T[1]:
            fix = channel_mismatch_fix(name_S, name_T, shape_S[1],
                                       shape_T[1], kind)
        else:
            fix = 'record student and teacher at the same stride'
        raise ValueError(f'{name_S} {shape_S} and {name_T} {shape_T} must '
                         f'have the same {what}: {fix}')


def channel_mismatch_fix(name_S: str,
                         name_T: str,
                         channels_S: int,
                         channels_T: int,
                         kind: str = 'maps') -> str:
    """How to fix student and teacher maps of different widths.

    Logits of different widths mean teacher and student predict different
    numbers of classes, which no connector fixes; features of different
    widths need the student's projected to the teacher's by the connector
    that feeds the loss, whose ``out_channels`` is then wrong. With
    ``kind='maps'`` (a loss that takes either, e.g. CWD's), maps named
    ``*logits*`` are logits and others get both fixes.

    Args:
        name_S (str): Name of the student map.
        name_T (str): Name of the teacher map.
        channels_S (int): The student's channels.
        channels_T (int): The teacher's channels.
        kind (str): 'features', 'logits' or 'maps'. Defaults to 'maps'.

    Returns:
        str: The fix, for the error message.
    """
    if kind not in ('features', 'logits', 'maps'):
        raise ValueError(f"kind must be 'features', 'logits' or 'maps', "
                         f'got {kind!r}')
    classes = (
        f'student and teacher predict different numbers of classes '
        f'({channels_S} and {channels_T}): give the teacher the dataset\'s '
        f'num_classes, i.e. a teacher trained on the student\'s dataset '
        "(teacher=dict(cfg_path=..., cfg_options={"
        f"'model.decode_head.num_classes': {channels_S}, "
        f"'model.auxiliary_head.num_classes': {channels_S}}}) and its "
        'teacher_ckpt)')
    features = (
        f'these are features: the student\'s reach the loss through a '
        f'connector (model.distiller.connectors), whose out_channels must '
        f'be the teacher\'s feature width, {channels_T} (the teacher\'s '
        f'decode_head.channels), not {channels_S}; its in_channels is the '
        'student\'s decode_head.channels')
    if kind == 'logits' or (kind == 'maps' and
                            ('logits' in name_S or 'logits' in name_T)):
        return classes
    if kind == 'features':
        return features
    return (f'if these are logits, {classes}; if features, project the '
            'student\'s to the teacher\'s width with a connector '
            '(in_channels: the student\'s decode_head.channels, '
            'out_channels: the teacher\'s)')


def teacher_at_student_size(preds_S: Tensor,
                            preds_T: Tensor,
                            resize_teacher: bool,
                            name_S: str = 'preds_S',
                            name_T: str = 'preds_T',
                            kind: str = 'maps') -> Tensor:
    """The teacher's maps at the student's height x width.

    Student and teacher maps of different networks can differ in size: a
    SegFormer decode head works at stride 4, a dilated (d8) CNN at stride 8.
    The alignment is one rule for every loss that compares maps pixel by
    pixel: the student's grid is the reference, and the teacher's maps
    (which need no gradient) are resized to it bilinearly with
    ``align_corners=False``, MMSeg's convention for logits and features.
    A resized teacher pixel is then the teacher at the image position of
    that student pixel. Maps of equal size are returned as they are, so the
    result is exactly that of a loss without alignment.

    Args:
        preds_S (Tensor): Student maps, (N, C, h, w).
        preds_T (Tensor): Teacher maps, (N, C, h', w').
        resize_teacher (bool): Whether maps of different sizes may be
            aligned; if not, they raise a ValueError naming the fix.
        name_S (str): Name of the student argument, for messages.
            Defaults to 'preds_S'.
        name_T (str): Name of the teacher argument. Defaults to 'preds_T'.
        kind (str): 'features', 'logits' or 'maps', for the fix of a
            channel mismatch (see :func:`check_dense_pair`). Defaults to
            'maps'.

    Returns:
        Tensor: The teacher's maps, (N, C, h, w).
    """
    check_dense_pair(name_S, name_T, preds_S, preds_T, same_size=False,
                     kind=kind)
    size = preds_S.shape[-2:]
    if preds_T.shape[-2:] == size:
        return preds_T
    if not resize_teacher:
        raise ValueError(
            f'{name_S} {tuple(preds_S.shape)} and {name_T} '
            f'{tuple(preds_T.shape)} differ in height x width: the networks '
            'work at different strides. Set resize_teacher=True in the loss '
            'config to resize the teacher maps to the student\'s size '
            '(bilinear), as the recipes in configs/gskd do')
    return F.interpolate(
        preds_T, size=size, mode='bilinear', align_corners=False)
