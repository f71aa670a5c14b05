# Copyright (c) gskd-mm contributors. All rights reserved.
"""How hard every loss term pulls on the student: its gradient's L2 norm.

A loss's value says nothing about its pull on the weights. Here every term
of a training step (the student's own losses, e.g. ``decode.loss_ce``, and
every distillation loss ``distill.loss_*``) is differentiated on its own
with ``torch.autograd.grad`` from the step's graph, and the L2 norm of its
gradient is taken over the student's parameters and over each connector's
parameters. Its **share** is its student-gradient norm over that of a
reference term, the task loss (the decode head's cross-entropy) by default.

``autograd.grad`` returns the gradients instead of accumulating them into
``.grad``, so the training step that follows sees nothing of it; the
values are unscaled (an AMP loss scaler is never involved) and local to the
process (under DDP, each rank's own gradients, before any all-reduce).

Used by :class:`~gskd_mm.engine.LossGradientHook` during training and by
``tools/analysis_tools/loss_gradients.py`` on a recipe.
"""
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import Tensor

from ..utils import load_state_dict
from .offline import discriminator_stages

#: Key of the student's gradient norm in a term's result.
STUDENT = 'student'
#: Key of the share of the reference term's student gradient.
SHARE = 'share'
#: Prefix of a connector's gradient norm in a term's result.
CONNECTOR = 'connector.'

TermNorms = Dict[str, float]


def loss_terms(
    losses: Dict[str, Union[Tensor,
                            List[Tensor]]]) -> 'OrderedDict[str, Tensor]':
    """The loss terms of a model's loss dict, as ``parse_losses`` sums them.

    Args:
        losses (dict): What a model returns in ``loss`` mode.

    Returns:
        OrderedDict[str, Tensor]: Every entry whose key contains ``loss``
        (a list of tensors is summed, as MMEngine's ``parse_losses`` does).
    """
    terms = OrderedDict()
    for name, value in losses.items():
        if 'loss' not in name:
            continue  # e.g. accuracies: logged, not trained on
        if isinstance(value, Tensor):
            terms[name] = value.mean()
        elif isinstance(value, (list, tuple)):
            terms[name] = sum(v.mean() for v in value)
        else:
            raise TypeError(f'loss {name!r} is a {type(value).__name__}, '
                            'not a tensor or a list of tensors')
    return terms


