# Copyright (c) gskd-mm contributors. All rights reserved.
"""``--amp`` gives the same optimizer wrappers through every entry point.

Each shipped recipe goes through the ``main()`` of ``tools/train.py`` (also
what ``tools/dist_train.sh`` runs) and of MMRazor's ``tools/train.py``
(what ``mim train mmrazor`` runs; the installed file, loaded as it is),
with ``--amp``, float16 and bfloat16 (``--cfg-options
optim_wrapper.dtype=bfloat16``); the runner is replaced by one that keeps
the config. The optimizer wrappers are then built over a small stand-in
with the algorithm's children (``architecture``, ``distiller`` and, in
adversarial recipes, ``discriminator``). ``AmpOptimWrapper`` refuses to
start without CUDA: its check is patched here, and its CUDA ``GradScaler``
(which disables itself on a CPU) is ``torch.amp.GradScaler('cpu')``, built
with the same arguments.
"""
import functools
import glob
import importlib.util
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import (AmpOptimWrapper, OptimWrapper, OptimWrapperDict,
                            build_optim_wrapper)
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.registry import DefaultScope

import mmrazor
from gskd_mm.engine import DiscriminatorOptimWrapperConstructor, enable_amp
from gskd_mm.utils import register_all_modules

REPO = osp.dirname(osp.dirname(__file__))
RECIPES = sorted(glob.glob(osp.join(REPO, 'configs', 'gskd', '*.py')))
ENTRY_POINTS = {
    'tools/train.py': osp.join(REPO, 'tools', 'train.py'),
    'mim train mmrazor': osp.join(
        osp.dirname(mmrazor.__file__), '.mim', 'tools', 'train.py'),
}
DTYPES = {'float16': [], 'bfloat16': ['optim_wrapper.dtype=bfloat16']}

register_all_modules(init_default_scope=False)


class KeepConfig:
    """A stand-in for the runner: ``Runner.from_cfg`` keeps the config;
    training registers no hook (so no preemption stop to report)."""

    cfg = None
    hooks = ()

    @classmethod
    def from_cfg(cls, cfg):
        cls.cfg = cfg
        return cls()

    def train(self):
        pass


def config_after(entry_point: str, recipe: str, dtype: str) -> Config:
    """The config the runner gets from ``<entry point> recipe --amp``."""
    name = 'entry_point_' + entry_point.replace(' ', '_').replace('/', '_')
    spec = importlib.util.spec_from_file_location(
        name, ENTRY_POINTS[entry_point])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.Runner = KeepConfig
    args = [recipe, '--amp', '--work-dir', '/nonexistent/work_dir']
    if DTYPES[dtype]:
        args += ['--cfg-options'] + DTYPES[dtype]
    argv = sys.argv
    sys.argv = ['train.py'] + args
    try:
        KeepConfig.cfg = None
        module.main()
    finally:
        sys.argv = argv
    return KeepConfig.cfg


def stand_in(cfg: Config) -> nn.Module:
    """A small module with the algorithm's children."""
    model = nn.Module()
    model.architecture = nn.Conv2d(3, 4, 1)
    model.distiller = nn.Conv2d(4, 4, 1)
    if 'discriminator' in cfg.model:
        model.discriminator = nn.Conv2d(4, 1, 1)
    return model


def describe(wrapper: OptimWrapper) -> tuple:
    """Type, autocast dtype and loss scale of a built wrapper."""
    if not isinstance(wrapper, AmpOptimWrapper):
        return (type(wrapper).__name__, )
    scaler = wrapper.loss_scaler
    return (type(wrapper).__name__, wrapper.cast_dtype,
            wrapper._scale_update_param, type(scaler).__name__,
            scaler._init_scale, scaler._growth_factor,
            scaler._backoff_factor, scaler._growth_interval,
            type(wrapper.optimizer).__name__)


def built_wrappers(cfg: Config, monkeypatch) -> dict:
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    monkeypatch.setattr(amp_optimizer_wrapper, 'GradScaler',
                        functools.partial(torch.amp.GradScaler, 'cpu'))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        built = build_optim_wrapper(stand_in(cfg), cfg.optim_wrapper)
    if isinstance(built, OptimWrapperDict):
        return {name: describe(w) for name, w in built.items()}
    return {'': describe(built)}


