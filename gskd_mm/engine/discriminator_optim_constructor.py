# Copyright (c) gskd-mm contributors. All rights reserved.
from typing import Dict

import torch.nn as nn
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

    Example:
        >>> optim_wrapper = dict(
        >>>     constructor='mmrazor.DiscriminatorOptimWrapperConstructor',
        >>>     architecture=dict(optimizer=dict(type='SGD', lr=0.02)),
        >>>     discriminator=dict(
        >>>         optimizer=dict(type='Adam', lr=4e-4, betas=(0.9, 0.99))))

    Args:
        optim_wrapper_cfg (dict): ``architecture`` and ``discriminator``
            optimizer-wrapper configs, each with its own optional
            ``paramwise_cfg``.
        paramwise_cfg (dict, optional): Must be None (set it per wrapper).
    """

    KEYS = ('architecture', 'discriminator')

    def __init__(self, optim_wrapper_cfg: Dict,
                 paramwise_cfg: Dict = None) -> None:
        if set(optim_wrapper_cfg) != set(self.KEYS):
            raise ValueError(
                'optim_wrapper needs exactly the keys '
                f'{self.KEYS} (besides constructor), got '
                f'{sorted(optim_wrapper_cfg)}')
        if paramwise_cfg is not None:
            raise ValueError('set paramwise_cfg inside architecture or '
                             'discriminator, not beside them')
        self.constructors = {}
        for key in self.KEYS:
            cfg = dict(optim_wrapper_cfg[key])
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
