# Copyright (c) gskd-mm contributors. All rights reserved.
"""Helpers shared by the project's losses."""
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


def teacher_at_student_size(preds_S: Tensor,
                            preds_T: Tensor,
                            resize_teacher: bool,
                            names: str = 'preds_S and preds_T') -> Tensor:
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
        names (str): The arguments' names, for error messages.

    Returns:
        Tensor: The teacher's maps, (N, C, h, w).
    """
    if preds_S.dim() != 4 or preds_T.dim() != 4:
        raise ValueError(f'{names} must both be (N, C, H, W), got '
                         f'{tuple(preds_S.shape)} and {tuple(preds_T.shape)}')
    if preds_S.shape[:2] != preds_T.shape[:2]:
        raise ValueError(
            f'{names} must have the same batch size and channels, got '
            f'{tuple(preds_S.shape)} and {tuple(preds_T.shape)}; project '
            'student features to the teacher width with a connector '
            '(in_channels: the student\'s decode_head.channels, '
            'out_channels: the teacher\'s), and give logits the same '
            'num_classes')
    size = preds_S.shape[-2:]
    if preds_T.shape[-2:] == size:
        return preds_T
    if not resize_teacher:
        raise ValueError(
            f'{names} differ in height x width, {tuple(preds_S.shape)} and '
            f'{tuple(preds_T.shape)}: the networks work at different '
            'strides. Set resize_teacher=True in the loss config to resize '
            'the teacher maps to the student\'s size (bilinear), as the '
            'recipes in configs/gskd do')
    return F.interpolate(
        preds_T, size=size, mode='bilinear', align_corners=False)
