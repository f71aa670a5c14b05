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
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel, is_model_wrapper
from torch import Tensor

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


def resolve_reference(names: Sequence[str],
                      reference: str,
                      argument: str = 'reference') -> str:
    """The term a name designates.

    Args:
        names (Sequence[str]): Names of the step's loss terms, e.g.
            ``student.decode.loss_ce``.
        reference (str): A full name or its unique tail after a dot, e.g.
            ``decode.loss_ce``.
        argument (str): What the name was given as, for the message.
            Defaults to 'reference'.

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
            f'{argument} term {reference!r} matches '
            f'{matches or "no loss term"}; the terms of this step are '
            f'{list(names)}: pass one of them as `{argument}`')
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
    reference: str = 'decode.loss_ce',
    terms: Optional[Sequence[str]] = None
) -> 'OrderedDict[str, TermNorms]':
    """Gradient norms of the loss terms of a forward, from its graph.

    The graph is retained, so the caller can still backpropagate the
    summed loss; nothing is written to any ``.grad``. Each measured term
    costs one backward pass.

    Args:
        model (nn.Module): The model whose forward computed ``losses``.
        losses (dict): Its ``loss``-mode output (before ``parse_losses``).
        reference (str): The term the shares are relative to, a full name
            or its unique tail (see :func:`resolve_reference`). Defaults
            to 'decode.loss_ce', the decode head's cross-entropy.
        terms (Sequence[str], optional): The terms to measure, full names
            or unique tails; the reference is measured too. Defaults to
            None: every term.

    Returns:
        OrderedDict[str, dict[str, float]]: For every measured term,
        ``student``
        (its gradient's L2 norm over the student's parameters), ``share``
        (that over the reference term's; NaN when the reference's is 0),
        ``connector.<name>`` for every connector, and ``value`` (the
        term's value).
    """
    all_terms = loss_terms(losses)
    names = list(all_terms)
    reference = resolve_reference(names, reference)
    if terms is not None:
        wanted = {reference} | {
            resolve_reference(names, t, 'terms')
            for t in terms
        }
        all_terms = OrderedDict(
            (n, t) for n, t in all_terms.items() if n in wanted)
    student, connectors = student_and_connectors(model)
    params = student + [p for ps in connectors.values() for p in ps]
    results: 'OrderedDict[str, TermNorms]' = OrderedDict()
    for name, term in all_terms.items():
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
