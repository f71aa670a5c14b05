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
``.grad``, so the training step that follows sees nothing of it. The values
are unscaled (given a loss scale, as an AMP loss scaler's, the terms are
differentiated scaled, so that small fp16 gradients do not underflow, and
the norms divided by it) and local to the process (under DDP, each rank's
own gradients, before any all-reduce).

Used by :class:`~gskd_mm.engine.LossGradientHook` during training and by
``tools/analysis_tools/loss_gradients.py`` on a recipe.
"""
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel, is_model_wrapper
from torch import Tensor

__all__ = [
    'TermGradient', 'TermGradients', 'average_gradients', 'loss_terms',
    'loss_gradient_norms', 'resolve_term', 'term_gradient_norms',
    'unwrap_model', 'weights_for_share'
]


@dataclass
class TermGradient:
    """The gradient of one loss term of a step.

    Attributes:
        value (float): The term's value.
        student (float): L2 norm of its gradient over the student's
            parameters.
        share (float): ``student`` over the reference term's (NaN when
            the reference's is 0).
        connectors (dict[str, float]): L2 norm of its gradient over each
            connector's parameters, by connector name.
    """
    value: float
    student: float
    share: float = math.nan
    connectors: Dict[str, float] = field(default_factory=dict)


#: The gradients of a step's terms, by the term's full name.
TermGradients = Dict[str, TermGradient]


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


def resolve_term(names: Sequence[str],
                 name: str,
                 argument: str = 'reference') -> str:
    """The term a name designates.

    Args:
        names (Sequence[str]): Names of the step's loss terms, e.g.
            ``student.decode.loss_ce``.
        name (str): A full name or its unique tail after a dot, e.g.
            ``decode.loss_ce``.
        argument (str): What the name was given as, for the message.
            Defaults to 'reference'.

    Returns:
        str: The full name.

    Raises:
        KeyError: If no term, or more than one, matches.
    """
    if name in names:
        return name
    matches = [n for n in names if n.endswith('.' + name)]
    if len(matches) != 1:
        raise KeyError(
            f'{argument} term {name!r} matches '
            f'{matches or "no loss term"}; the terms of this step are '
            f'{list(names)}: pass one of them as `{argument}`')
    return matches[0]


def unwrap_model(model: nn.Module) -> nn.Module:
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
    model = unwrap_model(model)
    student = getattr(model, 'architecture', model)
    student_params = [p for p in student.parameters() if p.requires_grad]
    connectors: Dict[str, List[Tensor]] = OrderedDict()
    distiller = getattr(model, 'distiller', None)
    for name, connector in getattr(distiller, 'connectors', {}).items():
        params = [p for p in connector.parameters() if p.requires_grad]
        if params:
            connectors[name] = params
    return student_params, connectors


def _norm(grads: Sequence[Optional[Tensor]], scale: float) -> float:
    """L2 norm of a list of gradients over ``scale`` (None: not reached,
    counts 0)."""
    norms = [
        torch.linalg.vector_norm(g.float()) for g in grads if g is not None
    ]
    if not norms:
        return 0.0
    return torch.linalg.vector_norm(torch.stack(norms)).item() / scale


def term_gradient_norms(model: nn.Module,
                        losses: Dict[str, Union[Tensor, List[Tensor]]],
                        reference: str = 'decode.loss_ce',
                        terms: Optional[Sequence[str]] = None,
                        loss_scale: float = 1.0) -> TermGradients:
    """Gradient norms of the loss terms of a forward, from its graph.

    The graph is retained, so the caller can still backpropagate the
    summed loss; nothing is written to any ``.grad``. Each measured term
    costs one backward pass.

    Args:
        model (nn.Module): The model whose forward computed ``losses``.
        losses (dict): Its ``loss``-mode output (before ``parse_losses``).
        reference (str): The term the shares are relative to, a full name
            or its unique tail (see :func:`resolve_term`). Defaults to
            'decode.loss_ce', the decode head's cross-entropy.
        terms (Sequence[str], optional): The terms to measure, full names
            or unique tails; the reference is measured too. Defaults to
            None: every term.
        loss_scale (float): Each term is differentiated multiplied by it
            and the norms are divided by it, as an AMP loss scaler does
            (its current scale), so that gradients too small for float16
            do not flush to 0. Defaults to 1.0.

    Returns:
        dict[str, TermGradient]: For every measured term in the order of
        ``losses``, its value, its gradient's norms and its share.
    """
    if not loss_scale > 0:
        raise ValueError(f'loss_scale must be > 0, got {loss_scale!r}')
    all_terms = loss_terms(losses)
    names = list(all_terms)
    reference = resolve_term(names, reference)
    if terms is not None:
        wanted = {reference} | {resolve_term(names, t, 'terms') for t in terms}
        all_terms = OrderedDict(
            (n, t) for n, t in all_terms.items() if n in wanted)
    student, connectors = student_and_connectors(model)
    params = student + [p for ps in connectors.values() for p in ps]
    results: TermGradients = OrderedDict(
        (name, _term_gradient(term, params, len(student), connectors,
                              loss_scale))
        for name, term in all_terms.items())
    ref = results[reference].student
    for result in results.values():
        result.share = result.student / ref if ref > 0 else math.nan
    return results


def _term_gradient(term: Tensor, params: List[Tensor], num_student: int,
                   connectors: Dict[str, List[Tensor]],
                   loss_scale: float) -> TermGradient:
    """The value and gradient norms of one term (its share left unset)."""
    if term.requires_grad:
        # Scaled in float32, as GradScaler scales a loss: a float16
        # term times the scale (65536 to start) would overflow.
        grads = torch.autograd.grad(
            term.float() * loss_scale if loss_scale != 1 else term,
            params,
            retain_graph=True,
            allow_unused=True)
    else:  # e.g. a distillation term after StopDistillHook, or empty
        grads = (None, ) * len(params)
    result = TermGradient(
        value=term.detach().float().item(),
        student=_norm(grads[:num_student], loss_scale))
    start = num_student
    for connector, connector_params in connectors.items():
        stop = start + len(connector_params)
        result.connectors[connector] = _norm(grads[start:stop], loss_scale)
        start = stop
    return result


def loss_gradient_norms(model: BaseModel,
                        data_batch: dict,
                        reference: str = 'decode.loss_ce') -> TermGradients:
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
        dict[str, TermGradient]: As :func:`term_gradient_norms`.
    """
    model = unwrap_model(model)
    data = model.data_preprocessor(data_batch, True)
    losses = model(**data, mode='loss')
    return term_gradient_norms(model, losses, reference)


