# Copyright (c) gskd-mm contributors. All rights reserved.
"""Automatic mixed precision for every recipe, one or several optimizers."""
import logging
from typing import Dict, Optional

from mmengine.config import Config
from mmengine.logging import print_log

__all__ = ['enable_amp', 'optim_wrapper_configs', 'AMP_DTYPES']

#: The ``dtype`` values ``enable_amp`` accepts (``None``: float16, the
#: autocast default).
AMP_DTYPES = (None, 'float16', 'bfloat16')


def optim_wrapper_configs(optim_wrapper: Dict) -> Dict[str, Dict]:
    """The optimizer-wrapper configs inside an ``optim_wrapper`` config.

    A config with ``optimizer`` is one wrapper (named ``''``); one with a
    ``constructor`` and no ``optimizer`` holds one wrapper per key whose
    value has an ``optimizer`` (e.g. ``architecture`` and
    ``discriminator`` for
    :class:`~gskd_mm.engine.DiscriminatorOptimWrapperConstructor`).

    Args:
        optim_wrapper (dict): The ``optim_wrapper`` of a config.

    Returns:
        dict[str, dict]: The wrapper configs (the same objects), by key.
    """
    if 'optimizer' in optim_wrapper or 'constructor' not in optim_wrapper:
        return {'': optim_wrapper}
    return {
        key: value
        for key, value in optim_wrapper.items()
        if isinstance(value, dict) and 'optimizer' in value
    }


def enable_amp(cfg: Config, dtype: Optional[str] = None) -> None:
    """Turn every optimizer wrapper of a config into ``AmpOptimWrapper``.

    What ``--amp`` of ``tools/train.py`` does. Every ``OptimWrapper`` of
    ``cfg.optim_wrapper`` (one, or each of a multi-optimizer constructor's,
    e.g. the adversarial recipes' ``architecture`` and ``discriminator``)
    becomes ``AmpOptimWrapper`` with a dynamic loss scale (MMRazor's and
    MMSeg's ``--amp``); ``dtype``, when given, is the autocast dtype of
    each. Wrappers already ``AmpOptimWrapper`` are left as they are, with a
    warning.

    The discriminator steps in mixed precision too: in the student step it
    already scores the student logits under the student's autocast (the
    generator loss), so its own step sees its inputs in the same precision,
    and its own ``GradScaler`` keeps its loss scale apart from the
    student's. MMRazor's ``tools/train.py`` (what ``mim train mmrazor``
    runs) converts only ``optim_wrapper.architecture``;
    :class:`~gskd_mm.engine.DiscriminatorOptimWrapperConstructor` then gives
    the discriminator the same precision, so both entry points train the
    same way.

    Args:
        cfg (Config): The training config, changed in place.
        dtype (str, optional): ``'float16'`` or ``'bfloat16'``; None keeps
            the wrappers' own (float16 unless set, e.g. by
            ``--cfg-options optim_wrapper.dtype=bfloat16``).
    """
    if dtype not in AMP_DTYPES:
        raise ValueError(f'dtype must be one of {AMP_DTYPES}, got {dtype!r}')
    optim_wrapper = cfg.get('optim_wrapper')
    if not isinstance(optim_wrapper, dict):
        raise ValueError('--amp needs an optim_wrapper config in the config '
                         f'file, got {optim_wrapper!r}')
    wrappers = optim_wrapper_configs(optim_wrapper)
    if not wrappers:
        raise ValueError(
            f'--amp found no optimizer wrapper in optim_wrapper (keys '
            f'{sorted(optim_wrapper)}): give each wrapper an optimizer')
    for name, wrapper in wrappers.items():
        where = f'optim_wrapper.{name}' if name else 'optim_wrapper'
        wrapper_type = wrapper.get('type', 'OptimWrapper')
        if wrapper_type == 'AmpOptimWrapper':
            print_log(
                f'AMP training is already enabled in {where}.',
                logger='current',
                level=logging.WARNING)
        elif wrapper_type == 'OptimWrapper':
            wrapper['type'] = 'AmpOptimWrapper'
            wrapper['loss_scale'] = 'dynamic'
        else:
            raise ValueError(
                f'--amp needs OptimWrapper in {where}, got {wrapper_type!r}'
                ': set its type to OptimWrapper or AmpOptimWrapper')
        if dtype is not None:
            wrapper['dtype'] = dtype
