# Copyright (c) gskd-mm contributors. All rights reserved.
import copy
from typing import Dict

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict
from mmrazor.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DiscriminatorOptimWrapperConstructor:
    """Two optimizers: the discriminator's, and one for everything else.

    MMRazor's ``SeparateOptimWrapperConstructor`` gives each named child of
    the algorithm its own optimizer; adversarial distillation needs the
    student *and* the distiller's connectors in one optimizer and the
    discriminator in another. ``architecture`` gets every parameter of the
    algorithm outside ``discriminator`` (parameter names, and so
    ``paramwise_cfg`` keys, are those of the algorithm), ``discriminator``
    the discriminator's. Each is built by MMEngine's
    ``DefaultOptimWrapperConstructor``.

    Mixed precision: the two wrappers always share one precision. The
    discriminator scores the student logits inside the student's step
    (under its autocast), so its own step runs in the same precision, with
    its own ``GradScaler``. Whichever way ``--amp`` reached the config, the
    constructor makes it so:

    - ``type``, ``loss_scale`` and ``dtype`` beside the two wrappers (set
      e.g. by ``--cfg-options optim_wrapper.dtype=bfloat16``, or by an
      ``--amp`` that treats ``optim_wrapper`` as one wrapper) apply to
      both;
    - when one wrapper is ``AmpOptimWrapper`` and the other a plain
      ``OptimWrapper`` (MMRazor's ``tools/train.py --amp``, i.e.
      ``mim train mmrazor ... --amp``, converts ``architecture`` only), the
      other becomes ``AmpOptimWrapper`` with its ``loss_scale`` and
      ``dtype``.

    So ``tools/train.py --amp`` (:func:`~gskd_mm.engine.enable_amp`) and
    MMRazor's give the same wrappers. Two AMP wrappers of different
    ``dtype`` are refused.

    Example:
        >>> optim_wrapper = dict(
        >>>     constructor='mmrazor.DiscriminatorOptimWrapperConstructor',
        >>>     architecture=dict(optimizer=dict(type='SGD', lr=0.02)),
        >>>     discriminator=dict(
        >>>         optimizer=dict(type='Adam', lr=4e-4, betas=(0.9, 0.99))))

    Args:
        optim_wrapper_cfg (dict): ``architecture`` and ``discriminator``
            optimizer-wrapper configs, each with its own optional
            ``paramwise_cfg``; optionally ``type``, ``loss_scale`` and
            ``dtype`` for both (see above).
        paramwise_cfg (dict, optional): Must be None (set it per wrapper).
    """

    KEYS = ('architecture', 'discriminator')
    # Keys that may stand beside the two wrappers and apply to both.
    SHARED_KEYS = ('type', 'loss_scale', 'dtype')

    def __init__(self, optim_wrapper_cfg: Dict,
                 paramwise_cfg: Dict = None) -> None:
        optim_wrapper_cfg = dict(optim_wrapper_cfg)
        shared = {
            key: optim_wrapper_cfg.pop(key)
            for key in self.SHARED_KEYS if key in optim_wrapper_cfg
        }
        if set(optim_wrapper_cfg) != set(self.KEYS):
            raise ValueError(
                'optim_wrapper needs exactly the keys '
                f'{self.KEYS} (besides constructor and the AMP settings '
                f'{self.SHARED_KEYS} for both), got '
                f'{sorted(optim_wrapper_cfg)}')
        if paramwise_cfg is not None:
            raise ValueError('set paramwise_cfg inside architecture or '
                             'discriminator, not beside them')
        self.wrapper_cfgs = one_precision(
            {key: copy.deepcopy(dict(optim_wrapper_cfg[key]))
             for key in self.KEYS}, shared)
        self.constructors = {}
        for key in self.KEYS:
            cfg = dict(self.wrapper_cfgs[key])
            self.constructors[key] = DefaultOptimWrapperConstructor(
                cfg, cfg.pop('paramwise_cfg', None))

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        """Build the two optimizer wrappers.

        Args:
            model (nn.Module): The algorithm (or a wrapper around it), with
                a ``discriminator`` child.

        Returns:
            OptimWrapperDict: ``architecture`` and ``discriminator``.
        """
        model = getattr(model, 'module', model)
        children = dict(model.named_children())
        if 'discriminator' not in children:
            raise ValueError(
                f'{type(model).__name__} has no discriminator; this '
                'constructor is for adversarial distillation algorithms '
                '(AdversarialEvalTeacherDistill)')
        # Same names as in the algorithm, without the discriminator.
        rest = nn.ModuleDict(
            {k: v for k, v in children.items() if k != 'discriminator'})
        return OptimWrapperDict(
            architecture=self.constructors['architecture'](rest),
            discriminator=self.constructors['discriminator'](
                children['discriminator']))