def resolve_reference(names: Sequence[str], reference: str) -> str:
    """The term a reference name designates.

    Args:
        names (Sequence[str]): Names of the step's loss terms, e.g.
            ``student.decode.loss_ce``.
        reference (str): A full name or its unique tail after a dot, e.g.
            ``decode.loss_ce``.

    Returns:
        str: The full name.

    Raises:
        KeyError: If no term, or more than one, matches.
    """
    if reference in names:
        return reference
    matches = [n for n in names if n.endswith('.' + reference)]
    if len(matches) != 1:
        raise KeyError(
            f'reference term {reference!r} matches '
            f'{matches or "no loss term"}; the terms of this step are '
            f'{list(names)}: pass one of them as `reference`')
    return matches[0]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP (or other MMEngine) wrapper."""
    return model.module if is_model_wrapper(model) else model


def student_and_connectors(
        model: nn.Module) -> Tuple[List[Tensor], Dict[str, List[Tensor]]]:
    """The trainable parameters of the student and of each connector.

    Args:
        model (nn.Module): A distillation algorithm (``architecture`` is the
            student, ``distiller.connectors`` the connectors) or a plain
            segmentor (all its parameters are the student's).

    Returns:
        tuple: The student's parameters, and each connector's by name.
    """
    model = unwrap(model)
    student = getattr(model, 'architecture', model)
    student_params = [p for p in student.parameters() if p.requires_grad]
    connectors: Dict[str, List[Tensor]] = OrderedDict()
    distiller = getattr(model, 'distiller', None)
    for name, connector in getattr(distiller, 'connectors', {}).items():
        params = [p for p in connector.parameters() if p.requires_grad]
        if params:
            connectors[name] = params
    return student_params, connectors


def _norm(grads: Sequence[Optional[Tensor]]) -> float:
    """L2 norm of a list of gradients (None: not reached, counts 0)."""
    norms = [
        torch.linalg.vector_norm(g.float()) for g in grads if g is not None
    ]
    if not norms:
        return 0.0
    return torch.linalg.vector_norm(torch.stack(norms)).item()


def term_gradient_norms(
        model: nn.Module,
        losses: Dict[str, Union[Tensor, List[Tensor]]],
        reference: str = 'decode.loss_ce') -> 'OrderedDict[str, TermNorms]':
    """Gradient norms of every loss term of a forward, from its graph.

    The graph is retained, so the caller can still backpropagate the
    summed loss; nothing is written to any ``.grad``.

    Args:
        model (nn.Module): The model whose forward computed ``losses``.
        losses (dict): Its ``loss``-mode output (before ``parse_losses``).
        reference (str): The term the shares are relative to, a full name
            or its unique tail (see :func:`resolve_reference`). Defaults
            to 'decode.loss_ce', the decode head's cross-entropy.

    Returns:
        OrderedDict[str, dict[str, float]]: For every term, ``student``
        (its gradient's L2 norm over the student's parameters), ``share``
        (that over the reference term's; NaN when the reference's is 0),
        ``connector.<name>`` for every connector, and ``value`` (the
        term's value).
    """
    terms = loss_terms(losses)
    reference = resolve_reference(list(terms), reference)
    student, connectors = student_and_connectors(model)
    params = student + [p for ps in connectors.values() for p in ps]
    results: 'OrderedDict[str, TermNorms]' = OrderedDict()
    for name, term in terms.items():
        if term.requires_grad:
            grads = torch.autograd.grad(term,
                                        params,
                                        retain_graph=True,
                                        allow_unused=True)
        else:  # e.g. a distillation term after StopDistillHook, or empty
            grads = (None, ) * len(params)
        result = OrderedDict(value=term.detach().float().item())
        result[STUDENT] = _norm(grads[:len(student)])
        start = len(student)
        for connector, connector_params in connectors.items():
            stop = start + len(connector_params)
            result[CONNECTOR + connector] = _norm(grads[start:stop])
            start = stop
        results[name] = result
    ref = results[reference][STUDENT]
    for result in results.values():
        result[SHARE] = result[STUDENT] / ref if ref > 0 else float('nan')
    return results


def loss_gradient_norms(
        model: BaseModel,
        data_batch: dict,
        reference: str = 'decode.loss_ce') -> 'OrderedDict[str, TermNorms]':
    """Run a training forward on a batch and measure every term's gradient.

    The forward is a training one (the model should be in train mode), so
    it has a training step's side effects: BN running statistics, CIRKD's
    memory queues, random draws. No parameter changes. During training use
    :class:`~gskd_mm.engine.LossGradientHook`, which measures the step's
    own forward instead.

    Args:
        model (BaseModel): A distillation algorithm (or a segmentor).
        data_batch (dict): A batch as the dataloader yields it.
        reference (str): The term the shares are relative to. Defaults to
            'decode.loss_ce'.

    Returns:
        OrderedDict[str, dict[str, float]]: As
        :func:`term_gradient_norms`.
    """
    model = unwrap(model)
    data = model.data_preprocessor(data_batch, True)
    losses = model(**data, mode='loss')
    return term_gradient_norms(model, losses, reference)


def average_norms(
    runs: Sequence['OrderedDict[str, TermNorms]']
) -> 'OrderedDict[str, TermNorms]':
    """Mean of every number over several measurements (same terms).

    Args:
        runs (Sequence[OrderedDict]): Results of
            :func:`loss_gradient_norms` on several batches.

    Returns:
        OrderedDict[str, dict[str, float]]: Their means, key by key; a
        share is averaged over the batches where it is defined.
    """
    out: 'OrderedDict[str, TermNorms]' = OrderedDict()
    for name in runs[0]:
        out[name] = OrderedDict()
        for key in runs[0][name]:
            values = [r[name][key] for r in runs if name in r]
            values = [v for v in values if v == v] or [float('nan')]
            out[name][key] = sum(values) / len(values)
    return out


def weights_for_share(results: 'OrderedDict[str, TermNorms]',
                      model: nn.Module, target: float) -> Dict[str, tuple]:
    """The loss weight that would give each distillation term a share.

    A term's gradient, and so its share, is linear in its ``loss_weight``
    (the tests check it), so the weight for a target share is the current
    weight times ``target / share``. This is how the GSKD variants' weights
    were set (a share of ~100 % at the start of training).

    Args:
        results (OrderedDict): Measured norms, as :func:`loss_gradient_norms`
            or :func:`average_norms` return.
        model (nn.Module): The distillation model they were measured on.
        target (float): The wanted share (1.0: the reference term's
            gradient).

    Returns:
        dict[str, tuple[float, float]]: For every ``distill.<name>`` term
        with a ``loss_weight`` and a nonzero share, its current weight and
        the weight for ``target``.
    """
    losses = getattr(getattr(unwrap(model), 'distiller', None),
                     'distill_losses', {})
    out = {}
    for name, loss in losses.items():
        term = f'distill.{name}'
        share = results.get(term, {}).get(SHARE, float('nan'))
        weight = getattr(loss, 'loss_weight', None)
        if weight is None or not share == share or share == 0:
            continue
        out[term] = (float(weight), float(weight) * target / share)
    return out


def _percent(share: float) -> str:
    """A share in percent, three significant digits, no exponent above 1."""
    percent = 100 * share
    return f'{percent:.0f}' if abs(percent) >= 1000 else f'{percent:.3g}'


def format_norms(results: 'OrderedDict[str, TermNorms]') -> str:
    """A text table: one row a term; value, share, student and connectors.

    Args:
        results (OrderedDict): As :func:`term_gradient_norms` returns.

    Returns:
        str: The table.
    """
    connectors = [
        k for k in next(iter(results.values())) if k.startswith(CONNECTOR)
    ]
    header = ['term', 'value', 'share %', 'grad student'
              ] + ['grad ' + k[len(CONNECTOR):] for k in connectors]
    rows = [header]
    for name, r in results.items():
        rows.append([
            name, f'{r["value"]:.4g}',
            _percent(r[SHARE]), f'{r[STUDENT]:.4g}'
        ] + [f'{r[k]:.4g}' for k in connectors])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        '  '.join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))) for row in rows
    ]
    lines.insert(1, '-' * len(lines[0]))
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# Offline inputs for the tool: a recipe's model without downloads, and
# generated batches in the format of its dataset.


def recipe_crop(cfg: Config) -> Tuple[int, int]:
    """The (h, w) training crop of a recipe (its student's padding size).

    Args:
        cfg (Config): A distillation recipe.

    Returns:
        tuple[int, int]: (h, w).
    """
    size = cfg.model.architecture.data_preprocessor.get('size')
    if size:
        return tuple(size)
    for transform in cfg.get('train_pipeline', []):
        if transform.get('type') == 'RandomCrop':
            return tuple(transform['crop_size'])
    raise ValueError('the recipe has no crop (student data_preprocessor '
                     'size, or RandomCrop in train_pipeline): pass --crop')


def set_crop(cfg: Config, crop: Tuple[int, int]) -> List[str]:
    """Train a recipe at another crop: preprocessor padding, pipeline crop
    and, with adversarial distillation, the discriminator's depth.

    Args:
        cfg (Config): A distillation recipe; changed in place.
        crop (tuple[int, int]): (h, w).

    Returns:
        list[str]: What was changed beyond the crop, for the user.
    """
    notes = []
    cfg.model.architecture.data_preprocessor.size = tuple(crop)
    if cfg.model.get('data_preprocessor') and \
            cfg.model.data_preprocessor.get('size'):
        cfg.model.data_preprocessor.size = tuple(crop)
    for transform in cfg.get('train_pipeline', []):
        if transform.get('type') == 'RandomCrop':
            transform['crop_size'] = tuple(crop)
    if 'train_dataloader' in cfg:
        for transform in cfg.train_dataloader.dataset.get('pipeline', []):
            if transform.get('type') == 'RandomCrop':
                transform['crop_size'] = tuple(crop)
    if 'discriminator' in cfg.model:
        stages = cfg.model.discriminator.get('num_stages', 4)
        fit = discriminator_stages(crop, stages)
        if fit != stages:
            cfg.model.discriminator.num_stages = fit
            notes.append(f'discriminator: {fit} stages instead of {stages} '
                         f'(its logits at crop {crop[0]}x{crop[1]} are too '
                         'small for more)')
    return notes


def strip_pretrained(model: nn.Module) -> None:
    """Drop every ``Pretrained`` initialisation, so ``init_weights`` makes
    no download (ImageNet backbones of untrained networks).

    Args:
        model (nn.Module): A model built from a config; changed in place.
    """
    for module in model.modules():
        init_cfg = getattr(module, 'init_cfg', None)
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            module.init_cfg = None
        elif isinstance(init_cfg, list):
            module.init_cfg = [
                c for c in init_cfg if c.get('type') != 'Pretrained'
            ] or None


def build_for_gradients(cfg: Config,
                        checkpoint: Optional[str] = None,
                        device: str = 'cpu') -> Tuple[BaseModel, str]:
    """A recipe's distiller, in train mode, with what weights exist offline.

    With ``checkpoint`` (a distiller checkpoint) every weight comes from
    there. Otherwise the networks are initialised as their configs say
    minus ImageNet weights, and the recipe's ``teacher_ckpt`` is loaded
    only if that file exists (it is never downloaded).

    Args:
        cfg (Config): A distillation recipe.
        checkpoint (str, optional): A checkpoint of the distiller.
        device (str): Device. Defaults to 'cpu'.

    Returns:
        tuple[BaseModel, str]: The model, and which networks were trained
        ('student and teacher from <ckpt>', 'teacher from <ckpt>, student
        untrained', or 'untrained').
    """
    from .inference import init_distiller  # the same build as the tools
    teacher_ckpt = cfg.model.get('teacher_ckpt')
    model, _ = init_distiller(cfg, None, device)  # never reads teacher_ckpt
    if checkpoint is not None:
        model.load_state_dict(load_state_dict(checkpoint))
        trained = f'student and teacher from {checkpoint}'
    else:
        strip_pretrained(model)
        model.init_weights()
        if teacher_ckpt and osp.isfile(osp.expanduser(teacher_ckpt)):
            model.teacher.load_state_dict(
                load_state_dict(osp.expanduser(teacher_ckpt)))
            trained = f'teacher from {teacher_ckpt}, student untrained'
        else:
            trained = 'untrained (no checkpoint; teacher_ckpt ' + (
                'absent' if teacher_ckpt else 'not set') + ')'
    model.to(device)
    model.train()
    return model, trained


def generated_batch(num_images: int,
                    crop: Tuple[int, int],
                    num_classes: int,
                    generator: torch.Generator,
                    ignore_index: int = 255,
                    block: int = 16) -> Dict[str, list]:
    """A batch as MMSeg's train dataloader yields it, with generated data.

    Labels are blocks of ``block`` x ``block`` pixels of random classes,
    with a tenth of the blocks unlabelled; images are uint8 noise around a
    colour per class (so a network could learn them). The data
    preprocessor of the recipe then normalises and pads as for real data.

    Args:
        num_images (int): Batch size.
        crop (tuple[int, int]): (h, w).
        num_classes (int): Labels are in ``[0, num_classes)``.
        generator (torch.Generator): Source of randomness.
        ignore_index (int): Label of unlabelled pixels. Defaults to 255.
        block (int): Side of the label blocks. Defaults to 16.

    Returns:
        dict: ``inputs`` (uint8 (3, h, w) tensors) and ``data_samples``
        (``SegDataSample`` with ``gt_sem_seg``).
    """
    h, w = crop
    bh, bw = -(-h // block), -(-w // block)
    colours = torch.randint(0, 256, (num_classes + 1, 3), generator=generator)
    batch: Dict[str, list] = dict(inputs=[], data_samples=[])
    for _ in range(num_images):
        coarse = torch.randint(0, num_classes, (bh, bw), generator=generator)
        coarse[torch.rand(bh, bw, generator=generator) < 0.1] = ignore_index
        label = coarse.repeat_interleave(block, 0).repeat_interleave(block,
                                                                     1)[:h, :w]
        colour = colours[label.clamp(max=num_classes)].permute(2, 0, 1)
        noise = torch.randint(-40, 41, (3, h, w), generator=generator)
        image = (colour + noise).clamp(0, 255).to(torch.uint8)
        batch['inputs'].append(image)
        batch['data_samples'].append(
            SegDataSample(gt_sem_seg=PixelData(data=label[None].long()),
                          metainfo=dict(img_shape=(h, w),
                                        pad_shape=(h, w),
                                        ori_shape=(h, w))))
    return batch