@pytest.mark.slow
@pytest.mark.parametrize('recipe', RECIPES, ids=osp.basename)
def test_amp_is_the_same_through_every_entry_point(recipe, monkeypatch):
    for dtype in DTYPES:
        results = {
            entry_point: built_wrappers(
                config_after(entry_point, recipe, dtype), monkeypatch)
            for entry_point in ENTRY_POINTS
        }
        ours, mim = results.values()
        assert ours == mim, (dtype, results)
        expected = None if dtype == 'float16' else torch.bfloat16
        for name, described in ours.items():
            # Every optimizer steps in mixed precision, dynamic loss scale.
            assert described[:3] == ('AmpOptimWrapper', expected, None), (
                name, described)
            assert described[3] == 'GradScaler', (name, described)


def optim_cfg(**shared):
    return dict(
        constructor='mmrazor.DiscriminatorOptimWrapperConstructor',
        architecture=dict(
            type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02)),
        discriminator=dict(
            type='OptimWrapper', optimizer=dict(type='Adam', lr=4e-4)),
        **shared)


def test_enable_amp_turns_every_wrapper():
    cfg = Config(dict(optim_wrapper=optim_cfg()))
    enable_amp(cfg, dtype='bfloat16')
    for key in ('architecture', 'discriminator'):
        assert cfg.optim_wrapper[key].type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper[key].loss_scale == 'dynamic'
        assert cfg.optim_wrapper[key].dtype == 'bfloat16'
    assert 'type' not in cfg.optim_wrapper
    single = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD'))))
    enable_amp(single)
    assert single.optim_wrapper.type == 'AmpOptimWrapper'
    assert 'dtype' not in single.optim_wrapper
    with pytest.raises(ValueError, match='dtype must be one of'):
        enable_amp(single, dtype='float8')
    other = Config(dict(optim_wrapper=dict(
        type='MyWrapper', optimizer=dict(type='SGD'))))
    with pytest.raises(ValueError,
                       match='needs OptimWrapper in optim_wrapper'):
        enable_amp(other)


@pytest.mark.parametrize('shared', [
    dict(type='AmpOptimWrapper', loss_scale='dynamic'),
    dict(type='AmpOptimWrapper', dtype='bfloat16'),
])
def test_constructor_applies_top_level_amp_keys_to_both(shared):
    constructor = DiscriminatorOptimWrapperConstructor(
        {k: v for k, v in optim_cfg(**shared).items() if k != 'constructor'})
    for cfg in constructor.wrapper_cfgs.values():
        assert cfg['type'] == 'AmpOptimWrapper'
        for key, value in shared.items():
            assert cfg[key] == value


def test_constructor_gives_the_discriminator_the_architectures_precision():
    cfg = optim_cfg()
    cfg.pop('constructor')
    cfg['architecture'].update(
        type='AmpOptimWrapper', loss_scale=512.0, dtype='float16')
    wrappers = DiscriminatorOptimWrapperConstructor(cfg).wrapper_cfgs
    assert wrappers['discriminator']['type'] == 'AmpOptimWrapper'
    assert wrappers['discriminator']['loss_scale'] == 512.0
    assert wrappers['discriminator']['dtype'] == 'float16'
    # The config itself is not changed.
    assert cfg['discriminator']['type'] == 'OptimWrapper'


def test_constructor_refuses_mixed_settings():
    cfg = optim_cfg()
    cfg.pop('constructor')
    cfg['architecture'].update(type='AmpOptimWrapper', dtype='float16')
    cfg['discriminator'].update(type='AmpOptimWrapper', dtype='bfloat16')
    with pytest.raises(ValueError, match='different dtypes'):
        DiscriminatorOptimWrapperConstructor(cfg)
    plain = optim_cfg(dtype='bfloat16')
    plain.pop('constructor')
    with pytest.raises(ValueError, match='train with --amp'):
        DiscriminatorOptimWrapperConstructor(plain)
    other = optim_cfg(clip_grad=None)
    other.pop('constructor')
    with pytest.raises(ValueError, match='exactly the keys'):
        DiscriminatorOptimWrapperConstructor(other)