def average_gradients(runs: Sequence[TermGradients]) -> TermGradients:
    """Mean of every number over several measurements (same terms).

    Args:
        runs (Sequence[dict[str, TermGradient]]): Results of
            :func:`loss_gradient_norms` on several batches.

    Returns:
        dict[str, TermGradient]: Their means, number by number; a share is
        averaged over the batches where it is defined.
    """

    def mean(values: List[float]) -> float:
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    out: TermGradients = OrderedDict()
    for name, first in runs[0].items():
        measured = [r[name] for r in runs if name in r]
        out[name] = TermGradient(
            value=mean([m.value for m in measured]),
            student=mean([m.student for m in measured]),
            share=mean([m.share for m in measured]),
            connectors={
                c: mean([m.connectors[c] for m in measured])
                for c in first.connectors
            })
    return out


def weights_for_share(model: nn.Module, results: TermGradients,
                      target: float) -> Dict[str, Tuple[float, float]]:
    """The loss weight that would give each distillation term a share.

    A term's gradient, and so its share, is linear in its ``loss_weight``
    (the tests check it), so the weight for a target share is the current
    weight times ``target / share``. This is how the GSKD variants' weights
    were set (a share of ~100 % at the start of training).

    Args:
        model (nn.Module): The distillation model the norms were measured
            on.
        results (dict[str, TermGradient]): Its measured norms, as
            :func:`loss_gradient_norms` or :func:`average_gradients` return.
        target (float): The wanted share (1.0: the reference term's
            gradient).

    Returns:
        dict[str, tuple[float, float]]: For every ``distill.<name>`` term
        with a ``loss_weight`` and a nonzero share, its current weight and
        the weight for ``target``.
    """
    losses = getattr(getattr(unwrap_model(model), 'distiller', None),
                     'distill_losses', {})
    out = {}
    for name, loss in losses.items():
        term = f'distill.{name}'
        share = results[term].share if term in results else math.nan
        weight = getattr(loss, 'loss_weight', None)
        if weight is None or math.isnan(share) or share == 0:
            continue
        out[term] = (float(weight), float(weight) * target / share)
    return out