def one_precision(wrappers: Dict[str, Dict], shared: Dict) -> Dict[str, Dict]:
    """Give optimizer-wrapper configs one precision (see
    :class:`DiscriminatorOptimWrapperConstructor`).

    Args:
        wrappers (dict[str, dict]): Wrapper configs by name, changed in
            place.
        shared (dict): ``type``, ``loss_scale``, ``dtype`` for all.

    Returns:
        dict[str, dict]: ``wrappers``.
    """
    shared = dict(shared)
    shared_type = shared.pop('type', 'OptimWrapper')
    if shared_type not in ('OptimWrapper', 'AmpOptimWrapper'):
        raise ValueError(
            f'optim_wrapper.type {shared_type!r} beside '
            f'{sorted(wrappers)} is not supported: set each wrapper\'s type '
            'inside it (OptimWrapper or AmpOptimWrapper)')

    def is_amp(cfg: Dict) -> bool:
        return cfg.get('type', 'OptimWrapper') == 'AmpOptimWrapper'

    if shared_type == 'AmpOptimWrapper':
        for cfg in wrappers.values():
            if cfg.get('type', 'OptimWrapper') == 'OptimWrapper':
                cfg['type'] = 'AmpOptimWrapper'
    amp = [name for name, cfg in wrappers.items() if is_amp(cfg)]
    if amp and len(amp) < len(wrappers):
        # MMRazor's --amp converts `architecture` only; the others follow.
        _follow_amp(wrappers, amp[0])
        amp = list(wrappers)
    if shared and not amp:
        raise ValueError(
            f'optim_wrapper sets {sorted(shared)} for AMP, but no wrapper is '
            'AmpOptimWrapper: train with --amp, or remove them')
    for name in amp:
        for key, value in shared.items():
            wrappers[name].setdefault(key, copy.deepcopy(value))
    dtypes = {str(wrappers[name].get('dtype')) for name in amp}
    if len(dtypes) > 1:
        raise ValueError(
            f'the AMP optimizer wrappers {amp} have different dtypes '
            f'{sorted(dtypes)}: give them one (or set optim_wrapper.dtype '
            'for both)')
    return wrappers


def _follow_amp(wrappers: Dict[str, Dict], source: str) -> None:
    """Make every plain ``OptimWrapper`` an ``AmpOptimWrapper`` with the
    ``loss_scale`` and ``dtype`` of ``wrappers[source]``."""
    for name, cfg in wrappers.items():
        if cfg.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            continue
        if cfg.get('type', 'OptimWrapper') != 'OptimWrapper':
            raise ValueError(
                f'optim_wrapper.{source} is AmpOptimWrapper but '
                f'optim_wrapper.{name} is {cfg["type"]!r}: both must '
                'train in one precision')
        cfg['type'] = 'AmpOptimWrapper'
        for key in ('loss_scale', 'dtype'):
            if key in wrappers[source]:
                cfg[key] = copy.deepcopy(wrappers[source][key])
        print_log(
            f'optim_wrapper.{name} becomes AmpOptimWrapper, as '
            f'optim_wrapper.{source} is: both train in one precision.',
            logger='current')
